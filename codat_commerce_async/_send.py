"""The HTTP library seam: build a request, send it once, read the body within bounds,
and translate lower-layer errors.

This is the only module that touches the requests, responses, transports and errors of
the HTTP library a client runs on: httpx, or httpx2 (the same API under another name,
through :class:`~._http_library.HttpLibrary`). It guarantees that:
- nothing but our own exception types leaves it (cancellation aside);
- a body above the size cap, raw or decompressed, is refused without buffering it,
  and its connection is closed rather than returned to the pool;
- no lower-layer message that contains a credential is passed on.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import httpx

from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    APITLSError,
    ResponseTooLargeError,
    redact,
)
from ._http_library import ErrorClasses, HttpLibrary
from ._response import ascii_int

if TYPE_CHECKING:
    from ._types import AsyncBaseTransport, AsyncClient, Request, Response

__all__ = [
    "HttpPool",
    "RequestTemplate",
    "read_body",
    "send_attempt",
    "translate_transport_error",
]

_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

Send = Callable[["Request"], Awaitable["Response"]]


class HttpPool:
    """The connection pool a client sends through: one the SDK builds (and rebuilds
    after a fork), the caller's ``transport`` under an SDK-built client, or the
    caller's own ``httpx.AsyncClient`` / ``httpx2.AsyncClient`` (never closed here).
    Everything is built with ``library``."""

    def __init__(
        self,
        *,
        library: HttpLibrary,
        http_client: AsyncClient | None,
        transport: AsyncBaseTransport | None,
        verify: ssl.SSLContext | bool,
        timeout: httpx.Timeout,
        max_connections: int,
    ) -> None:
        self.library = library
        self._rebuild: Callable[[], AsyncBaseTransport] | None = None
        self.owned = http_client is None
        if http_client is not None:
            self._use(http_client, None)
            return
        if transport is None:

            def build() -> AsyncBaseTransport:
                return library.pool_transport(
                    verify=verify, max_connections=max_connections, keepalive_expiry=30.0
                )

            self._rebuild = build
            transport = build()
        self._timeout = timeout
        self._use(library.lifecycle_client(transport, timeout), transport)

    def _use(self, http: AsyncClient, transport: AsyncBaseTransport | None) -> None:
        self.http = http
        self.transport = transport
        # Our own pool: call its transport directly, skipping httpx.AsyncClient.send's
        # auth, redirect, cookie and hook handling (docs/performance.md). A borrowed
        # client keeps its own send (its mounts, proxies and event hooks).
        self.send: Send = (
            transport.handle_async_request  # type: ignore[assignment]
            if transport is not None
            else _client_send(http)
        )

    def max_connections(self) -> int | None:
        """Best effort: the connection limit of the pool (a given transport's, or a
        borrowed client's default transport's); None if unknown."""
        transport = self.transport or getattr(self.http, "_transport", None)
        # httpx has no public accessor for a pool's limits: read its httpcore pool.
        pool = getattr(transport, "_pool", None)
        size = getattr(pool, "_max_connections", None)
        return size if isinstance(size, int) and size > 0 else None

    def shut_down_sockets(self) -> bool:
        """End every connection of a pool whose event loop has ended, at the socket
        level (its streams can no longer be closed the usual way, which needs that
        loop); the descriptors are released when the pool is collected. False if the
        pool's connections cannot be reached."""
        # httpx and httpcore have no public way to reach a pool's sockets.
        pool = getattr(self.transport, "_pool", None)
        connections = getattr(pool, "connections", None)
        if not isinstance(connections, list):
            return False
        for connection in connections:
            inner = getattr(connection, "_connection", connection)
            stream = getattr(inner, "_network_stream", None)
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return True

    def rebuild(self) -> bool:
        """A fresh pool after a fork (the parent's is abandoned, not closed: closing
        would end its connections). False when the pool is the caller's."""
        if self._rebuild is None:
            return False
        transport = self._rebuild()
        self._use(self.library.lifecycle_client(transport, self._timeout), transport)
        return True

    async def aclose(self) -> None:
        if self.owned:
            await self.http.aclose()


def _client_send(http: AsyncClient) -> Send:
    async def send(request: Request) -> Response:
        return await http.send(
            request,  # type: ignore[arg-type]
            stream=True,
            follow_redirects=False,
            auth=None,
        )

    return send


class RequestTemplate:
    """What every request of a client carries: the URL prefix and the headers (in the
    client's library)."""

    __slots__ = ("headers", "library", "url_prefix")

    def __init__(self, base_url: str, headers: Mapping[str, str], library: HttpLibrary) -> None:
        self.url_prefix = base_url
        self.library = library
        # Normalised once; each request copies it (a list copy) and adds its key.
        self.headers = library.headers(dict(headers))

    def build(
        self,
        method: str,
        path: str,
        body: bytes | None,
        idempotency_key: str | None,
        timeout: httpx.Timeout,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> Request:
        headers = self.headers.copy()
        for name, value in extra_headers:
            headers[name] = value
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self.library.request(
            method,
            self.url_prefix + path,
            headers=headers,
            content=body,
            extensions={"timeout": timeout.as_dict()},
        )


async def send_attempt(
    send: Send,
    request: Request,
    *,
    max_response_size: int,
    time_limit: float | None,
    limit_phase: str,
    secrets: Sequence[str],
    errors: ErrorClasses,
) -> tuple[Response, bytes]:
    """Send ``request`` once with ``send`` (a transport's ``handle_async_request``, or a
    client's ``send``) and return the streamed response with its (decoded) body.

    ``time_limit`` bounds the whole attempt in wall-clock seconds; ``limit_phase``
    names the bound (``"attempt"`` or ``"deadline"``) in the timeout error; ``errors``
    are the transport error classes of the client's HTTP library.
    """
    started = time.perf_counter()
    withheld: APIConnectionError | None = None
    try:
        with anyio.fail_after(time_limit):
            response = await send(request)
            response.request = request  # a transport's response does not know it
            try:
                body = await read_body(response, max_response_size, errors, secrets)
            finally:
                await response.aclose()
    except TimeoutError:
        raise APITimeoutError(
            f"the {'call deadline' if limit_phase == 'deadline' else 'attempt time limit'} "
            f"of {time_limit:g} s passed before Codat answered",
            request=request,
            phase=limit_phase,
        ) from None
    except APIError:
        raise
    except Exception as exc:
        error = translate_transport_error(exc, request, secrets, errors)
        cause = _safe_cause(exc, secrets)
        if cause is not None:
            raise error from cause
        withheld = error
    if withheld is not None:
        # Raised outside the handler, so that not even ``__context__`` keeps the
        # lower-layer exception whose message quoted a credential.
        raise withheld
    # httpx has no public way to attach a body read outside it; this makes
    # response.content / .json() work for raw access.
    response._content = body
    try:
        response.elapsed  # noqa: B018 - set by httpx's own transports
    except RuntimeError:  # in-memory transports never set it
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
    return response, body


async def read_body(
    response: Response, limit: int, errors: ErrorClasses, secrets: Sequence[str] = ()
) -> bytes:
    """Read and decode the body, refusing more than ``limit`` bytes raw or decoded.

    Decompression is done here, chunk by chunk with a bounded output, because
    httpx inflates each network chunk in full (a 200 KB gzip bomb becomes 200 MiB).
    Only one content coding is accepted.
    """
    if response.is_stream_consumed:
        # Built in memory (MockTransport and friends): httpx has already decoded it.
        content = response.content
        if len(content) > limit:
            raise _too_large(response, limit, "decoded")
        return content
    declared = ascii_int(response.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise _too_large(response, limit, "declared")
    coding = response.headers.get("content-encoding", "").strip().lower()
    decoder = None
    if coding and coding != "identity":
        wbits = _ENCODINGS.get(coding)
        if wbits is None:
            raise APIConnectionError(
                # The server's text: scrubbed, then cut.
                f"Codat's response uses an unsupported content encoding "
                f"{redact(coding, secrets)[:40]!r}",
                request=response.request,
                # The server chose it: a retry gets the same (for a POST, a replayed) answer.
                not_retried_because="Codat chose a content encoding the SDK refuses",
            )
        decoder = zlib.decompressobj(wbits=wbits)
    raw_total = 0
    parts: list[bytes] = []
    size = 0
    # The transport's own stream, not response.aiter_raw(): fewer generator layers, and
    # httpx's download bookkeeping is not needed here.
    stream = response.stream
    if not isinstance(stream, errors.byte_streams):
        raise TypeError("the transport returned a synchronous response stream")
    chunks = aiter(stream)
    try:
        async for chunk in chunks:
            raw_total += len(chunk)
            if raw_total > limit:
                raise _too_large(response, limit, "raw")
            if decoder is not None:
                try:
                    chunk = decoder.decompress(chunk, limit - size + 1)
                except zlib.error as exc:
                    raise APIConnectionError(
                        f"Codat's {coding} response could not be decoded: {exc}",
                        request=response.request,
                    ) from None
                if decoder.unconsumed_tail:
                    raise _too_large(response, limit, "decoded")
            size += len(chunk)
            if size > limit:
                raise _too_large(response, limit, "decoded")
            parts.append(chunk)
    except APIError:
        await _abandon(response, chunks)
        raise
    if decoder is not None:
        if not decoder.eof:
            # Cut short (or missing its checksum trailer) inside correct HTTP framing:
            # a broken transfer like a short plain body, so never parsed, and retried.
            raise APIConnectionError(
                f"Codat's {coding} response ended before its compressed stream was complete",
                request=response.request,
                request_sent=True,
            )
        tail = decoder.flush()
        size += len(tail)
        if size > limit:
            raise _too_large(response, limit, "decoded")
        parts.append(tail)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _abandon(response: Response, chunks: AsyncIterator[bytes]) -> None:
    """Stop reading a body half-way without leaving httpx's generators suspended.

    Closing the response first closes the connection (it is not reused), so the
    next step of each nested generator ends at once; leaving them suspended would
    make trio warn about async generators collected before being exhausted.
    """
    await response.aclose()
    with contextlib.suppress(Exception):
        async for _ in chunks:
            pass


def _too_large(response: Response, limit: int, which: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"Codat's response body is larger than max_response_size={limit} bytes ({which})",
        request=response.request,
    )


def _mentions_secret(text: str, secrets: Sequence[str]) -> bool:
    return any(secret and secret in text for secret in secrets)


def _safe_cause(exc: BaseException, secrets: Sequence[str]) -> BaseException | None:
    """The lower-layer exception to chain, or None if any message in its chain has a secret."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _mentions_secret(str(current), secrets) or _mentions_secret(repr(current.args), secrets):
            return None
        current = current.__cause__ or current.__context__
    return exc


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        current = current.__cause__ or current.__context__
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL:" in text


def translate_transport_error(
    exc: Exception, request: Request, secrets: Sequence[str], errors: ErrorClasses
) -> APIConnectionError:
    """Map an exception from the transport to ours, most specific first."""
    detail = str(exc) or type(exc).__name__
    if _mentions_secret(detail, secrets):
        detail = f"{type(exc).__name__} (message withheld: it contained a credential)"
    if isinstance(exc, errors.timeout):
        phase = errors.timeout_phases.get(type(exc), "read")
        return APITimeoutError(
            f"{phase} timeout talking to Codat: {detail}",
            request=request,
            phase=phase,
            request_sent=phase not in ("connect", "pool"),
        )
    if isinstance(exc, errors.connect):
        if _is_tls_failure(exc):
            return APITLSError(
                f"TLS failure talking to Codat: {detail}", request=request, request_sent=False
            )
        return APIConnectionError(
            f"could not connect to Codat: {detail}", request=request, request_sent=False
        )
    if isinstance(exc, errors.unsendable):
        return APIConnectionError(
            f"the request could not be sent: {detail}",
            request=request,
            request_sent=False,
            not_retried_because="the request itself is invalid; it would fail the same way",
        )
    if isinstance(exc, errors.transport):
        return APIConnectionError(
            f"the connection to Codat failed: {detail}", request=request, request_sent=True
        )
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return APITLSError(
            f"TLS failure talking to Codat: {detail}", request=request, request_sent=False
        )
    if isinstance(exc, OSError):
        return APIConnectionError(
            f"the connection to Codat failed: {detail}", request=request, request_sent=True
        )
    # Anything else comes from a custom transport or an in-process app: not ours to retry.
    return APIConnectionError(
        f"the transport failed: {type(exc).__name__}: {detail}",
        request=request,
        not_retried_because="the error came from a custom transport, not the network",
    )
