"""(m) our AsyncSyncClient on httpx2 (``http_library="httpx2"``), its defaults."""

from ._harness import run_async
from ._sdk import async_factory

if __name__ == "__main__":
    run_async("sdk_httpx2", async_factory(http_library="httpx2"))
