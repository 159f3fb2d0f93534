"""Shared machinery of the reliability suite: the canary scanner, one factory that
builds either client flavour, and the figures the suite reports.

Every test that talks to Codat goes through :func:`open_api`, which builds an
:class:`AsyncSyncClient` (``mode="async"``) or a :class:`SyncClient` (``mode="blocking"``,
called from worker threads) with the canary key and an event hook that scans every
error the SDK reports; :func:`raises` scans the error a test expects.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest

from codat_commerce_async import (
    APIResponse,
    AsyncSyncClient,
    CallEvent,
    RetryPolicy,
    SyncClient,
)

from .._http import httpx
from ..conftest import CANARY_KEY, TLS

MODES = ("async", "blocking")

#: Small waits so retries cost milliseconds, not seconds.
FAST = RetryPolicy(backoff_base=0.01, backoff_cap=0.05, max_retry_after=5.0, retry_after_jitter=0.1)

CANARY_FORMS = tuple(
    dict.fromkeys(
        (
            CANARY_KEY,
            base64.b64encode(CANARY_KEY.encode()).decode(),
            base64.urlsafe_b64encode(CANARY_KEY.encode()).decode(),
        )
    )
)


# -- the canary ------------------------------------------------------------------------------


@dataclass
class Canary:
    """Counts what it scanned and keeps every place the key (or its base64) showed up."""

    findings: list[str] = field(default_factory=list)
    exceptions: int = 0
    records: int = 0
    texts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, where: str, text: str) -> None:
        for form in CANARY_FORMS:
            if form in text:
                at = text.index(form)
                with self.lock:
                    self.findings.append(
                        f"{where}: contains {form[:6]}... near {text[max(0, at - 200) : at]!r}"
                    )
                return

    def scan_text(self, where: str, text: str) -> None:
        with self.lock:
            self.texts += 1
        self._check(where, text)

    def scan_exception(self, exc: BaseException, where: str = "exception") -> None:
        """``traceback.format_exception`` of ``exc`` (its whole chain), plus the ``repr``,
        ``str``, ``args`` and ``message`` of every exception in the chain."""
        with self.lock:
            self.exceptions += 1
        parts = traceback.format_exception(type(exc), exc, exc.__traceback__)
        seen: set[int] = set()
        stack: list[BaseException] = [exc]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            parts += [repr(current), str(current), repr(current.args)]
            parts.append(str(getattr(current, "message", "")))
            for linked in (current.__cause__, current.__context__):
                if linked is not None:
                    stack.append(linked)
            stack.extend(getattr(current, "exceptions", ()))  # exception groups
        self._check(f"{where} {type(exc).__name__}", "\n".join(parts))


CANARY = Canary()


_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class CanaryLogHandler(logging.Handler):
    """Renders every record (message with its arguments, every ``extra`` field, the
    traceback) and scans it at once, keeping nothing, so the leak test's memory
    figures are not disturbed."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
            parts += [
                f"{name}={value!r}"
                for name, value in vars(record).items()
                if name not in _STANDARD_ATTRIBUTES
            ]
            if record.exc_info:
                parts.append(self.formatter.formatException(record.exc_info))  # type: ignore[union-attr]
            if record.stack_info:
                parts.append(record.stack_info)
            text = "\n".join(parts)
        except Exception as exc:  # a record that cannot be rendered is itself a finding
            CANARY.findings.append(f"unrenderable log record {record.name}: {exc!r}")
            return
        with CANARY.lock:
            CANARY.records += 1
        CANARY._check(f"log record {record.name}", text)


def scan_event(event: CallEvent) -> None:
    """Event hook: scan the event and every error it carries."""
    CANARY._check("event", repr(event))
    if event.error is not None:
        CANARY.scan_exception(event.error, f"{event.kind} event")


# -- figures ---------------------------------------------------------------------------------

FIGURES: dict[str, dict[str, object]] = {}

#: ``RELIABILITY_REPORT`` set: the load, leak and stress tests run at the scale the
#: figures in docs/reliability.md were measured at; otherwise at a smaller one that
#: checks the same properties in a fraction of the time.
FULL_SCALE = bool(os.environ.get("RELIABILITY_REPORT"))


def record_figures(name: str, **values: object) -> None:
    FIGURES.setdefault(name, {}).update(values)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- one factory for both flavours -----------------------------------------------------------


class Api:
    """The same calls through either client. ``client`` is the public client of the
    mode (the facade itself in blocking mode); ``transport`` is the pool under it,
    kept here for white-box checks."""

    def __init__(
        self,
        mode: str,
        client: AsyncSyncClient | SyncClient,
        facade: SyncClient | None,
        events: list[CallEvent],
        transport: httpx.AsyncHTTPTransport | None,
    ) -> None:
        self.mode = mode
        self.client = client
        self.facade = facade
        self.events = events
        self.transport = transport

    @property
    def base_url(self) -> httpx.URL:
        return self.client.base_url

    async def call(self, name: str, *args: Any, raw: bool = False, **kwargs: Any) -> Any:
        if self.facade is None:
            target: Any = self.client.sync.with_raw_response if raw else self.client.sync
            return await getattr(target, name)(*args, **kwargs)
        facade_target: Any = self.facade.sync.with_raw_response if raw else self.facade.sync
        method = getattr(facade_target, name)
        return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    async def request_sync(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("request_sync", *args, **kwargs)

    async def raw_request_sync(self, *args: Any, **kwargs: Any) -> APIResponse[Any]:
        result: APIResponse[Any] = await self.call("request_sync", *args, raw=True, **kwargs)
        return result

    def kinds(self, kind: str) -> list[CallEvent]:
        return [event for event in self.events if event.kind == kind]


@contextlib.asynccontextmanager
async def open_api(mode: str, *, record_events: bool = True, **options: Any) -> AsyncIterator[Api]:
    """An :class:`Api` over a new client; closed (and its ``repr`` scanned) on exit."""
    events: list[CallEvent] = []
    hooks: list[Callable[[CallEvent], object]] = [scan_event]
    if record_events:
        hooks.append(events.append)
    hooks += options.pop("event_hooks", [])
    options.setdefault("api_key", CANARY_KEY)
    options.setdefault("retry_policy", FAST)
    options["event_hooks"] = hooks
    transport = None
    if not {"transport", "http_client", "verify"} & options.keys():
        transport = options["transport"] = sdk_transport(options.get("max_concurrency", 10))
    if mode == "async":
        client = AsyncSyncClient(**options)
        api = Api(mode, client, None, events, transport)
        try:
            yield api
        finally:
            CANARY.scan_text("repr(client)", repr(client) + str(client))
            await client.aclose()
        return
    assert mode == "blocking", mode
    facade = await anyio.to_thread.run_sync(functools.partial(SyncClient, **options))
    api = Api(mode, facade, facade, events, transport)
    try:
        yield api
    finally:
        CANARY.scan_text("repr(facade)", repr(facade) + str(facade) + repr(facade.sync))
        await anyio.to_thread.run_sync(facade.close)


def sdk_transport(max_connections: int = 10) -> httpx.AsyncHTTPTransport:
    """A pool like the one the SDK builds (sized to its in-flight cap), held by the test."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncHTTPTransport(verify=TLS, limits=limits, trust_env=False)


async def raises(expected: type[BaseException] | tuple[type[BaseException], ...], aw: Any) -> Any:
    """Await ``aw``, expect ``expected``, scan it for the canary and return it."""
    with pytest.raises(expected) as info:
        await aw
    CANARY.scan_exception(info.value, "raised")
    return info.value


def sync_raises(
    expected: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[[], Any]
) -> Any:
    """The blocking twin of :func:`raises`."""
    with pytest.raises(expected) as info:
        fn()
    CANARY.scan_exception(info.value, "raised")
    return info.value


#: How long a poll waits for something that must happen. Only a hang runs it out, so it is
#: generous: a busy machine may be slow, never wrong.
PATIENCE = 30.0


def wait_until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def pool_state(transport: httpx.AsyncHTTPTransport | None) -> tuple[int, int, int]:
    """(connections, active connections, queued requests) of the transport's httpcore pool."""
    assert transport is not None, "pass the transport from sdk_transport() / open_api()"
    # httpx has no public way to inspect its pool; httpcore's pool has one (but for
    # the queue, which it keeps private).
    pool = transport._pool
    connections = list(pool.connections)
    active = [c for c in connections if not (c.is_idle() or c.is_closed())]
    return len(connections), len(active), len(pool._requests)


def fake_records(fake: Any, company_id: str | None = None) -> list[Any]:
    """The fake's request records in arrival order (it stores them as answers are
    decided, so a delayed answer comes later), optionally for one company."""
    records = sorted(fake.requests, key=lambda record: record.received_at)
    return [r for r in records if company_id is None or r.company_id == company_id]


async def eventually(predicate: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``predicate`` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.005)
    return predicate()
