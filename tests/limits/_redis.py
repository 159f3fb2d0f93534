"""Real redis-server processes for the tests (Debian's package; no Redis fake)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence

import pytest

ENV_URL = "CODAT_TEST_REDIS_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_redis_server() -> str:
    """The redis-server binary; fails in CI, skips (with the fix) elsewhere."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = (
            "redis-server is not installed: apt-get install redis-server, "
            "then scripts/redis-dev.sh start"
        )
        if in_ci():
            pytest.fail(message + " (CI must run the Redis tests, not skip them)")
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One throwaway redis-server on a loopback port: no persistence, killed at the end."""

    def __init__(
        self,
        port: int | None = None,
        *,
        extra: Sequence[str] = (),
        tls: ssl.SSLContext | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = require_redis_server()
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="codat-redis-test-")
        self.process: subprocess.Popen[bytes] | None = None
        self.extra = list(extra)
        self.tls = tls  # set: the server listens with TLS only (the readiness check too)
        self.password = password

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        listen = (
            ["--port", "0", "--tls-port", str(self.port)]
            if self.tls
            else ["--port", str(self.port)]
        )
        auth = ["--requirepass", self.password] if self.password else []
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                *listen,
                *auth,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        hello = (f"AUTH {self.password}\r\n" if self.password else "") + "PING\r\n"
        for _ in range(200):  # wait until it accepts connections (not a timing assertion)
            try:
                if self._answers(hello.encode()):
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def _answers(self, hello: bytes) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as raw:
            if self.tls is None:
                raw.sendall(hello)
                return b"+PONG" in _read_some(raw)
            with self.tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(hello)
                return b"+PONG" in _read_some(sock)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception chained to it (``__cause__`` or ``__context__``)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _read_some(sock: socket.socket) -> bytes:
    data = b""
    while b"PONG" not in data and b"-" not in data[:1]:
        chunk = sock.recv(64)
        if not chunk:
            break
        data += chunk
    return data


class TlsRedis:
    """A redis-server speaking TLS only, with a certificate from ``trustme``'s own CA
    (and a password, so the tests can look for it in every error)."""

    PASSWORD = "tls-hunter2-secret"

    def __init__(self) -> None:
        import trustme

        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.files = tempfile.mkdtemp(prefix="codat-redis-tls-")
        self.ca_file = os.path.join(self.files, "ca.pem")
        cert_file = os.path.join(self.files, "server.pem")
        key_file = os.path.join(self.files, "server.key")
        self.ca.cert_pem.write_to_path(self.ca_file)
        cert.cert_chain_pems[0].write_to_path(cert_file)
        cert.private_key_pem.write_to_path(key_file)
        context = ssl.create_default_context(cafile=self.ca_file)
        self.server = RedisProcess(
            extra=[
                "--tls-cert-file",
                cert_file,
                "--tls-key-file",
                key_file,
                "--tls-ca-cert-file",
                self.ca_file,
                "--tls-auth-clients",
                "no",
            ],
            tls=context,
            password=self.PASSWORD,
        )

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> TlsRedis:
        try:
            self.server.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.files, ignore_errors=True)


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` nodes on free loopback ports, joined
    with ``redis-cli --cluster create`` (no replicas)."""

    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [
            RedisProcess(
                # The bus port is a free port of its own: port + 10000 may be taken or
                # past 65535.
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    str(free_port()),
                ],
            )
            for _ in range(nodes)
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        try:
            return self._start()
        except BaseException:
            self.cleanup()
            raise

    def _start(self) -> RedisCluster:
        cli = shutil.which("redis-cli")
        if cli is None:  # pragma: no cover - Debian's redis-server brings it
            pytest.fail("redis-cli is not installed (apt-get install redis-tools)")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        for _ in range(400):  # until every node agrees the cluster is up
            states = [
                subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for node in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return self
            time.sleep(0.05)
        raise RuntimeError("the Redis cluster did not come up")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
