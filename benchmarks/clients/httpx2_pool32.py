"""raw httpx2.AsyncClient, 32-connection pool, pydantic validation."""

import httpx2

from ._harness import run_async
from ._httpx_raw import factory

if __name__ == "__main__":
    run_async("httpx2_pool32", factory(32, library=httpx2))
