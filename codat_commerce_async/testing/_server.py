"""Serve a :class:`FakeCodat` over a real socket with uvicorn (an optional dependency)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ._app import FakeCodat, Receive, Scope, Send
from ._faults import ConnectionDropped, Fault

if TYPE_CHECKING:
    import uvicorn
    from typing_extensions import Self

__all__ = ["FakeCodatServer", "run_server"]

_Registry = dict[tuple[str, int], asyncio.Transport]


def _require_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ImportError(
            "serving the fake Codat over a socket needs uvicorn: "
            "pip install 'codat-commerce-async[fake-server]'"
        ) from exc


def _protocol_class(registry: _Registry) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, remembering each connection's transport by client address.

    ASGI gives an app no way to close its connection without answering, so the app wrapper
    looks the transport up here to abort it.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _TrackingProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                registry[(self.client[0], self.client[1])] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                key = (self.client[0], self.client[1])
                if registry.get(key) is self.transport:
                    del registry[key]
            super().connection_lost(exc)

    return _TrackingProtocol


class _SocketApp:
    """Turns :class:`ConnectionDropped` into a connection closed with no response bytes."""

    def __init__(self, fake: FakeCodat, registry: _Registry) -> None:
        self._fake = fake
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._fake(scope, receive, send)
        except ConnectionDropped:
            client = scope.get("client")
            transport = self._registry.get((client[0], client[1])) if client else None
            if transport is None:
                raise
            transport.abort()
            # Wait until uvicorn has noticed, or it would log an error and try to send a 500.
            while (await receive())["type"] != "http.disconnect":
                pass


def _config(
    fake: FakeCodat, host: str, port: int, log_level: str | None, *, quiet: bool
) -> uvicorn.Config:
    _require_uvicorn()
    import uvicorn

    registry: _Registry = {}
    options: dict[str, Any] = {}
    if quiet:
        # Leave the host application's logging configuration alone.
        options["log_config"] = None
    return uvicorn.Config(
        _SocketApp(fake, registry),
        host=host,
        port=port,
        http=_protocol_class(registry),
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_level=log_level,
        access_log=not quiet,
        server_header=False,
        date_header=False,  # the app sends its own Date, on the fake's clock
        timeout_graceful_shutdown=1,
        **options,
    )


class FakeCodatServer:
    """Runs a :class:`FakeCodat` on a loopback port in a background thread.

    Use it as a context manager (``with`` or ``async with``); the port is ephemeral by
    default, read it from :attr:`port` or :attr:`base_url`. The fake's state is shared with
    the test thread (it is guarded by locks), so assertions on ``server.fake`` just work.
    """

    def __init__(
        self,
        fake: FakeCodat | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        log_level: str = "warning",
    ) -> None:
        self.fake = fake if fake is not None else FakeCodat()
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._port is None:
            raise RuntimeError("the fake Codat server is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Bind, serve in a daemon thread and return once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("the fake Codat server was already started")
        config = _config(self.fake, self.host, self._requested_port, self._log_level, quiet=True)
        server = self._server = _waking_server_class()(config)
        thread = self._thread = threading.Thread(
            target=self._serve, args=(server,), name="fake-codat-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive():
                thread.join()
                self._thread = None
                raise RuntimeError("the fake Codat server failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the fake Codat server did not start in time")
            time.sleep(0.002)
        self._port = int(server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, self._thread = self._thread, None
        server = self._server
        if thread is None or server is None:
            return
        server.should_exit = True
        _wake(server)
        thread.join(timeout=5)
        if thread.is_alive():  # only when a request hangs
            server.force_exit = True
            thread.join(timeout=5)
        self._port = None

    def _serve(self, server: uvicorn.Server) -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported by start()
            self._error = exc  # uvicorn calls sys.exit() when it cannot bind

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)


def _waking_server_class() -> type[uvicorn.Server]:
    import uvicorn

    class WakingServer(uvicorn.Server):
        """uvicorn looks at ``should_exit`` every 0.1 s; :func:`_wake` makes it look now,
        so stopping a test's server does not wait out the tick."""

        _wake_up: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

        async def main_loop(self) -> None:
            wake_up = asyncio.Event()
            self._wake_up = (asyncio.get_running_loop(), wake_up)
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 1) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake_up.wait(), 0.1)

    return WakingServer


def _wake(server: uvicorn.Server) -> None:
    wake_up = getattr(server, "_wake_up", None)
    if wake_up is not None:
        loop, event = wake_up
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            loop.call_soon_threadsafe(event.set)


def _notifying_server_class() -> type[uvicorn.Server]:
    import uvicorn

    class NotifyingServer(uvicorn.Server):
        """Calls back with the bound base URL once uvicorn is listening."""

        def __init__(
            self, config: uvicorn.Config, on_started: Callable[[str], None] | None, host: str
        ) -> None:
            super().__init__(config)
            self._on_started = on_started
            self._host = host

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self._on_started is not None and self.started:
                port = int(self.servers[0].sockets[0].getsockname()[1])
                host = f"[{self._host}]" if ":" in self._host else self._host
                self._on_started(f"http://{host}:{port}")

    return NotifyingServer


def _notifying_server(
    config: uvicorn.Config, on_started: Callable[[str], None] | None, host: str
) -> uvicorn.Server:
    server: uvicorn.Server = _notifying_server_class()(config, on_started, host)  # type: ignore[call-arg]
    return server


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    fake: FakeCodat | None = None,
    latency: float = 0.0,
    fail_rate: float = 0.0,
    seed: int | None = None,
    log_level: str = "info",
    on_started: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve a fake Codat in the foreground until Ctrl-C (for ``codat-commerce fake-server``).

    ``latency`` adds that many seconds to every request inside the app; ``fail_rate`` makes
    that share of requests fail at the edge with an HTML 503 (drawn with ``seed``); both
    survive ``POST /_fake/reset`` (they become the fault plan's baseline). Other
    keyword arguments build the :class:`FakeCodat` when ``fake`` is not given.
    ``on_started`` is called with the base URL once the socket is bound (useful with
    ``port=0``).
    """
    if fake is None:
        fake = FakeCodat(seed=seed, **options)
    elif options or seed is not None:
        raise TypeError("pass either a FakeCodat or options to build one, not both")
    if latency > 0:
        fake.faults.randomly(Fault.latency(latency), 1.0)
    if fail_rate > 0:
        fake.faults.randomly(Fault.edge(503), fail_rate)
    # What the process was started with: POST /_fake/reset puts these back, not nothing.
    fake.faults.set_baseline()
    config = _config(fake, host, port, log_level, quiet=False)
    server = _notifying_server(config, on_started, host)
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises it once its handlers are gone.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
