"""A loopback HTTP/1.1 server that misbehaves on command, at the socket level.

Each request read from a connection is answered by one :class:`Step`, taken from a
script (first) or from a default (a step, or a callable that picks one per request).
A step can answer normally, hang, reset the connection, close it, send a truncated
or dripping body, send raw bytes, or forward the request to an upstream server (a
:class:`~codat_commerce_async.testing.FakeCodatServer`) and mangle what comes back.
With ``tls=`` it serves HTTPS (certificates made with ``trustme``).

Threads only: one accept thread and one thread per connection, every blocking call
bounded by a short timeout, so :meth:`MisbehavingServer.stop` ends everything and
joins every thread (it fails loudly if a thread will not stop).

Nothing here ever binds or connects anywhere but 127.0.0.1.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .conftest import SUMMARY

HOST = "127.0.0.1"
_POLL = 0.05  # how often a blocked thread looks at the stop flag

SUMMARY_BYTES = json.dumps(SUMMARY).encode()


# -- what to do with one request ---------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One request's fate. Build it with the functions below."""

    action: str
    status: int = 200
    body: bytes = SUMMARY_BYTES
    headers: tuple[tuple[str, str], ...] = ()
    #: truncate: bytes of the body actually sent (Content-Length says len(body)).
    send: int = 0
    #: drip: seconds between bytes.
    interval: float = 0.5
    #: raw: bytes sent verbatim.
    raw: bytes = b""
    #: forward: what to do with the upstream's answer ("pass", "reset", "truncate").
    mangle: str = "pass"
    #: close the connection after this answer.
    close: bool = False
    #: stream: the rest of the body goes out once this is set.
    release: threading.Event | None = None


def answer(
    status: int = 200,
    body: bytes | str | dict[str, object] | list[object] = SUMMARY_BYTES,
    headers: dict[str, str] | None = None,
    *,
    close: bool = False,
) -> Step:
    """A well-formed response (``Content-Length`` set, keep-alive unless ``close``)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    return Step("answer", status, body, tuple((headers or {}).items()), close=close)


def hang() -> Step:
    """Read the request, then never answer (until the client or the server goes)."""
    return Step("hang")


def reset() -> Step:
    """Read the request, then reset the connection (RST) without a response byte."""
    return Step("reset")


def close() -> Step:
    """Read the request, then close the connection cleanly (FIN) without a response."""
    return Step("close")


def truncate(declared: int = 200, send: int = 50) -> Step:
    """Announce ``declared`` body bytes, send ``send`` of them, then close."""
    body = (SUMMARY_BYTES * (declared // len(SUMMARY_BYTES) + 1))[:declared]
    return Step("truncate", body=body, send=send)


def drip(body: bytes = SUMMARY_BYTES, interval: float = 0.5) -> Step:
    """Send the head, then one body byte every ``interval`` seconds."""
    return Step("drip", body=body, interval=interval)


def stream(release: threading.Event, body: bytes = SUMMARY_BYTES) -> Step:
    """Send the head and half the body, the rest once ``release`` is set."""
    return Step("stream", body=body, release=release)


def raw(data: bytes, *, then_close: bool = True) -> Step:
    """Send ``data`` verbatim (status line and all), then close unless told otherwise."""
    return Step("raw", raw=data, close=then_close)


def forward(mangle: str = "pass") -> Step:
    """Relay the request to the upstream and its answer back; ``mangle`` the answer:
    ``"pass"``, ``"reset"`` (the upstream processed it, the client gets an RST) or
    ``"truncate"`` (half the body, then close)."""
    return Step("forward", mangle=mangle)


def reset_unforwarded() -> Step:
    """Read the request and reset without forwarding it (it never reached Codat)."""
    return Step("reset")


# -- the server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int
    at: float
    #: The headers as sent: order, case and repeats kept.
    raw_headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections_made: int = 0
    open_connections: int = 0
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    handshake_failures: int = 0
    steps: collections.Counter[str] = field(default_factory=collections.Counter)


class _HTTPError(Exception):
    pass


class MisbehavingServer:
    """A loopback server whose every request is answered by a scripted :class:`Step`."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        upstream: tuple[str, int] | None = None,
        default: Step | Callable[[Seen], Step] | None = None,
        keep: int = 2000,
    ) -> None:
        self._tls = tls
        self._upstream = upstream
        self._default: Step | Callable[[Seen], Step] = default or (
            forward() if upstream else answer()
        )
        self._script: collections.deque[Step] = collections.deque()
        self.seen: collections.deque[Seen] = collections.deque(maxlen=keep)
        self.stats = _Stats()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._guard = threading.Lock()
        self.port = 0

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> MisbehavingServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        listener.settimeout(_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"misbehaving-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end every connection and join every thread."""
        self._stop.set()
        if self._accept_thread is not None:
            # Wake accept() now rather than at its next poll (up to 50 ms per server).
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                pass
            self._accept_thread.join(timeout=30)
            assert not self._accept_thread.is_alive(), "accept thread did not stop"
        if self._listener is not None:
            self._listener.close()
        with self._guard:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} did not stop"

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # configuration ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def then(self, *steps: Step) -> MisbehavingServer:
        """Queue ``steps`` for the next requests (any connection), in order."""
        with self._guard:
            self._script.extend(steps)
        return self

    def always(self, step: Step | Callable[[Seen], Step]) -> MisbehavingServer:
        """What every request gets once the script is used up."""
        with self._guard:
            self._default = step
        return self

    def random_faults(
        self, faults: list[tuple[float, Step]], *, seed: int, otherwise: Step | None = None
    ) -> Callable[[Seen], Step]:
        """A default that picks a fault with its probability, else ``otherwise``."""
        rng = random.Random(seed)
        fallback = otherwise or (forward() if self._upstream else answer())
        lock = threading.Lock()

        def choose(_: Seen) -> Step:
            with lock:
                draw = rng.random()
            for probability, step in faults:
                if draw < probability:
                    return step
                draw -= probability
            return fallback

        return choose

    # inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        with self.stats.lock:
            return self.stats.requests

    @property
    def open_connections(self) -> int:
        with self.stats.lock:
            return self.stats.open_connections

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no connection is open (the client closed its side)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_connections == 0:
                return True
            time.sleep(0.01)
        return self.open_connections == 0

    # internals -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        number = 0
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._stop.is_set():  # stop()'s wake-up call
                sock.close()
                return
            number += 1
            thread = threading.Thread(
                target=self._serve,
                args=(sock, number),
                name=f"misbehaving-conn-{number}",
                daemon=True,
            )
            with self._guard:
                self._threads.add(thread)
                self._sockets.add(sock)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        stats = self.stats
        with stats.lock:
            stats.connections_made += 1
            stats.open_connections += 1
        conn: socket.socket = sock
        upstream: socket.socket | None = None
        try:
            sock.settimeout(_POLL)
            # Head and body go out in separate writes: without this, Nagle plus the
            # client's delayed ACK would add 40 ms to every answer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                conn = self._handshake(sock)
            reader = _Reader(conn, self._stop)
            while not self._stop.is_set():
                request = reader.request(number)
                if request is None:
                    return
                with self._guard:
                    self.seen.append(request)
                    step = self._script.popleft() if self._script else self._default
                if callable(step):
                    step = step(request)
                with stats.lock:
                    stats.requests += 1
                    stats.steps[
                        f"forward_{step.mangle}" if step.action == "forward" else step.action
                    ] += 1
                    stats.in_flight += 1
                    stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
                try:
                    if step.action == "forward":
                        upstream = upstream or self._connect_upstream()
                        keep = self._forward(conn, upstream, request, step)
                    else:
                        keep = self._act(conn, step)
                finally:
                    with stats.lock:
                        stats.in_flight -= 1
                if not keep:
                    return
        except (OSError, _HTTPError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            if conn is not sock:
                with contextlib.suppress(OSError):
                    sock.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()
            with stats.lock:
                stats.open_connections -= 1
            with self._guard:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        assert self._tls is not None
        sock.settimeout(2.0)
        try:
            conn = self._tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            with self.stats.lock:
                self.stats.handshake_failures += 1
            raise
        conn.settimeout(_POLL)
        return conn

    def _act(self, conn: socket.socket, step: Step) -> bool:
        """Carry out ``step``; True to keep the connection for another request."""
        if step.action == "answer":
            conn.sendall(_head(step.status, step.headers, len(step.body)))
            conn.sendall(step.body)  # (not concatenated: no copy of a 5 MiB body)
            return not step.close
        if step.action == "hang":
            while not self._stop.is_set():
                if _peer_closed(conn):
                    return False
                self._stop.wait(_POLL)
            return False
        if step.action == "reset":
            _reset(conn)
            return False
        if step.action == "close":
            return False
        if step.action == "truncate":
            conn.sendall(_head(200, (), len(step.body)) + step.body[: step.send])
            return False
        if step.action == "drip":
            conn.sendall(_head(200, (), len(step.body)))
            for index in range(len(step.body)):
                if self._stop.wait(step.interval):
                    return False
                try:
                    conn.sendall(step.body[index : index + 1])
                except OSError:
                    return False
            return True
        if step.action == "stream":
            assert step.release is not None
            half = len(step.body) // 2
            conn.sendall(_head(200, (), len(step.body)) + step.body[:half])
            while not step.release.wait(_POLL):
                if self._stop.is_set() or _peer_closed(conn):
                    return False
            conn.sendall(step.body[half:])
            return True
        if step.action == "raw":
            conn.sendall(step.raw)
            return not step.close
        raise AssertionError(f"unknown step {step.action!r}")

    def _connect_upstream(self) -> socket.socket:
        assert self._upstream is not None
        upstream = socket.create_connection(self._upstream, timeout=5)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.settimeout(_POLL)
        return upstream

    def _forward(
        self, conn: socket.socket, upstream: socket.socket, request: Seen, step: Step
    ) -> bool:
        head = [f"{request.method} {request.path} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
        reply = _Reader(upstream, self._stop).response()
        if reply is None:  # the upstream dropped the connection: pass the drop on
            _reset(conn)
            return False
        status_line, headers, body = reply
        if step.mangle == "reset":
            _reset(conn)
            return False
        lines = [status_line] + [f"{name}: {value}" for name, value in headers]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if step.mangle == "truncate":
            conn.sendall(data + body[: len(body) // 2])
            return False
        conn.sendall(data + body)
        return not any(n.lower() == "connection" and v.lower() == "close" for n, v in headers)


class _Reader:
    """Buffered HTTP/1.1 message reading with Content-Length bodies, stop-aware."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self._sock = sock
        self._stop = stop
        self._buffer = b""

    def _fill(self) -> bool:
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return False
            if not chunk:
                return False
            self._buffer += chunk
            return True
        return False

    def _head(self) -> list[bytes] | None:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > 65536:
                raise _HTTPError("head too large")
            if not self._fill():
                return None
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return head.split(b"\r\n")

    def _body(self, length: int) -> bytes | None:
        while len(self._buffer) < length:
            if not self._fill():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    def request(self, connection: int) -> Seen | None:
        lines = self._head()
        if lines is None:
            return None
        method, path, _ = lines[0].decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        sent: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            sent.append((name.strip(), value.strip()))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            body = self._body(int(headers.get("content-length", "0")))
        if body is None:
            return None
        return Seen(method, path, headers, body, connection, time.monotonic(), tuple(sent))

    def _chunked(self) -> bytes | None:
        body = b""
        while True:
            while b"\r\n" not in self._buffer:
                if not self._fill():
                    return None
            size_line, _, self._buffer = self._buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            chunk = self._body(size + 2)  # the data and its CRLF
            if chunk is None:
                return None
            if size == 0:
                return body
            body += chunk[:-2]

    def response(self) -> tuple[str, list[tuple[str, str]], bytes] | None:
        lines = self._head()
        if lines is None:
            return None
        headers: list[tuple[str, str]] = []
        length = 0
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = self._body(length)
        if body is None:
            return None
        return lines[0].decode("latin-1"), headers, body


def _head(status: int, headers: tuple[tuple[str, str], ...], length: int) -> bytes:
    names = {name.lower() for name, _ in headers}
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    if "content-type" not in names:
        lines.append("Content-Type: application/json; charset=utf-8")
    if "content-length" not in names:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _peer_closed(conn: socket.socket) -> bool:
    try:
        data = (
            conn.recv(1, socket.MSG_PEEK) if not isinstance(conn, ssl.SSLSocket) else conn.recv(1)
        )
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True
    return data == b""


# -- ports that misbehave before HTTP ---------------------------------------------------


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def blackhole_port() -> Iterator[int]:
    """A port whose SYNs are dropped: a listener that never accepts, with a full queue.

    Linux drops a SYN when the listener's accept queue is full, so connecting hangs
    until the client's connect timeout, like a black-holed host.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            code = filler.connect_ex((HOST, port))
            assert code in (0, errno.EINPROGRESS, errno.EAGAIN), code
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
