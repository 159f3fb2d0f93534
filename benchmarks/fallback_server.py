"""Fallback benchmark server, used only when nginx cannot be had.

A tiny raw-asyncio HTTP/1.1 keep-alive server answering the canned SyncSummary to
``POST /companies/{id}/sync/commerce/latest``. It runs as its own process and prints
``PORT <n>`` once listening. With ``--flaky`` it answers, by a request counter, 10%
429 (``Retry-After: 0``) and 5% 503. Being Python, it is far slower than nginx and may
itself be the bottleneck: the runner labels results obtained with it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal

from benchmarks.payloads import ERROR_429, ERROR_503, SUMMARY_JSON

_PATH = re.compile(rb"^POST /companies/[^/ ]+/sync/commerce/latest(\?\S*)? HTTP/1\.[01]$")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def _response(status: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


OK = _response("200 OK", SUMMARY_JSON.encode())
TOO_MANY = _response("429 Too Many Requests", ERROR_429.encode(), "Retry-After: 0\r\n")
UNAVAILABLE = _response("503 Service Unavailable", ERROR_503.encode())
NOT_FOUND = _response("404 Not Found", b'{"statusCode":404,"error":"Not found"}')


class _Counter:
    value = 0


class HttpProtocol(asyncio.Protocol):
    """Parses pipelined HTTP/1.1 requests from a buffer and answers each in order."""

    def __init__(self, flaky: bool, counter: _Counter) -> None:
        self._flaky = flaky
        self._counter = counter
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (answer := self._next_answer()) is not None:
            assert self._transport is not None
            self._transport.write(answer)

    def _next_answer(self) -> bytes | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end]
        match = _CONTENT_LENGTH.search(head)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self._buffer) < total:
            return None
        self._buffer = self._buffer[total:]
        if not _PATH.match(head.split(b"\r\n", 1)[0]):
            return NOT_FOUND
        return self._pick()

    def _pick(self) -> bytes:
        if not self._flaky:
            return OK
        self._counter.value += 1
        slot = self._counter.value % 20
        return TOO_MANY if slot < 2 else UNAVAILABLE if slot == 2 else OK


async def serve(port: int, flaky: bool) -> None:
    loop = asyncio.get_running_loop()
    counter = _Counter()
    server = await loop.create_server(lambda: HttpProtocol(flaky, counter), "127.0.0.1", port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fallback benchmark server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--flaky", action="store_true")
    ns = parser.parse_args()
    asyncio.run(serve(ns.port, ns.flaky))


if __name__ == "__main__":
    main()
