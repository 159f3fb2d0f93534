"""Codat-style rate limiting: a request quota per window and a per-company concurrency cap."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ._wire import Headers, http_date

__all__ = ["RateLimiter", "RateLimits", "Rejection"]

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class RateLimits:
    """Rate-limit settings; every limit is off (None) by default.

    ``requests_per_minute`` caps all authenticated requests in a fixed 60 s window (Codat's
    per-IP limit is 1,000/min). ``concurrent_per_company`` caps in-flight requests per company
    (Codat documents 10). ``retry_after`` is the ``Retry-After`` sent with the 429; None means
    "seconds until the window resets" for the quota and 1 for the concurrency cap.
    ``nominal_limit`` is what ``X-Rate-Limit-Limit`` reports while the quota is off.

    Every response carries ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining`` and
    ``X-Rate-Limit-Reset``; Codat documents the last as a date, sent here as an HTTP-date.
    """

    requests_per_minute: int | None = None
    concurrent_per_company: int | None = None
    retry_after: float | str | None = None
    nominal_limit: int = 1000

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "concurrent_per_company"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")


@dataclass(frozen=True)
class Rejection:
    """Why a request was rate limited and what ``Retry-After`` to send."""

    reason: str
    retry_after: float | str


class RateLimiter:
    """Counts requests and in-flight work; thread-safe."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._limits = limits
        self._clock = clock
        self._window_start: float | None = None
        self._used = 0
        self._in_flight: dict[str, int] = {}

    @property
    def limits(self) -> RateLimits:
        """Current settings; assign to change them (counters are kept)."""
        return self._limits

    @limits.setter
    def limits(self, value: RateLimits) -> None:
        with self._lock:
            self._limits = value

    def acquire(self, company_id: str | None) -> Rejection | None:
        """Count one request; None if it may proceed (then call :meth:`release`)."""
        with self._lock:
            now = self._clock()
            window_start = self._roll(now)
            limits = self._limits
            quota = limits.requests_per_minute
            if quota is not None and self._used >= quota:
                wait = max(1, math.ceil(window_start + WINDOW_SECONDS - now))
                return Rejection(
                    "You have made too many requests in a given amount of time; "
                    "please retry later.",
                    limits.retry_after if limits.retry_after is not None else wait,
                )
            self._used += 1
            if company_id is None:
                return None
            cap = limits.concurrent_per_company
            running = self._in_flight.get(company_id, 0)
            if cap is not None and running >= cap:
                return Rejection(
                    f"Too many concurrent requests for company {company_id}; please retry later.",
                    limits.retry_after if limits.retry_after is not None else 1,
                )
            self._in_flight[company_id] = running + 1
            return None

    def release(self, company_id: str | None) -> None:
        """Mark one request for ``company_id`` as finished."""
        if company_id is None:
            return
        with self._lock:
            left = self._in_flight.get(company_id, 0) - 1
            if left > 0:
                self._in_flight[company_id] = left
            else:
                self._in_flight.pop(company_id, None)

    def in_flight(self, company_id: str | None = None) -> int:
        """Requests being processed, for one company or in total."""
        with self._lock:
            if company_id is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(company_id, 0)

    def headers(self, to_wall: Callable[[float], datetime]) -> Headers:
        """The ``X-Rate-Limit-*`` headers describing the current window."""
        with self._lock:
            now = self._clock()
            window_start = self._roll(now)
            limit = self._limits.requests_per_minute or self._limits.nominal_limit
            remaining = max(0, limit - self._used)
        return (
            ("x-rate-limit-limit", str(limit)),
            ("x-rate-limit-remaining", str(remaining)),
            ("x-rate-limit-reset", http_date(to_wall(window_start + WINDOW_SECONDS))),
        )

    def reset(self) -> None:
        """Forget all counters (in-flight requests still release safely)."""
        with self._lock:
            self._window_start = None
            self._used = 0
            self._in_flight.clear()

    def _roll(self, now: float) -> float:
        if self._window_start is None or now >= self._window_start + WINDOW_SECONDS:
            self._window_start = now
            self._used = 0
        return self._window_start
