"""An httpx/httpx2 transport backed by an ``aiohttp.ClientSession`` (asyncio only).

Install with ``pip install 'codat-commerce-async[aiohttp]'`` and pass it to the client::

    AsyncSyncClient(api_key=..., transport=AiohttpTransport(limit=64))

It keeps the behaviour the SDK relies on from httpx's default transport: per-request
connect/read/pool timeouts, httpx exception types, no redirects, no decompression, no
cookies, headers sent exactly as given, and a lazily streamed response body. It serves
httpx and httpx2 alike: each response and error is of the library of the request it
answers.
aiohttp has no write timeout, so ``timeout.write`` is not enforced (request bodies are
small JSON documents handed to the socket buffer in one write).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from functools import cache, lru_cache
from ssl import SSLContext
from types import ModuleType
from typing import Any, Final

import httpx
import sniffio

try:
    import aiohttp
    import yarl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the aiohttp transport needs aiohttp: pip install 'codat-commerce-async[aiohttp]'"
    ) from exc

__all__ = ["AiohttpTransport"]

_CHUNK_SIZE: Final = 64 * 1024
# aiohttp adds these unless told not to; httpx already set the ones the caller wants.
_SKIP_AUTO_HEADERS: Final = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_HTTP_VERSIONS: Final = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}
# What aiohttp (or the socket layer under it) can raise while sending or reading.
_AIOHTTP_ERRORS: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

_TimeoutKey = tuple[float | None, float | None, float | None]


# (aiohttp/socket error types, name of the httpx/httpx2 error), most specific first.
_ERROR_MAP: Final[tuple[tuple[tuple[type[BaseException], ...], str], ...]] = (
    ((aiohttp.ConnectionTimeoutError,), "ConnectTimeout"),
    ((aiohttp.ServerTimeoutError, asyncio.TimeoutError), "ReadTimeout"),
    ((aiohttp.ClientConnectorError, aiohttp.ServerFingerprintMismatch), "ConnectError"),
    (
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
        "RemoteProtocolError",
    ),
    ((aiohttp.NonHttpUrlClientError,), "UnsupportedProtocol"),
    ((aiohttp.InvalidURL,), "LocalProtocolError"),
    ((aiohttp.ClientConnectionError, OSError), "ReadError"),
)


def _library_of(request: Any) -> ModuleType:
    """httpx2 for an ``httpx2.Request``, else httpx (the only two the client sends)."""
    httpx2 = sys.modules.get("httpx2")  # an httpx2 request cannot exist unless it is loaded
    if httpx2 is not None and isinstance(request, httpx2.Request):
        return httpx2
    return httpx


def _translate(exc: BaseException, request: Any) -> tuple[Exception, BaseException]:
    """Map an aiohttp/socket error to ``(httpx or httpx2 error, cause to chain)``.

    TLS failures chain the underlying ``ssl`` error so that they stay recognisable.
    """
    library = _library_of(request)
    error_type: type[Exception] = library.TransportError
    for sources, target in _ERROR_MAP:
        if isinstance(exc, sources):
            error_type = getattr(library, target)
            break
    cause: BaseException = exc
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
    elif isinstance(exc, aiohttp.ClientSSLError):
        cause = exc.os_error
    return error_type(str(exc) or type(exc).__name__, request=request), cause  # type: ignore[call-arg]


def _http_version(version: aiohttp.HttpVersion | None) -> bytes:
    if version is None:
        return b"HTTP/1.1"
    return _HTTP_VERSIONS.get((version.major, version.minor), b"HTTP/1.1")


@lru_cache(maxsize=64)
def _client_timeout(key: _TimeoutKey) -> aiohttp.ClientTimeout:
    """aiohttp timeouts for httpx's (connect, read, pool); ``total`` is never set."""
    connect, read, pool = key
    backstop = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=backstop, sock_connect=connect, sock_read=read)


class _Slots:
    """Admission to the connection pool; waiting here is httpx's ``pool`` timeout."""

    def __init__(self, limit: int, limit_per_host: int) -> None:
        self._total = asyncio.Semaphore(limit) if limit > 0 else None
        self._per_host_limit = limit_per_host
        self._per_host: dict[tuple[str, str, int | None], asyncio.Semaphore] = {}

    def _semaphores(self, url: httpx.URL) -> list[asyncio.Semaphore]:
        sems = [] if self._total is None else [self._total]
        if self._per_host_limit > 0:
            key = (url.scheme, url.host, url.port)
            sem = self._per_host.get(key)
            if sem is None:
                sem = self._per_host[key] = asyncio.Semaphore(self._per_host_limit)
            sems.insert(0, sem)
        return sems

    async def acquire(self, request: httpx.Request, timeout: float | None) -> Callable[[], None]:
        """Wait for a slot; return the (idempotent) release callback."""
        held: list[asyncio.Semaphore] = []
        try:
            for sem in self._semaphores(request.url):
                if sem.locked():
                    await asyncio.wait_for(sem.acquire(), timeout)
                else:
                    await sem.acquire()  # free: returns without suspending
                held.append(sem)
        except asyncio.TimeoutError as exc:
            _release_all(held)
            pool_timeout = _library_of(request).PoolTimeout
            raise pool_timeout("timed out waiting for a connection", request=request) from exc
        except BaseException:
            _release_all(held)
            raise
        return _Releaser(held)


def _release_all(sems: list[asyncio.Semaphore]) -> None:
    for sem in sems:
        sem.release()


class _Releaser:
    """Release a set of slots exactly once."""

    __slots__ = ("_sems",)

    def __init__(self, sems: list[asyncio.Semaphore]) -> None:
        self._sems: list[asyncio.Semaphore] | None = sems

    def __call__(self) -> None:
        sems, self._sems = self._sems, None
        if sems:
            _release_all(sems)


class _ResponseStream(httpx.AsyncByteStream):
    """Lazily reads an aiohttp response body; closing it hands the connection back.
    (:func:`_stream_class` gives its httpx2 twin.)"""

    __slots__ = ("_closed", "_complete", "_on_close", "_request", "_response")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: httpx.Request,
        on_close: Callable[[], None],
    ) -> None:
        self._response = response
        self._request = request
        self._on_close = on_close
        self._complete = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK_SIZE):
                yield chunk
        except _AIOHTTP_ERRORS as exc:
            mapped, cause = _translate(exc, self._request)
            raise mapped from cause
        self._complete = True

    async def aclose(self) -> None:
        """Release (fully read) or close (unread body: never reuse) the connection."""
        if self._closed:
            return
        self._closed = True
        try:
            content = self._response.content
            if self._complete or (content.at_eof() and content.exception() is None):
                self._response.release()
            else:
                self._response.close()
        finally:
            self._on_close()


@cache
def _stream_class(library: ModuleType) -> type[_ResponseStream]:
    """The response stream type for ``library``: each checks for its own AsyncByteStream."""
    if library is httpx:
        return _ResponseStream
    return type("_ResponseStream", (_ResponseStream, library.AsyncByteStream), {"__slots__": ()})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx (and httpx2) transport over one lazily created ``aiohttp.ClientSession``.

    Pass it to a client on either library (on httpx2 say ``http_library="httpx2"``):
    it answers each request with the response and errors of the request's library.

    :param limit: maximum connections in total (0 = unlimited).
    :param limit_per_host: maximum connections per (scheme, host, port) (0 = unlimited).
    :param ssl: an ``ssl.SSLContext``, ``True`` to verify with the default context, or
        ``False`` to disable verification.
    :param keepalive_timeout: seconds an idle connection is kept (``None``: no expiry).
    :param force_close: close every connection after its response (no keep-alive).
    """

    #: The HTTP libraries whose requests it serves (it implies neither).
    http_libraries: Final = ("httpx", "httpx2")

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 0,
        ssl: SSLContext | bool = True,
        keepalive_timeout: float | None = 5.0,
        force_close: bool = False,
    ) -> None:
        if limit < 0 or limit_per_host < 0:
            raise ValueError("limit and limit_per_host must be >= 0")
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ssl = ssl
        self._keepalive_timeout = None if force_close else keepalive_timeout
        self._force_close = force_close
        self._session: aiohttp.ClientSession | None = None
        self._slots: _Slots | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session in use: made by the first request, ``None`` before it and
        after :meth:`aclose` (for inspecting its connector; do not close it yourself)."""
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ssl=self._ssl,
            keepalive_timeout=self._keepalive_timeout,
            force_close=self._force_close,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def _session_for_running_loop(self) -> tuple[aiohttp.ClientSession, _Slots]:
        if sniffio.current_async_library() != "asyncio":
            raise RuntimeError(
                "the aiohttp transport needs asyncio; use the default httpx transport "
                "under other async libraries (e.g. trio)"
            )
        if self._closed:
            raise RuntimeError("the aiohttp transport is closed")
        loop = asyncio.get_running_loop()
        if self._session is None or self._slots is None:
            self._loop = loop
            self._session = self._new_session()
            self._slots = _Slots(self._limit, self._limit_per_host)
        elif self._loop is not loop:
            raise RuntimeError("the aiohttp transport is bound to another event loop")
        return self._session, self._slots

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` (an httpx or httpx2 request); the returned response, of the
        request's library, streams its body from aiohttp."""
        session, slots = self._session_for_running_loop()
        timeout = request.extensions.get("timeout", {})
        release = await slots.acquire(request, timeout.get("pool"))
        try:
            response = await self._send(session, request, timeout)
        except BaseException:
            release()
            raise
        library = _library_of(request)
        return library.Response(  # type: ignore[no-any-return]
            status_code=response.status,
            headers=response.raw_headers,
            stream=_stream_class(library)(response, request, release),
            request=request,
            extensions={
                "http_version": _http_version(response.version),
                "reason_phrase": (response.reason or "").encode("ascii", "ignore"),
            },
        )

    async def _send(
        self, session: aiohttp.ClientSession, request: httpx.Request, timeout: dict[str, float]
    ) -> aiohttp.ClientResponse:
        encoding = request.headers.encoding
        headers = [(k.decode(encoding), v.decode(encoding)) for k, v in request.headers.raw]
        data: bytes | AsyncIterator[bytes] | None
        try:
            data = request.content or None
        except _library_of(request).RequestNotRead:  # streaming upload: aiohttp chunks it
            data = _aiter_upload(request)
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        try:
            return await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=_client_timeout(
                    (timeout.get("connect"), timeout.get("read"), timeout.get("pool"))
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except _AIOHTTP_ERRORS as exc:
            mapped, cause = _translate(exc, request)
            raise mapped from cause

    async def aclose(self) -> None:
        """Close the aiohttp session and every pooled connection."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _aiter_upload(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if not isinstance(stream, _library_of(request).AsyncByteStream):
        raise TypeError("the aiohttp transport needs an async request stream")
    async for chunk in stream:
        yield chunk
