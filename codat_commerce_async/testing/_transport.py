"""An in-process httpx transport for the fake that can also "drop the connection"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._faults import ConnectionDropped

if TYPE_CHECKING:
    from ._app import FakeCodat

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` over a :class:`FakeCodat`, with socket-like drops.

    ``ASGITransport`` cannot close a connection, so a drop fault surfaces here as the error
    httpx raises when a server hangs up without answering: ``httpx.RemoteProtocolError``.
    It is raised *after* the app processed the request, just like over a socket.
    """

    def __init__(self, app: FakeCodat) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
