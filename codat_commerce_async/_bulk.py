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

Waiting runs do not wait in their workers: a trigger worker hands the started sync to
the run's poll schedule (:mod:`._schedule`, a heap of small entries) and takes the
next company, so triggers flow at the run's pace whatever the syncs take. One
dispatcher task sleeps until the earliest poll is due and hands due entries to a few
poller tasks, whose status calls are ``BACKGROUND`` priority: they use only the rate
the triggers leave (:class:`~._limits.Priority`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
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
from ._clock import Clock
from ._config import positive_int
from ._exceptions import (
    CodatError,
    DailyQuotaExhaustedError,
    NotFoundError,
    SyncWaitTimeoutError,
)
from ._limits import BulkLimits
from ._logging import logger
from ._models import CompanySyncStatus, SyncSummary
from ._ratelimit import DEFAULT_BULK_REQUESTS_PER_MINUTE, validate_rate
from ._response import APIResponse
from ._schedule import PollSchedule, Waiting
from ._types import CompanyId, NotGiven

if TYPE_CHECKING:
    from ._resources._surface import LoopCaller

__all__ = [
    "DEFAULT_BULK_CONCURRENCY",
    "BlockingBulkRun",
    "BulkProgress",
    "BulkResult",
    "BulkRun",
    "IdempotencyKeys",
    "Poller",
    "ProgressCallback",
    "Waits",
    "polls_in_flight",
    "trigger_run",
    "wait_run",
]

T = TypeVar("T")

#: Triggers in flight at once in a bulk run (never above the client's ``max_concurrency``);
#: a waiting run has as many status polls in flight at most.
DEFAULT_BULK_CONCURRENCY = 10


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """How far a bulk run has got: results produced so far and the input size if known;
    for waiting runs also how many syncs were triggered, are being waited for and were
    seen finished, and when the run expects to end."""

    done: int
    """Results produced (succeeded or failed)."""
    failed: int
    """Results that are not :attr:`BulkResult.ok`."""
    total: int | None
    """The number of inputs, when the input has a length; otherwise None."""
    triggered: int = 0
    """Triggers Codat accepted."""
    waiting: int = 0
    """Syncs being waited for (started, not yet seen finished)."""
    confirmed: int = 0
    """Syncs seen finished by a poll (succeeded or failed at Codat)."""
    expected_seconds_left: float | None = None
    """A waiting run's estimate of the time left, in seconds (None: not known yet, or
    the input has no length)."""

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
#: Called after every change of the progress (a result, a trigger, a sync seen
#: finished), on the event loop; keep it quick.
ProgressCallback = Callable[[BulkProgress], object]
#: One input's work: its result, or a started sync for the poll schedule.
Job = Callable[[Any], Awaitable["BulkResult | Waiting"]]
#: Validated poll settings: first interval (the shortest gap), cap (None: the
#: schedule decides), timeout.
Poll = tuple[float, "float | None", "float | None"]
#: What ``wait_for_many`` accepts for one sync.
WaitTarget = (
    BulkResult | SyncSummary | tuple[CompanyId, "CompanyId | SyncSummary | None"] | CompanyId
)
#: Polls one sync's status once (by id, or the latest with None), as a background call.
Poller = Callable[[str, "str | None"], Awaitable[CompanySyncStatus]]
#: Sends one trigger with its key.
Trigger = Callable[[str, str], Awaitable[APIResponse[SyncSummary]]]


@dataclass(frozen=True, slots=True)
class Waits:
    """How a run waits: its status poller, poll settings, polls in flight, clock."""

    poller: Poller
    poll: Poll
    in_flight: int
    clock: Clock


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
        waits: Waits | None = None,
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
        self._triggered = 0
        self._entered = False
        self._crash: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None  # the run's own tasks (see _drive)
        self._receive: MemoryObjectReceiveStream[BulkResult] | None = None
        self._rate_scope: contextlib.ExitStack | None = None
        self._pace: float | None = None  # requests a minute, once started
        # The poll schedule of a waiting run, and its dispatcher's state.
        self._waits = waits
        self._schedule: PollSchedule | None = None
        if waits is not None:
            first, cap, timeout = waits.poll
            self._schedule = PollSchedule(first, cap, timeout)
        self._intake_open = workers
        self._polls_out = 0
        self._last_trigger_at = 0.0
        self._nap: anyio.CancelScope | None = None
        self._nap_until: float | None = None

    @property
    def progress(self) -> BulkProgress:
        """The progress so far."""
        schedule = self._schedule
        if schedule is None:
            return BulkProgress(self._done, self._failed, self._total, self._triggered)
        waiting = len(schedule) + self._polls_out
        return BulkProgress(
            self._done,
            self._failed,
            self._total,
            self._triggered,
            waiting,
            schedule.confirmed,
            self._seconds_left(waiting),
        )

    def _seconds_left(self, waiting: int) -> float | None:
        """A rough estimate: the requests left at the run's pace, and the expected
        duration of a sync triggered last (whichever is longer)."""
        schedule = self._schedule
        if schedule is None or self._total is None or not self._pace:
            return None
        per_second = self._pace / 60.0
        inputs_left = max(0, self._total - self._done - waiting)
        polls_each = max(1.0, schedule.polls / schedule.confirmed) if schedule.confirmed else 1.5
        requests = inputs_left * (1.0 + polls_each) + waiting * polls_each
        by_rate = requests / per_second
        by_duration = (
            inputs_left / per_second + schedule.expected_duration() if inputs_left else 0.0
        )
        return max(by_rate, by_duration)

    def _changed(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def __aenter__(self) -> AsyncIterator[BulkResult]:
        if self._entered:
            raise RuntimeError("a bulk run can be entered only once; start a new one")
        self._entered = True
        self._on_enter()
        job = self._make_job()
        rate = self._rate
        if isinstance(rate, NotGiven):
            rate = None if self._limits.rate_limited else DEFAULT_BULK_REQUESTS_PER_MINUTE
        self._pace = rate
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
                if self._waits is not None:
                    # The poll schedule's tasks live under the shield too (see above).
                    due, taken = anyio.create_memory_object_stream[Waiting](0)
                    for _ in range(self._waits.in_flight):
                        tg.start_soon(self._poll_worker, taken.clone(), results.clone())
                    taken.close()
                    tg.start_soon(self._dispatch, due)
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
        try:
            async with pulled, results:
                async for item in pulled:
                    # Paused (Codat's daily quota is spent): take no new company until resumed.
                    await self._limits.wait_unpaused()
                    try:
                        outcome = await job(item)
                        if isinstance(outcome, Waiting):
                            self._start_waiting(outcome)
                            continue
                        self._count(outcome)
                    except Exception as exc:
                        self._fail(exc)
                        return
                    await results.send(outcome)
        finally:
            self._intake_open -= 1
            if not self._intake_open:
                self._wake()

    def _count(self, result: BulkResult) -> None:
        """Count a result about to be handed out, and tell the progress callback."""
        self._done += 1
        if not result.ok:
            self._failed += 1
        if self._schedule is None and result.summary is not None:
            self._triggered += 1
        self._changed()

    # -- waiting: the poll schedule's dispatcher and pollers --------------------------

    def _start_waiting(self, entry: Waiting) -> None:
        schedule, waits = self._schedule, self._waits
        assert schedule is not None
        assert waits is not None
        now = waits.clock.now()
        if entry.packed is not None:  # triggered by this run
            self._triggered += 1
            self._last_trigger_at = now
        schedule.add(entry, now, poll_now=not entry.observed)
        if self._nap_until is None or entry.due < self._nap_until:
            self._wake()
        self._changed()

    def _wake(self) -> None:
        """Interrupt the dispatcher's nap: something may be due earlier, or it may end."""
        if self._nap is not None:
            self._nap.cancel()

    async def _dispatch(self, due: MemoryObjectSendStream[Waiting]) -> None:
        """Hand each entry to a poller when its poll is due; end when nothing is left."""
        schedule, waits = self._schedule, self._waits
        assert schedule is not None
        assert waits is not None
        clock = waits.clock
        async with due:
            while True:
                entry = schedule.pop_due(clock.now())
                if entry is not None:
                    self._polls_out += 1
                    await due.send(entry)
                    continue
                when = schedule.next_due()
                if when is None and not self._intake_open and not self._polls_out:
                    return
                with anyio.CancelScope() as nap:
                    self._nap, self._nap_until = nap, when
                    if when is None:
                        await anyio.sleep_forever()
                    else:
                        await clock.sleep(max(0.0, when - clock.now()))
                self._nap = self._nap_until = None

    async def _poll_worker(
        self,
        taken: MemoryObjectReceiveStream[Waiting],
        results: MemoryObjectSendStream[BulkResult],
    ) -> None:
        async with taken, results:
            async for entry in taken:
                try:
                    try:
                        result = await self._poll(entry)
                    finally:
                        self._polls_out -= 1
                        self._wake()
                    if result is None:
                        self._changed()  # polled, still running
                    else:
                        self._count(result)
                except Exception as exc:
                    self._fail(exc)
                    return
                if result is not None:
                    await results.send(result)

    async def _poll(self, entry: Waiting) -> BulkResult | None:
        """Poll one sync once: its final result, or None when it was rescheduled."""
        schedule, waits = self._schedule, self._waits
        assert schedule is not None
        assert waits is not None
        company = entry.base.company_id
        try:
            try:
                status = await waits.poller(company, None if entry.latest else entry.sync_id)
            except NotFoundError:
                if entry.latest:
                    raise
                entry.latest = True
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "sync %s of company %s is unknown to the by-id status endpoint; "
                        "polling the company's latest sync instead",
                        entry.sync_id,
                        company,
                    )
                status = await waits.poller(company, None)
        except (CodatError, ValueError) as exc:
            schedule.failed(entry)
            return dataclasses.replace(_base(entry), error=exc)
        now = waits.clock.now()
        if status.is_terminal:
            schedule.finished(entry, now)
            return dataclasses.replace(_base(entry), status=status)
        if schedule.running(entry, now, status):
            return None
        timeout = schedule.timeout
        error = SyncWaitTimeoutError(
            company_id=company,
            sync_id=entry.sync_id,
            last_status=status,
            timeout=now - entry.origin if timeout is None else timeout,
        )
        return dataclasses.replace(_base(entry), error=error, status=status)


def _base(entry: Waiting) -> BulkResult:
    """The entry's result so far, with the trigger's answer unpacked."""
    raw = entry.unpacked()
    if raw is None:
        return entry.base
    return dataclasses.replace(entry.base, summary=SyncSummary.model_validate_json(raw))


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
    waits: Waits | None = None,
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
        waits=waits,
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


def polls_in_flight(
    concurrency: int, wait_concurrency: int | None, max_concurrency: int, stacklevel: int = 4
) -> int:
    """How many status polls a waiting run keeps in flight: ``concurrency``, or the
    deprecated ``wait_concurrency`` (which no longer caps the syncs waited for)."""
    if wait_concurrency is None:
        return min(positive_int("concurrency", concurrency), max_concurrency)
    warnings.warn(
        "wait_concurrency no longer limits how many syncs are waited for (a waiting run "
        "polls from one schedule, whatever their number); it now bounds only the status "
        "polls in flight, as concurrency does. Drop it.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return min(positive_int("wait_concurrency", wait_concurrency), max_concurrency)


def trigger_run(
    company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
    send: Trigger,
    *,
    limits: BulkLimits,
    on_enter: Callable[[], None],
    max_concurrency: int,
    concurrency: int,
    requests_per_minute: float | NotGiven | None,
    idempotency_keys: IdempotencyKeys | None,
    on_progress: ProgressCallback | None,
    waits: Waits | None,
) -> BulkRun:
    """A run that triggers a sync per company (and, with ``waits``, waits for it)."""
    triggers = min(positive_int("concurrency", concurrency), max_concurrency)
    clock = waits.clock if waits is not None else None

    def make_job() -> Job:
        async def job(item: Any) -> BulkResult | Waiting:
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
                    response = await send(company, key)
            except CodatError as exc:
                attempts = getattr(exc, "attempts", 0)
                return BulkResult(company, error=exc, attempts=attempts, idempotency_key=key)
            summary = response.parsed
            if clock is None:
                return BulkResult(
                    company, summary=summary, attempts=response.attempts, idempotency_key=key
                )
            # Waiting: keep the answer packed (a run may wait for 100,000 syncs at once).
            # Not "in progress" (unusual): poll at once for the final status.
            base = BulkResult(company, attempts=response.attempts, idempotency_key=key)
            return Waiting(
                base,
                _sync_id(summary),
                origin=clock.now(),
                running=summary.is_in_progress,
                packed=Waiting.pack(response.http_response.content),
            )

        return job

    return _new_run(
        limits, company_ids, make_job, triggers, requests_per_minute, on_progress, on_enter, waits
    )


def wait_run(
    syncs: Iterable[WaitTarget] | AsyncIterable[WaitTarget],
    *,
    limits: BulkLimits,
    on_enter: Callable[[], None],
    requests_per_minute: float | NotGiven | None,
    on_progress: ProgressCallback | None,
    waits: Waits,
) -> BulkRun:
    """A run that waits for many syncs."""
    clock = waits.clock

    def make_job() -> Job:
        async def job(item: Any) -> BulkResult | Waiting:
            try:
                base, target = _wait_target(item)
            except ValueError as exc:
                return BulkResult(company_id=label(item), error=exc)
            if base.error is not None:
                return base
            running = isinstance(target, SyncSummary) and target.is_in_progress
            if isinstance(target, SyncSummary):
                target = target.commerce_sync_id
            try:
                sync = None if target is None else _protocol.canonical_sync_id(target)
            except ValueError as exc:
                return dataclasses.replace(base, error=exc)
            return Waiting(base, sync, origin=clock.now(), running=running)

        return job

    return _new_run(limits, syncs, make_job, 1, requests_per_minute, on_progress, on_enter, waits)


def _sync_id(summary: SyncSummary) -> str | None:
    try:
        return _protocol.canonical_sync_id(summary.commerce_sync_id or "")
    except ValueError:
        return None  # no usable id: poll the company's latest sync


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
