"""A raw asyncio HTTP/1.1 server on 127.0.0.1 whose routes misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

SUMMARY = {
    "syncDateRangeUtc": {"start": "2024-06-01T00:00:00Z", "finish": "2024-06-30T00:00:00Z"},
    "companyId": "f4637ec9-9fc0-4a02-8df0-c90d6dc86208",
    "commerceSyncId": "8d0a044e-b683-4fc9-bd0d-bfb2ca5731b7",
    "syncStatusCode": 1000,
    "syncStatus": "Started",
    "errorMessage": None,
    "syncExceptionMessage": None,
    "syncUtc": "2024-06-30T00:00:00Z",
    "dataConnections": [],
    "dataPushed": False,
}
SUMMARY_BYTES = json.dumps(SUMMARY, separators=(",", ":")).encode()
GZIP_BODY = gzip.compress(SUMMARY_BYTES)
Route = Callable[["LoopbackServer", asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class LoopbackServer:
    """Serves a few routes; records requests and counts TCP connections."""

    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    release_stream: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")[:-2]
        method, target, _ = request_line.split(" ")
        headers = [_split_header(line) for line in header_lines]
        lowered = {k.lower(): v for k, v in headers}
        if lowered.get("transfer-encoding") == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(lowered.get("content-length", "0")))
        self.requests.append(Received(method, target, headers, body))
        first_segment = "/" + target.split("?")[0].split("/")[1]  # "/hang/companies/..."
        route = ROUTES.get(first_segment, _sync_summary)
        return await route(self, writer)


def _split_header(line: str) -> tuple[str, str]:
    name, value = line.split(": ", 1)
    return name, value


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += chunk[:-2]


def _head(status: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(status: str, body: bytes, **headers: str) -> Route:
    async def route(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
        writer.write(_head(status, {"Content-Type": "application/json", **headers}, len(body)))
        writer.write(body)
        await writer.drain()
        return True

    return route


_sync_summary = _answer("200 OK", SUMMARY_BYTES)


async def _echo_headers(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    body = json.dumps(server.requests[-1].headers).encode()
    writer.write(_head("200 OK", {"Content-Type": "application/json"}, len(body)) + body)
    await writer.drain()
    return True


async def _hang(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(3600)
    return False


async def _reset(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    return False


async def _truncated(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    writer.write(_head("200 OK", {"Content-Type": "application/json"}, 100) + b'{"partial"')
    await writer.drain()
    return False


async def _slow_body(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    writer.write(_head("200 OK", {"Content-Type": "application/json"}, 10) + b"{}")
    await writer.drain()
    await asyncio.sleep(3600)
    return False


async def _stream(server: LoopbackServer, writer: asyncio.StreamWriter) -> bool:
    """Send the headers and half the body, the rest once ``release_stream`` is set."""
    half = len(SUMMARY_BYTES) // 2
    writer.write(_head("200 OK", {"Content-Type": "application/json"}, len(SUMMARY_BYTES)))
    writer.write(SUMMARY_BYTES[:half])
    await writer.drain()
    await server.release_stream.wait()
    writer.write(SUMMARY_BYTES[half:])
    await writer.drain()
    return True


ROUTES: dict[str, Route] = {
    "/echo-headers": _echo_headers,
    "/gzip": _answer("200 OK", GZIP_BODY, **{"Content-Encoding": "gzip"}),
    "/redirect": _answer("302 Found", b"", Location="/companies/x/sync/commerce/latest"),
    "/hang": _hang,
    "/reset": _reset,
    "/truncated": _truncated,
    "/slow-body": _slow_body,
    "/stream": _stream,
}
