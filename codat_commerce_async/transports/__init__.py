"""Optional httpx transports.

``AiohttpTransport`` needs the ``aiohttp`` extra; it is imported on first access so that
importing this package never requires aiohttp.
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
