"""(n) our AsyncSyncClient on httpx2 with ``max_concurrency=64``."""

from ._harness import run_async
from ._sdk import async_factory

if __name__ == "__main__":
    run_async("sdk_httpx2_pool64", async_factory(size_to_load=True, http_library="httpx2"))
