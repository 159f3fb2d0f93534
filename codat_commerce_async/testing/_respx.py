"""Route a respx mock of httpx to a :class:`FakeCodat`, for suites that mock httpx with
respx (respx patches httpx only: a client on httpx2 is not intercepted)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from .._config import DEFAULT_BASE_URL
from ._transport import fake_transport

if TYPE_CHECKING:
    from ._app import FakeCodat

__all__ = ["route_to_fake"]


def route_to_fake(fake: FakeCodat, router: Any, base_url: str = DEFAULT_BASE_URL) -> Any:
    """Add a route to ``router`` (respx's ``respx_mock``, or a ``respx.mock`` router)
    answering every request under ``base_url`` from ``fake``, in-process (the path below
    ``base_url`` is what the fake sees); returns it."""
    url = httpx.URL(base_url)
    transport: httpx.AsyncBaseTransport = fake_transport(fake, "httpx")

    prefix = url.raw_path.rstrip(b"/")

    async def side_effect(request: httpx.Request) -> httpx.Response:
        if prefix:  # the fake serves Codat's paths from its root
            raw = request.url.raw_path[len(prefix) :]
            request = httpx.Request(
                request.method,
                request.url.copy_with(raw_path=raw),
                headers=request.headers,
                content=request.content,
            )
        # A dropped connection raises httpx.RemoteProtocolError here, as on a socket.
        response = await transport.handle_async_request(request)
        try:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=raw)

    lookups: dict[str, Any] = {"scheme": url.scheme, "host": url.host}
    if url.port is not None:
        lookups["port"] = url.port
    path = url.path.rstrip("/")
    if path:
        lookups["path__startswith"] = path + "/"
    return router.route(**lookups).mock(side_effect=side_effect)
