"""A tiny scripted HTTP/1.1 server on 127.0.0.1 for tests that need real sockets."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .conftest import SUMMARY


@dataclass
class Answer:
    status: int = 200
    body: bytes = json.dumps(SUMMARY).encode()
    headers: dict[str, str] = field(default_factory=dict)
    #: "reset": read the request, then close without answering.
    action: str = "answer"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: list[Answer] = []
        self.default = Answer()
        self.requests: list[bytes] = []
        self.open_connections = 0
        self.connections_made = 0


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        state = self.server.state
        with state.lock:
            state.open_connections += 1
            state.connections_made += 1
        sock: socket.socket = self.request
        sock.settimeout(5)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                with state.lock:
                    state.requests.append(head)
                    answer = state.script.pop(0) if state.script else state.default
                if answer.action == "reset":
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    return
                headers = {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(answer.body)),
                    **answer.headers,
                }
                lines = [f"HTTP/1.1 {answer.status} X"] + [f"{k}: {v}" for k, v in headers.items()]
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + answer.body)
        except OSError:
            return
        finally:
            with state.lock:
                state.open_connections -= 1


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()


@dataclass
class LoopbackServer:
    url: str
    state: _State

    def then(self, *answers: Answer) -> None:
        with self.state.lock:
            self.state.script.extend(answers)

    @property
    def open_connections(self) -> int:
        with self.state.lock:
            return self.state.open_connections

    @property
    def request_count(self) -> int:
        with self.state.lock:
            return len(self.state.requests)


@contextmanager
def loopback_server() -> Iterator[LoopbackServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield LoopbackServer(f"http://{host}:{port}", server.state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
