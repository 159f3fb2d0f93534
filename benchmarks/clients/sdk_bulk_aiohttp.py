"""(bulk) ``request_sync_many`` with ``transport=AiohttpTransport(limit=concurrency)``."""

from codat_commerce_async.transports import AiohttpTransport

from .sdk_bulk import run_bulk

if __name__ == "__main__":
    run_bulk("sdk_bulk_aiohttp", lambda limit: AiohttpTransport(limit=limit))
