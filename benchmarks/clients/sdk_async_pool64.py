"""(j) our AsyncSyncClient on httpx with ``max_concurrency=64``: what oversizing costs."""

from ._harness import run_async
from ._sdk import async_factory

if __name__ == "__main__":
    run_async("sdk_async_pool64", async_factory(size_to_load=True))
