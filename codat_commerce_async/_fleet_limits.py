"""A client's limits when it is given a :class:`RedisLimits`: the fleet's on top of its own.

The client keeps its own in-flight cap, a bulk run's own rate and the webhook pause
(:class:`InProcessLimits`); the fleet's limits come from Redis: the request rate per
egress IP and the 429 gate (before the in-flight slot), a company's request slot (after
it), one trigger per company, and the daily quota.

The seam's ``release`` and ``observe`` must not block (they run in ``finally`` blocks,
under cancellation too), so what they tell Redis is sent from tasks of their own, which
:meth:`FleetLimits.aclose` waits for. A lost update costs nothing lasting: a slot not
given back expires after ``lease_ttl``, the quota is refilled by the next response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._clock import Clock
from ._limits import InProcessLimits, Priority
from ._quota import QuotaDecision
from ._redis_limits import RedisLimits

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["FleetLimits"]

logger = logging.getLogger("codat_commerce_async.limits")


async def _quietly(work: Awaitable[None]) -> None:
    """Run a background update; its failure is logged, never raised into nowhere."""
    try:
        await work
    except Exception as exc:  # Redis errors are handled inside; anything else is a bug
        logger.warning("shared limits update failed: %s: %s", type(exc).__name__, exc)


class FleetLimits(InProcessLimits):
    """:class:`InProcessLimits` plus the limits shared through ``shared``."""

    def __init__(
        self,
        shared: RedisLimits,
        *,
        clock: Clock,
        max_concurrency: int,
        requests_per_minute: float | None,
    ) -> None:
        super().__init__(
            clock=clock,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            quota_reserve=shared.quota_reserve,
        )
        self.shared = shared
        self._company_slots: dict[int, Callable[[], Awaitable[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"FleetLimits({self.shared!r}, max_concurrency={self.max_concurrency})"

    # -- Limits ---------------------------------------------------------------

    async def acquire(self, call: Call[Any]) -> None:
        shared = self.shared
        if call.priority is Priority.BACKGROUND:
            # Fleet-wide slack only: a trigger of any worker reserves its slot first.
            await shared.acquire(background=True)
            call.granted_slack()
        elif not await shared.acquire(max_wait=call.remaining()):
            raise call.deadline_error(
                f"the shared rate limit ({shared.requests_per_minute:g} requests a minute "
                f"for {shared.egress_key}) or its 429 gate would delay this request past "
                f"the call deadline of {call.settings.deadline:g} s"
            )
        await super().acquire(call)
        company = call.op.company_id
        if not company:
            return
        try:
            self._company_slots[id(call)] = await shared.take_company_slot(company)
            if not call.op.idempotent:  # a trigger: last, closest to the send
                await shared.confirm_trigger_lease(company)
        except BaseException:
            self.release(call)  # the in-flight slot, and the company's if it was taken
            raise

    def release(self, call: Call[Any]) -> None:
        super().release(call)
        give_back = self._company_slots.pop(id(call), None)
        if give_back is not None:
            self._spawn(give_back())

    def observe(
        self, call: Call[Any], status: int, headers: Mapping[str, str], retry_after: float | None
    ) -> None:
        super().observe(call, status, headers, retry_after)
        self._spawn(self.shared.observe(headers))
        self._spawn(self.shared.count_sent())  # for `codat-commerce fleet status`
        if retry_after and retry_after <= call.settings.retry_policy.max_retry_after:
            self._spawn(self.shared.close_gate(retry_after))

    def after_fork(self) -> None:
        if hasattr(self, "shared"):  # not while InProcessLimits.__init__ runs
            raise RuntimeError(
                "this AsyncSyncClient and its RedisLimits were created in another process "
                "(before os.fork()); create both in the child process"
            )
        super().after_fork()

    # -- BulkLimits -----------------------------------------------------------

    @property
    def rate_limited(self) -> bool:
        return True  # the fleet's rate governs: runs add no default bucket of their own

    @contextlib.asynccontextmanager
    async def one_trigger(self, company_id: str) -> AsyncIterator[None]:
        async with self.shared.trigger_lease(company_id):
            yield

    async def quota_decision(self) -> QuotaDecision:
        return await self.shared.quota_decision()

    # -- the fleet-wide pause (webhooks.apply_rate_limit) --------------------------

    def pause_bulk_runs(self, seconds: float | None) -> None:
        super().pause_bulk_runs(seconds)
        self._spawn(self.shared.pause_bulk_runs(seconds))  # every process of the account

    def resume_bulk_runs(self) -> None:
        super().resume_bulk_runs()
        self._spawn(self.shared.resume_bulk_runs())

    @property
    def bulk_runs_paused(self) -> bool:
        return super().bulk_runs_paused or self.shared.bulk_runs_paused

    async def wait_unpaused(self) -> None:
        while True:  # this process's own pause, then the fleet's, until neither holds
            await super().wait_unpaused()
            if not await self.shared.wait_unpaused():
                return

    # -- lifecycle -------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait for the updates still on their way to Redis, then drop its connections."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.shared.disconnect()
