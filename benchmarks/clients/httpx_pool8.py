"""(b) raw httpx.AsyncClient, 8-connection pool, pydantic validation."""

from ._harness import run_async
from ._httpx_raw import factory

if __name__ == "__main__":
    run_async("httpx_pool8", factory(8))
