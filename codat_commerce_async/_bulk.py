"""Bulk runs: trigger (and wait for) syncs of many companies with bounded resources.

Shape: ``request_sync_many(...)`` returns a :class:`BulkRun`, an async context
manager whose ``__aenter__`` starts a task group and yields an async iterator of
:class:`BulkResult`, in completion order::

    async with client.sync.request_sync_many(company_ids) as results:
        async for result in results:
            ...

Why not a plain async generator: it would have to yield from inside the task group,
and a generator suspended at ``yield`` inside a cancel scope breaks structured
concurrency (trio and anyio forbid it). Leaving the ``async with`` block, early or
through an exception, cancels what is left and waits for it; the client stays usable.

Memory is bounded by the number of workers, not by the input: a fixed pool pulls
ids one at a time from any iterable or async iterable, through zero-buffer streams,
and results wait in a buffer of the pool's size until the consumer takes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _protocol
from ._models import CompanySyncStatus, SyncSummary
from ._ratelimit import DEFAULT_BULK_REQUESTS_PER_MINUTE, RateLimiter
from ._types import NotGiven

if TYPE_CHECKING:
    from ._client import _Core

__all__ = [
    "DEFAULT_BULK_CONCURRENCY",
    "DEFAULT_WAIT_CONCURRENCY",
    "BulkProgress",
    "BulkResult",
    "BulkRun",
    "IdempotencyKeys",
    "ProgressCallback",
]

T = TypeVar("T")

#: Triggers in flight at once in a bulk run (never above the client's ``max_concurrency``).
DEFAULT_BULK_CONCURRENCY = 10
#: Syncs waited for at once; their polls still share the client's in-flight cap and rate.
DEFAULT_WAIT_CONCURRENCY = 100


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """How far a bulk run has got: results produced so far and the input size if known."""

    done: int
    """Results produced (succeeded or failed)."""
    failed: int
    """Results that are not :attr:`BulkResult.ok`."""
    total: int | None
    """The number of inputs, when the input has a length; otherwise None."""

    @property
    def succeeded(self) -> int:
        """``done - failed``."""
        return self.done - self.failed


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome for one company of a bulk run.

    ``error`` is the :class:`CodatError` of a failed call (or wait), or the
    ``ValueError`` of an invalid company id or idempotency key; one company's error
    never stops the others. ``status`` is set by waiting runs: the final status, or
    the last one seen when the wait timed out.
    """

    company_id: str
    """The canonical company id (the input as text if it is not a valid id)."""
    summary: SyncSummary | None = None
    """What Codat answered to the trigger."""
    error: Exception | None = None
    attempts: int = 0
    """HTTP attempts made by the trigger (0 when nothing was sent)."""
    idempotency_key: str | None = None
    """The key sent with every attempt of the trigger: retry with it to stay safe."""
    status: CompanySyncStatus | None = None

    @property
    def ok(self) -> bool:
        """True without an error and, once waited for, when the sync succeeded."""
        return self.error is None and (self.status is None or self.status.succeeded)

    @property
    def sync_id(self) -> str | None:
        """The sync's id: from the final status if any, else from the trigger's summary."""
        if self.status is not None and self.status.sync_id:
            return self.status.sync_id
        return self.summary.commerce_sync_id if self.summary is not None else None


#: Caller-chosen idempotency keys: a mapping or a function of the canonical company id
#: (None: a fresh uuid4).
IdempotencyKeys = Mapping[str, str] | Callable[[str], "str | None"]
#: Called after every result, on the event loop; keep it quick.
ProgressCallback = Callable[[BulkProgress], object]
Job = Callable[[Any], Awaitable[BulkResult]]


def label(item: object) -> str:
    """A short text for an input that is not a valid company id."""
    text = item if isinstance(item, str) else repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def key_for(keys: IdempotencyKeys | None, company: str) -> str:
    """The idempotency key for ``company``: the caller's (validated) or a fresh one."""
    chosen: str | None = None
    if keys is not None:
        chosen = keys.get(company) if isinstance(keys, Mapping) else keys(company)
    if chosen is None:
        return _protocol.new_idempotency_key()
    return _protocol.validate_idempotency_key(chosen)


def trigger_slots(count: int) -> anyio.Semaphore:
    """The trigger slots of a waiting run (created on the run's event loop)."""
    return anyio.Semaphore(count)


@contextlib.asynccontextmanager
async def one_trigger_per_company(core: _Core, company: str) -> AsyncIterator[None]:
    """At most one bulk trigger in flight per company per client; a second waits."""
    in_flight = core.triggers_in_flight
    while (running := in_flight.get(company)) is not None:
        await running.wait()
    done = in_flight[company] = anyio.Event()
    try:
        yield
    finally:
        del in_flight[company]
        done.set()


class BulkRun:
    """A bulk run, not started yet: enter it with ``async with`` to get the results.

    Leaving the block stops whatever is still running. A run can be entered once.
    Unexpected errors (from your progress callback, your idempotency-key function
    or your input iterator) stop the run and are raised from the ``async with``.
    """

    def __init__(
        self,
        core: _Core,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        make_job: Callable[[], Job],
        workers: int,
        requests_per_minute: float | NotGiven | None,
        on_progress: ProgressCallback | None,
        total: int | None,
    ) -> None:
        # Nothing here touches an event loop: the blocking facade builds runs in the
        # caller's thread and starts them on its loop.
        self._core = core
        self._items = items
        self._make_job = make_job
        self._workers = workers
        self._rate = requests_per_minute
        self._on_progress = on_progress
        self._total = total
        self._done = 0
        self._failed = 0
        self._entered = False
        self._crash: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[BulkResult] | None = None
        self._limiter: RateLimiter | None = None

    @property
    def progress(self) -> BulkProgress:
        """The progress so far."""
        return BulkProgress(self._done, self._failed, self._total)

    async def __aenter__(self) -> AsyncIterator[BulkResult]:
        if self._entered:
            raise RuntimeError("a bulk run can be entered only once; start a new one")
        self._entered = True
        core = self._core
        core.check_usable()
        job = self._make_job()
        if isinstance(self._rate, NotGiven):
            if core.rate_limiter is None:
                self._limiter = core.new_rate_limiter(DEFAULT_BULK_REQUESTS_PER_MINUTE)
        elif self._rate is not None:
            self._limiter = core.new_rate_limiter(self._rate)
        send, receive = anyio.create_memory_object_stream[BulkResult](self._workers)
        self._receive = receive
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        if self._limiter is not None:
            core.push_rate_limiter(self._limiter)
        tg.start_soon(self._drive, job, send)
        return receive

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        assert self._receive is not None
        tg.cancel_scope.cancel()
        try:
            if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                suppressed = bool(await tg.__aexit__(exc_type, exc, tb))
            else:
                # Your exception: stop the workers, then let it through as it is
                # (not wrapped in an exception group).
                await tg.__aexit__(None, None, None)
                suppressed = False
        finally:
            self._receive.close()
            if self._limiter is not None:
                self._core.pop_rate_limiter(self._limiter)
        if self._crash is not None:
            raise self._crash
        return suppressed

    def _fail(self, exc: BaseException) -> None:
        if self._crash is None:
            self._crash = exc
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    async def _drive(self, job: Job, results: MemoryObjectSendStream[BulkResult]) -> None:
        inputs, pulled = anyio.create_memory_object_stream[Any](0)
        async with results, anyio.create_task_group() as tg:
            for _ in range(self._workers):
                tg.start_soon(self._work, job, pulled.clone(), results.clone())
            pulled.close()
            async with inputs:
                try:
                    items = self._items
                    if isinstance(items, AsyncIterable):
                        async for item in items:
                            await inputs.send(item)
                    else:
                        for item in items:
                            await inputs.send(item)
                except Exception as exc:
                    self._fail(exc)

    async def _work(
        self,
        job: Job,
        pulled: MemoryObjectReceiveStream[Any],
        results: MemoryObjectSendStream[BulkResult],
    ) -> None:
        core = self._core
        async with pulled, results:
            async for item in pulled:
                # Paused (Codat's daily quota is spent): take no new company until resumed.
                await core.bulk_pause.wait(core.clock)
                try:
                    result = await job(item)
                    self._done += 1
                    if not result.ok:
                        self._failed += 1
                    if self._on_progress is not None:
                        self._on_progress(self.progress)
                except Exception as exc:
                    self._fail(exc)
                    return
                await results.send(result)
