"""(f) our AsyncSyncClient with ``transport=AiohttpTransport(limit=concurrency)``."""

from codat_commerce_async.transports import AiohttpTransport

from ._harness import run_async
from ._sdk import async_factory

if __name__ == "__main__":
    run_async("sdk_aiohttp", async_factory(lambda limit: AiohttpTransport(limit=limit)))
