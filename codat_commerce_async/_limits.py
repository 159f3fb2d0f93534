"""The limits every call of a client (and its ``with_options`` copies) shares.

A seam: the pipeline and bulk runs see only the two protocols below, so an
implementation that shares the limits across processes (Redis, say) can replace
:class:`InProcessLimits` without touching them.

- :class:`Limits`, used by every attempt: the 429 gate (after a 429 or 503 with
  ``Retry-After`` every call of the client waits, since Codat counts requests per
  IP), the request rate, and the in-flight cap;
- :class:`BulkLimits`, used by bulk runs only: a run's own request rate and at
  most one trigger in flight per company.

Every call has a :class:`Priority`: a bulk run's status polls are ``BACKGROUND`` and
take only the request rate's slack, so a trigger (or any call of yours) waiting for a
token always gets it before a poll does.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._clock import Clock
from ._pause import PauseGate
from ._quota import DEFAULT_QUOTA_RESERVE, DailyQuota, QuotaDecision
from ._ratelimit import RateLimiter

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["BulkLimits", "ClientLimits", "InProcessLimits", "Limits", "OnePerKey", "Priority"]


class Priority(enum.IntEnum):
    """Who gets the request rate's next token first."""

    FOREGROUND = 0
    """Triggers and every call you make: tokens are reserved in arrival order."""
    BACKGROUND = 1
    """A bulk run's status polls: a token only when no foreground request waits for
    it. The call's deadline starts once its first token is granted (waiting for slack
    is by design, not a slow service)."""


class OnePerKey:
    """At most one holder per key at a time; later ones wait in turn. Keys are kept
    only while held, so a run over a million companies holds no more than in flight."""

    def __init__(self) -> None:
        self._held: dict[str, anyio.Event] = {}

    def __iter__(self) -> Iterator[str]:
        """The keys held now."""
        return iter(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        while (running := self._held.get(key)) is not None:
            await running.wait()
        done = self._held[key] = anyio.Event()
        try:
            yield
        finally:
            del self._held[key]
            done.set()


class Limits(Protocol):
    """Permission to send one attempt, and what the answers teach about the limits."""

    max_concurrency: int
    """Attempts in flight at once."""

    async def acquire(self, call: Call[Any]) -> None:
        """Wait at the 429 gate, for the request rate (in the order of ``call.priority``)
        and for an in-flight slot, never past the call's deadline (then raise
        :meth:`Call.deadline_error`)."""
        ...

    def release(self, call: Call[Any]) -> None:
        """Give back the slot :meth:`acquire` took. Must not block: it runs in
        ``finally`` blocks, also under cancellation."""
        ...

    def observe(
        self, call: Call[Any], status: int, headers: Mapping[str, str], retry_after: float | None
    ) -> None:
        """Learn from an answer (``retry_after``: a 429's or 503's parsed ``Retry-After``,
        which closes the gate; ``headers`` carry Codat's ``X-Rate-Limit-*`` quota)."""
        ...

    def after_fork(self) -> None:
        """Start afresh in a forked child (the parent's state is not ours)."""
        ...


class BulkLimits(Protocol):
    """What bulk runs add: a run's own request rate, one trigger per company, and
    the pause that holds every run while Codat's daily quota is spent."""

    def run_rate(self, requests_per_minute: float) -> contextlib.AbstractContextManager[object]:
        """While entered, every request of the client keeps to ``requests_per_minute``."""
        ...

    def one_trigger(self, company_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """At most one trigger in flight per company; a second waits for the first."""
        ...

    @property
    def rate_limited(self) -> bool:
        """True when the client already has a request rate of its own."""
        ...

    async def wait_unpaused(self) -> None:
        """Return at once unless bulk runs are paused; else when the pause ends."""
        ...

    @property
    def quota_reserve(self) -> int:
        """Daily-quota requests bulk runs leave for interactive calls."""
        ...

    async def quota_decision(self) -> QuotaDecision:
        """May a bulk run start another trigger, given Codat's daily quota?"""
        ...


class ClientLimits(Limits, BulkLimits, Protocol):
    """Everything a client needs from its limits: what attempts and bulk runs use,
    and the pause of bulk runs that Codat's daily-quota webhooks drive."""

    def pause_bulk_runs(self, seconds: float | None) -> None:
        """Hold bulk runs for ``seconds`` (None: until :meth:`resume_bulk_runs`)."""
        ...

    def resume_bulk_runs(self) -> None:
        """End a pause now."""
        ...

    @property
    def bulk_runs_paused(self) -> bool:
        """True while bulk runs are held."""
        ...

    async def aclose(self) -> None:
        """Release what the limits hold outside this process (the client is closing)."""
        ...


class InProcessLimits:
    """The default :class:`ClientLimits`: the limits of one client in one process.
    It also shows what it holds (``current_rate``, ``triggers_in_flight``)."""

    def __init__(
        self,
        *,
        clock: Clock,
        max_concurrency: int,
        requests_per_minute: float | None,
        quota_reserve: int = DEFAULT_QUOTA_RESERVE,
    ) -> None:
        self.max_concurrency = max_concurrency
        self._clock = clock
        self._rpm = requests_per_minute
        self._pause = PauseGate()  # kept across a fork: the day's quota is still spent
        self.quota = DailyQuota(quota_reserve)  # kept across a fork too
        self.after_fork()

    def after_fork(self) -> None:
        self._slots = anyio.Semaphore(self.max_concurrency)
        self._gate_until = 0.0
        # The bucket every attempt takes a token from (None: no client-side limit,
        # and no cost on the call path); bulk runs push their own while they run.
        self._base_rate = None if self._rpm is None else self._new_rate(self._rpm)
        self._rate: RateLimiter | None = self._base_rate
        self._run_rates: list[RateLimiter] = []
        self._triggers = OnePerKey()

    # -- Limits ---------------------------------------------------------------

    async def acquire(self, call: Call[Any]) -> None:
        await self._wait_at_gate(call)
        if self._rate is not None:
            if call.priority is Priority.BACKGROUND:
                await self._rate.acquire(background=True)
                call.granted_slack()
            else:
                await self._throttle(self._rate, call)
        call.time_limit()  # past the deadline: raise before queueing
        # No acquire_nowait() shortcut: with one, cancelling 20 calls queued on a pool
        # of 10 left httpcore's pool stuck (encode/httpcore#1093's symptom).
        left = call.remaining()
        if left is None:
            await self._slots.acquire()
        else:
            acquired = False
            with anyio.move_on_after(max(0.0, left)):
                await self._slots.acquire()
                acquired = True
            if not acquired:
                raise call.deadline_error()
        try:
            # Cancelled while queued (taking a free slot is not a cancellation point):
            # start nothing.
            await anyio.lowlevel.checkpoint_if_cancelled()
            # A 429 may have closed the gate while this attempt queued for a slot.
            await self._wait_at_gate(call)
        except BaseException:
            self._slots.release()
            raise

    def release(self, call: Call[Any]) -> None:
        self._slots.release()

    def observe(
        self, call: Call[Any], status: int, headers: Mapping[str, str], retry_after: float | None
    ) -> None:
        if retry_after and retry_after <= call.settings.retry_policy.max_retry_after:
            self._gate_until = max(self._gate_until, self._clock.now() + retry_after)
        self.quota.observe(headers)

    async def _wait_at_gate(self, call: Call[Any]) -> None:
        """Sleep while the 429 gate is closed (never past the deadline)."""
        gate = self._gate_until - self._clock.now()
        if gate > 0:
            left = call.remaining()
            await self._clock.sleep(gate if left is None else max(0.0, min(gate, left)))

    async def _throttle(self, rate: RateLimiter, call: Call[Any]) -> None:
        """Take a token, or fail at once if waiting would outlast the deadline."""
        if not await rate.acquire(max_wait=call.remaining()):
            raise call.deadline_error(
                f"the client-side rate limit ({rate.requests_per_minute:g} requests a "
                f"minute) would delay this request past the call deadline of "
                f"{call.settings.deadline:g} s"
            )

    def _new_rate(self, requests_per_minute: float) -> RateLimiter:
        return RateLimiter(requests_per_minute, clock=self._clock.now, sleep=self._clock.sleep)

    # -- BulkLimits -----------------------------------------------------------

    @property
    def rate_limited(self) -> bool:
        return self._base_rate is not None

    @contextlib.contextmanager
    def run_rate(self, requests_per_minute: float) -> Iterator[object]:
        limiter = self._new_rate(requests_per_minute)
        self._run_rates.append(limiter)
        self._rate = limiter
        try:
            yield limiter
        finally:
            with contextlib.suppress(ValueError):  # runs may end in any order
                self._run_rates.remove(limiter)
            self._rate = self._run_rates[-1] if self._run_rates else self._base_rate

    def one_trigger(self, company_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._triggers.hold(company_id)

    async def wait_unpaused(self) -> None:
        await self._pause.wait(self._clock.now)

    @property
    def quota_reserve(self) -> int:
        return self.quota.reserve

    async def quota_decision(self) -> QuotaDecision:
        return self.quota.decide()

    # -- the bulk pause (Codat's daily quota webhooks) --------------------------

    def pause_bulk_runs(self, seconds: float | None) -> None:
        self._pause.pause(None if seconds is None else self._clock.now() + seconds)

    def resume_bulk_runs(self) -> None:
        self._pause.resume()

    @property
    def bulk_runs_paused(self) -> bool:
        return self._pause.paused(self._clock.now())

    async def aclose(self) -> None:
        return None  # nothing outside this process

    # -- what tests and status pages may read ---------------------------------

    @property
    def current_rate(self) -> RateLimiter | None:
        """The bucket requests take a token from now (None: no client-side limit)."""
        return self._rate

    @property
    def triggers_in_flight(self) -> frozenset[str]:
        """Companies with a bulk trigger in flight."""
        return frozenset(self._triggers)
