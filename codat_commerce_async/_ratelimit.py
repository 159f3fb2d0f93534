"""A client-side token bucket: keep a client's request rate under Codat's per-IP limit.

Codat rejects more than 1,000 requests a minute from one IP with 429. A bucket holds
up to ``burst`` tokens and refills at ``requests_per_minute / 60`` tokens a second;
every attempt takes one. A caller that finds the bucket empty *reserves* the next
token (the count goes negative) and sleeps until it is due, so waiters are served
in arrival order without a lock and the sleep is the only await. A waiter that is
cancelled gives its token back.

Background requests (a bulk run's status polls) take only the slack: they never
reserve a future token, so a token goes to any waiting foreground request (a trigger,
a call of yours) first. They queue among themselves in arrival order; only the head
of that queue watches the bucket.

The clock and sleep are injectable, so tests drive it with a fake clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from ._exceptions import ConfigurationError

__all__ = ["DEFAULT_BULK_REQUESTS_PER_MINUTE", "RateLimiter", "validate_rate"]

#: The rate a bulk run uses when neither it nor its client sets one: under Codat's
#: documented 1,000 requests a minute per IP, leaving room for other traffic.
DEFAULT_BULK_REQUESTS_PER_MINUTE = 900.0


def validate_rate(name: str, value: float | None) -> float | None:
    """``value`` as a float if it is a positive finite number, None if None."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a positive number of requests or None")
    return float(value)


class RateLimiter:
    """A token bucket of ``requests_per_minute``, at most ``burst`` at once.

    ``burst`` defaults to one second of traffic (at least 1), so requests are spread
    evenly rather than sent in a minute's worth at once.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        rate = validate_rate("requests_per_minute", requests_per_minute)
        assert rate is not None
        self.requests_per_minute = rate
        self._rate = rate / 60.0
        if burst is None:
            burst = max(1.0, self._rate)
        if not math.isfinite(burst) or burst < 1:
            raise ConfigurationError("burst must be a number >= 1")
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated: float | None = None  # set by the first acquire
        self._background: deque[anyio.Event] = deque()  # background waiters, in order

    def __repr__(self) -> str:
        rate, burst = self.requests_per_minute, self.burst
        return f"RateLimiter(requests_per_minute={rate:g}, burst={burst:g})"

    def _refill(self) -> float:
        now = self._clock()
        elapsed = 0.0 if self._updated is None else max(0.0, now - self._updated)
        self._updated = now
        return min(self.burst, self._tokens + elapsed * self._rate)

    async def acquire(self, max_wait: float | None = None, *, background: bool = False) -> bool:
        """Take one token, sleeping until it is due.

        Returns False at once, taking nothing, when the wait would exceed ``max_wait``
        seconds (a call whose deadline would pass while it waits). ``background``:
        wait for the slack instead (no ``max_wait``: how long that takes is not known).
        """
        if background:
            await self._acquire_background()
            return True
        tokens = self._refill()
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate
        if max_wait is not None and wait > max_wait:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        if wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:
                self._tokens += 1.0  # never sent: give the token back
                raise
        return True

    async def _acquire_background(self) -> None:
        """Take a token only when one is free now: foreground requests reserve theirs
        ahead (the count goes negative), so they always come first."""
        turn = anyio.Event()
        queue = self._background
        queue.append(turn)
        try:
            if queue[0] is not turn:
                await turn.wait()  # set when the waiter ahead leaves
            while True:
                tokens = self._refill()
                if tokens >= 1.0 - 1e-9:  # float dust must not leave a token unusable
                    self._tokens = tokens - 1.0
                    return
                self._tokens = tokens
                await self._sleep((1.0 - tokens) / self._rate)
        finally:
            head = queue[0] is turn
            queue.remove(turn)
            if head and queue:
                queue[0].set()
