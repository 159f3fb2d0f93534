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
import dataclasses
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _protocol
from ._config import positive_int
from ._exceptions import CodatError, DailyQuotaExhaustedError, SyncWaitTimeoutError
from ._limits import BulkLimits
from ._models import CompanySyncStatus, SyncSummary
from ._ratelimit import DEFAULT_BULK_REQUESTS_PER_MINUTE, validate_rate
from ._response import APIResponse
from ._types import CompanyId, NotGiven
from ._waiting import validate_poll_settings

if TYPE_CHECKING:
    from ._resources._surface import LoopCaller

__all__ = [
    "DEFAULT_BULK_CONCURRENCY",
    "DEFAULT_WAIT_CONCURRENCY",
    "BlockingBulkRun",
    "BulkProgress",
    "BulkResult",
    "BulkRun",
    "IdempotencyKeys",
    "ProgressCallback",
    "trigger_run",
    "wait_run",
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
#: Validated poll settings: first interval, cap, timeout.
Poll = tuple[float, float, float | None]
#: What ``wait_for_many`` accepts for one sync.
WaitTarget = (
    BulkResult | SyncSummary | tuple[CompanyId, "CompanyId | SyncSummary | None"] | CompanyId
)
#: Waits for one sync (the client's ``wait_for_sync``).
Waiter = Callable[[CompanyId, "CompanyId | SyncSummary | None", Poll], Awaitable[CompanySyncStatus]]
#: Sends one trigger with its key.
Trigger = Callable[[str, str], Awaitable[APIResponse[SyncSummary]]]


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


class BulkRun:
    """A bulk run, not started yet: enter it with ``async with`` to get the results.

    Leaving the block stops whatever is still running. A run can be entered once.
    Unexpected errors (from your progress callback, your idempotency-key function
    or your input iterator) stop the run and are raised from the ``async with``.
    """

    def __init__(
        self,
        limits: BulkLimits,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        make_job: Callable[[], Job],
        workers: int,
        requests_per_minute: float | NotGiven | None,
        on_progress: ProgressCallback | None,
        total: int | None,
        on_enter: Callable[[], None],
    ) -> None:
        # Nothing here touches an event loop: the blocking facade builds runs in the
        # caller's thread and starts them on its loop.
        self._limits = limits
        self._on_enter = on_enter
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
        self._scope: anyio.CancelScope | None = None  # the run's own tasks (see _drive)
        self._receive: MemoryObjectReceiveStream[BulkResult] | None = None
        self._rate_scope: contextlib.ExitStack | None = None

    @property
    def progress(self) -> BulkProgress:
        """The progress so far."""
        return BulkProgress(self._done, self._failed, self._total)

    async def __aenter__(self) -> AsyncIterator[BulkResult]:
        if self._entered:
            raise RuntimeError("a bulk run can be entered only once; start a new one")
        self._entered = True
        self._on_enter()
        job = self._make_job()
        rate = self._rate
        if isinstance(rate, NotGiven):
            rate = None if self._limits.rate_limited else DEFAULT_BULK_REQUESTS_PER_MINUTE
        send, receive = anyio.create_memory_object_stream[BulkResult](self._workers)
        self._receive = receive
        self._scope = anyio.CancelScope(shield=True)
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        if rate is not None:
            self._rate_scope = contextlib.ExitStack()
            self._rate_scope.enter_context(self._limits.run_rate(rate))
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
        assert self._scope is not None
        self._scope.cancel()  # stop the run's tasks; the caller's own scope is not touched
        try:
            if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                # A cancellation from outside propagates (the task group swallows
                # only its own), and then wins over a crash of the run.
                suppressed = bool(await tg.__aexit__(exc_type, exc, tb))
            else:
                # Your exception: stop the workers, then let it through as it is
                # (not wrapped in an exception group).
                await tg.__aexit__(None, None, None)
                suppressed = False
        finally:
            self._receive.close()
            if self._rate_scope is not None:
                self._rate_scope.close()
        outside_cancel = isinstance(exc, anyio.get_cancelled_exc_class()) and not suppressed
        if self._crash is not None and not outside_cancel:
            raise self._crash
        return suppressed

    def _fail(self, exc: BaseException) -> None:
        if self._crash is None:
            self._crash = exc
        assert self._tg is not None
        assert self._scope is not None
        self._scope.cancel()
        self._tg.cancel_scope.cancel()  # interrupt the block too: the crash is raised there

    async def _drive(self, job: Job, results: MemoryObjectSendStream[BulkResult]) -> None:
        """The run, in a task of the caller's task group, under a shielded scope.

        Why the shield: anyio (4.x, asyncio) hands a scope's pending uncancellations to
        its parent when the parent is cancelled too, even when the parent belongs to
        another task; a cancelled run then uncancelled the *caller's* task once too
        often and could swallow a Ctrl-C (docs/known-issues.md). A shielded scope never
        hands them on, so every scope below it settles its count in this task. The
        run stops only through ``self._scope`` (``__aexit__`` and ``_fail`` cancel it).
        """
        inputs, pulled = anyio.create_memory_object_stream[Any](0)
        assert self._scope is not None
        with self._scope:
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
        async with pulled, results:
            async for item in pulled:
                # Paused (Codat's daily quota is spent): take no new company until resumed.
                await self._limits.wait_unpaused()
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


# -- the runs -------------------------------------------------------------------


def _check_items(items: object) -> int | None:
    """The input's size if known; ``TypeError`` for what is not an iterable of ids."""
    if isinstance(items, (str, bytes)):
        raise TypeError("pass an iterable of company ids, not a single string")
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise TypeError(f"expected an iterable or async iterable, got {type(items).__name__}")
    return len(items) if isinstance(items, Sized) else None


def _new_run(
    limits: BulkLimits,
    items: Iterable[Any] | AsyncIterable[Any],
    make_job: Callable[[], Job],
    workers: int,
    requests_per_minute: float | NotGiven | None,
    on_progress: ProgressCallback | None,
    on_enter: Callable[[], None],
) -> BulkRun:
    """A run over ``items`` once the input and the run's rate are checked."""
    total = _check_items(items)
    if not isinstance(requests_per_minute, NotGiven):
        requests_per_minute = validate_rate("requests_per_minute", requests_per_minute)
    return BulkRun(
        limits,
        items,
        make_job=make_job,
        workers=workers,
        requests_per_minute=requests_per_minute,
        on_progress=on_progress,
        total=total,
        on_enter=on_enter,
    )


async def quota_refusal(
    limits: BulkLimits, company: str, key: str
) -> DailyQuotaExhaustedError | None:
    """None if Codat's daily quota lets a run start another trigger; else the error that
    becomes the company's result (nothing is sent for it)."""
    decision = await limits.quota_decision()
    if decision.action == "go":
        return None
    seen = decision.snapshot
    assert seen is not None
    return DailyQuotaExhaustedError(
        company_id=company,
        remaining=seen.remaining,
        limit=seen.limit,
        reset_at=seen.reset_at,
        reserve=limits.quota_reserve,
        idempotency_key=key,
    )


def trigger_run(
    company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
    send: Trigger,
    waiter: Waiter,
    *,
    limits: BulkLimits,
    on_enter: Callable[[], None],
    max_concurrency: int,
    concurrency: int,
    requests_per_minute: float | NotGiven | None,
    idempotency_keys: IdempotencyKeys | None,
    on_progress: ProgressCallback | None,
    wait: bool,
    wait_concurrency: int,
    poll: Poll,
) -> BulkRun:
    """A run that triggers a sync per company (and, with ``wait``, waits for it)."""
    triggers = min(positive_int("concurrency", concurrency), max_concurrency)
    settings = validate_poll_settings(*poll) if wait else poll
    workers = positive_int("wait_concurrency", wait_concurrency) if wait else triggers

    def make_job() -> Job:
        # Waiting runs have more workers than trigger slots: a worker holds a slot
        # only while its trigger is in flight, then waits for the sync without it.
        slots = anyio.Semaphore(triggers) if wait else None

        async def job(item: Any) -> BulkResult:
            try:
                company = _protocol.canonical_company_id(item)
            except ValueError as exc:
                return BulkResult(company_id=label(item), error=exc)
            try:
                key = key_for(idempotency_keys, company)
            except ValueError as exc:
                return BulkResult(company_id=company, error=exc)
            if (refused := await quota_refusal(limits, company, key)) is not None:
                return BulkResult(company, error=refused, idempotency_key=key)
            try:
                async with limits.one_trigger(company):
                    if slots is None:
                        response = await send(company, key)
                    else:
                        async with slots:
                            response = await send(company, key)
            except CodatError as exc:
                attempts = getattr(exc, "attempts", 0)
                return BulkResult(company, error=exc, attempts=attempts, idempotency_key=key)
            result = BulkResult(
                company, summary=response.parsed, attempts=response.attempts, idempotency_key=key
            )
            if not wait:
                return result
            return await _wait_result(waiter, result, response.parsed, settings)

        return job

    return _new_run(
        limits, company_ids, make_job, workers, requests_per_minute, on_progress, on_enter
    )


def wait_run(
    syncs: Iterable[WaitTarget] | AsyncIterable[WaitTarget],
    waiter: Waiter,
    *,
    limits: BulkLimits,
    on_enter: Callable[[], None],
    concurrency: int,
    requests_per_minute: float | NotGiven | None,
    on_progress: ProgressCallback | None,
    poll: Poll,
) -> BulkRun:
    """A run that waits for many syncs."""
    settings = validate_poll_settings(*poll)
    workers = positive_int("concurrency", concurrency)

    def make_job() -> Job:
        async def job(item: Any) -> BulkResult:
            try:
                base, target = _wait_target(item)
            except ValueError as exc:
                return BulkResult(company_id=label(item), error=exc)
            if base.error is not None:
                return base
            return await _wait_result(waiter, base, target, settings)

        return job

    return _new_run(limits, syncs, make_job, workers, requests_per_minute, on_progress, on_enter)


async def _wait_result(
    waiter: Waiter, base: BulkResult, target: CompanyId | SyncSummary | None, poll: Poll
) -> BulkResult:
    try:
        status = await waiter(base.company_id, target, poll)
    except SyncWaitTimeoutError as exc:
        return dataclasses.replace(base, error=exc, status=exc.last_status)
    except (CodatError, ValueError) as exc:
        return dataclasses.replace(base, error=exc)
    return dataclasses.replace(base, status=status)


def _wait_target(item: Any) -> tuple[BulkResult, CompanyId | SyncSummary | None]:
    """What to wait for: the result to extend and the sync (summary, id or None)."""
    if isinstance(item, BulkResult):
        return item, item.summary
    if isinstance(item, SyncSummary):
        if not item.company_id:
            raise ValueError("this SyncSummary has no companyId; pass (company_id, summary)")
        company = _protocol.canonical_company_id(item.company_id)
        return BulkResult(company, summary=item), item
    if isinstance(item, tuple) and len(item) == 2:
        company = _protocol.canonical_company_id(item[0])
        summary = item[1] if isinstance(item[1], SyncSummary) else None
        return BulkResult(company, summary=summary), item[1]
    return BulkResult(_protocol.canonical_company_id(item)), None


class BlockingBulkRun:
    """A bulk run for blocking code: iterate it for :class:`BulkResult` values.

    ::

        for result in client.sync.request_sync_many(ids):
            ...

        with client.sync.request_sync_many(ids) as results:   # stops on leaving the block
            for result in results:
                ...

    The run works on the client's event loop; each result crosses to your thread as
    you ask for it. Breaking out of the loop, an exception or Ctrl-C stops the run
    and waits for its tasks to end. (A bare ``for`` stops it when the loop's iterator
    is released, which CPython does at once; ``with`` makes it explicit.)
    """

    def __init__(self, loop: LoopCaller, run: BulkRun) -> None:
        self._loop = loop
        self._run = run
        self._cm: Any = None

    @property
    def progress(self) -> BulkProgress:
        """The run's :class:`BulkProgress` so far."""
        return self._run.progress

    def __enter__(self) -> Iterator[BulkResult]:
        if self._cm is not None:
            raise RuntimeError("a bulk run can be entered only once; start a new one")
        self._cm = self._loop.wrap_async_context_manager(self._run)
        results = self._cm.__enter__()
        return self._results(results)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = self._cm.__exit__(exc_type, exc, tb)
        return result

    def __iter__(self) -> Iterator[BulkResult]:
        with self as results:
            yield from results

    def _results(self, results: Any) -> Iterator[BulkResult]:
        while True:
            try:
                item: BulkResult = self._loop.call(results.__anext__)
            except (StopAsyncIteration, anyio.ClosedResourceError):
                return  # the run ended (or stopped: leaving the block raises why)
            yield item
