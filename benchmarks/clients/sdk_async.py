"""(e) our AsyncSyncClient, default install (httpx transport)."""

from ._harness import run_async
from ._sdk import async_factory

if __name__ == "__main__":
    run_async("sdk_async", async_factory())
