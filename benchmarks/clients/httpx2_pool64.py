"""raw httpx2.AsyncClient, 64-connection pool, pydantic validation."""

import httpx2

from ._harness import run_async
from ._httpx_raw import factory

if __name__ == "__main__":
    run_async("httpx2_pool64", factory(64, library=httpx2))
