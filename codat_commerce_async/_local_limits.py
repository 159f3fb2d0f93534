"""Codat's limits kept in this process: the fallback of :class:`RedisLimits`.

The same operations as the Redis implementation (a request rate, the 429 gate, one
trigger per company, a per-company request cap, the daily quota), on this process's
monotonic clock. Used while Redis cannot be reached.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping

import anyio

from ._limits import OnePerKey
from ._quota import DailyQuota, QuotaDecision
from ._ratelimit import RateLimiter

__all__ = ["LocalLimits"]


class LocalLimits:
    """In-process limits: a token bucket, a gate, per-company semaphores and events."""

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        per_company_concurrency: int | None = None,
        quota_reserve: int,
    ) -> None:
        self.bucket = None if requests_per_minute is None else RateLimiter(requests_per_minute)
        self.per_company_concurrency = per_company_concurrency
        self.quota = DailyQuota(quota_reserve)
        self._gate_until = 0.0
        self._slots: dict[str, tuple[anyio.Semaphore, int]] = {}
        self._triggers = OnePerKey()

    async def acquire(self, max_wait: float | None = None, *, background: bool = False) -> bool:
        """Wait at the gate, then take a token (False: it would take over ``max_wait``;
        ``background``: only the bucket's slack)."""
        gate = self._gate_until - time.monotonic()
        if gate > 0:
            if max_wait is not None and gate > max_wait:
                return False
            await anyio.sleep(gate)
            max_wait = None if max_wait is None else max_wait - gate
        if self.bucket is None:
            return True
        return await self.bucket.acquire(max_wait=max_wait, background=background)

    async def close_gate(self, seconds: float) -> None:
        self._gate_until = max(self._gate_until, time.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def company_slot(self, company_id: str) -> AsyncIterator[None]:
        cap = self.per_company_concurrency
        if cap is None:
            yield
            return
        semaphore, users = self._slots.get(company_id) or (anyio.Semaphore(cap), 0)
        self._slots[company_id] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[company_id]
            if users <= 1:
                del self._slots[company_id]
            else:
                self._slots[company_id] = (semaphore, users - 1)

    def trigger_lease(self, company_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._triggers.hold(company_id)

    async def observe(self, headers: Mapping[str, str]) -> None:
        self.quota.observe(headers)

    async def quota_decision(self) -> QuotaDecision:
        return self.quota.decide()
