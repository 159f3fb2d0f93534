"""(extra) raw httpx.AsyncClient over our AiohttpTransport (limit 64), pydantic validation.

Isolates the transport's cost from the SDK's.
"""

from codat_commerce_async.transports import AiohttpTransport

from ._harness import run_async
from ._httpx_raw import factory

if __name__ == "__main__":
    run_async("httpx_aiohttp_transport", factory(64, transport=AiohttpTransport(limit=64)))
