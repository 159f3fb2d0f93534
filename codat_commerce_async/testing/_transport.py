"""An in-process transport for the fake that can also "drop the connection", for httpx
and for httpx2."""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

from .._http_library import library_named
from ._faults import ConnectionDropped

if TYPE_CHECKING:
    from ._app import FakeCodat

__all__ = ["FakeTransport", "fake_transport"]


class _DroppingASGITransport:
    """The library's ``ASGITransport`` over a :class:`FakeCodat`, with socket-like drops."""

    _library: ModuleType

    def __init__(self, app: FakeCodat) -> None:
        self._inner = self._library.ASGITransport(app=app)

    async def handle_async_request(self, request: Any) -> Any:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            raise self._library.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


class FakeTransport(_DroppingASGITransport, httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` over a :class:`FakeCodat`, with socket-like drops.

    ``ASGITransport`` cannot close a connection, so a drop fault surfaces here as the error
    httpx raises when a server hangs up without answering: ``httpx.RemoteProtocolError``.
    It is raised *after* the app processed the request, just like over a socket.
    ``FakeCodat.transport(http_library="httpx2")`` returns its httpx2 twin (same name and
    behaviour, an ``httpx2.AsyncBaseTransport`` raising ``httpx2.RemoteProtocolError``).
    """

    _library = httpx


@cache
def _transport_class(name: str) -> type[_DroppingASGITransport]:
    library = library_named(name).module
    if library is httpx:
        return FakeTransport
    return type(
        "FakeTransport",
        (_DroppingASGITransport, library.AsyncBaseTransport),
        {"_library": library, "__doc__": FakeTransport.__doc__, "__module__": __name__},
    )


def fake_transport(app: FakeCodat, http_library: str) -> Any:
    """The fake's transport for ``http_library`` (``"httpx"`` or ``"httpx2"``)."""
    return _transport_class(http_library)(app)
