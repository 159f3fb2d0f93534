"""Optional transports for :class:`~codat_commerce_async.AsyncSyncClient`.

``AiohttpTransport`` (``pip install 'codat-commerce-async[aiohttp]'``, asyncio only) is
several times faster than httpx's own transport under concurrency::

    from codat_commerce_async.transports import AiohttpTransport

    client = AsyncSyncClient(transport=AiohttpTransport(limit=64), max_concurrency=64)

It is chosen explicitly, never automatically: an aiohttp that happens to be installed
must not change how a client behaves, and it cannot run on trio (it says so clearly).
It is imported on first access, so importing this package never requires aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport"]


def __getattr__(name: str) -> Any:
    if name == "AiohttpTransport":
        from .aiohttp import AiohttpTransport

        return AiohttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
