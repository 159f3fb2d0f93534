"""Codat-style rate limiting: a per-IP limit, a daily quota, a request quota per window and a
per-company concurrency cap."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

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

    ``requests_per_ip`` caps the requests of one client address in any ``ip_window``
    seconds (a sliding window: Codat's hard limit is 1,000 a minute per IP; scale both
    down for tests). ``daily_quota`` is Codat's quota per client: 1,000 x (1 + active
    connected companies) requests a day, reset at 00:00 UTC of the fake's wall time.
    Rejected requests count against none of the limits.

    Every response carries ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining`` and
    ``X-Rate-Limit-Reset``; Codat documents the last as a date, sent here as an HTTP-date.
    With ``daily_quota`` set they describe the daily quota, as Codat's contract says
    (reset: the next 00:00 UTC); without it, the ``requests_per_minute`` window (or
    ``nominal_limit`` per minute).
    """

    requests_per_minute: int | None = None
    concurrent_per_company: int | None = None
    retry_after: float | str | None = None
    nominal_limit: int = 1000
    requests_per_ip: int | None = None
    ip_window: float = WINDOW_SECONDS
    daily_quota: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "concurrent_per_company", "requests_per_ip"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError("daily_quota must be >= 0 or None")
        if not self.ip_window > 0:
            raise ValueError("ip_window must be a positive number of seconds")


@dataclass(frozen=True)
class Rejection:
    """Why a request was rate limited and what ``Retry-After`` to send."""

    reason: str
    retry_after: float | str


class RateLimiter:
    """Counts requests and in-flight work; thread-safe."""

    def __init__(
        self,
        limits: RateLimits,
        clock: Callable[[], float],
        to_wall: Callable[[float], datetime] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._limits = limits
        self._clock = clock
        self._to_wall = to_wall or (lambda reading: datetime.now(timezone.utc))
        self._window_start: float | None = None
        self._used = 0
        self._in_flight: dict[str, int] = {}
        self._per_ip: dict[str, deque[float]] = {}
        self._day_reset: datetime | None = None
        self._day_used = 0

    @property
    def limits(self) -> RateLimits:
        """Current settings; assign to change them (counters are kept)."""
        return self._limits

    @limits.setter
    def limits(self, value: RateLimits) -> None:
        with self._lock:
            self._limits = value

    def acquire(self, company_id: str | None, client_ip: str | None = None) -> Rejection | None:
        """Count one request; None if it may proceed (then call :meth:`release`)."""
        with self._lock:
            now = self._clock()
            window_start = self._roll(now)
            limits = self._limits
            if (rejected := self._check_ip(client_ip, now)) is not None:
                return rejected
            if (rejected := self._check_day(now)) is not None:
                return rejected
            quota = limits.requests_per_minute
            if quota is not None and self._used >= quota:
                wait = max(1, math.ceil(window_start + WINDOW_SECONDS - now))
                return Rejection(
                    "You have made too many requests in a given amount of time; "
                    "please retry later.",
                    limits.retry_after if limits.retry_after is not None else wait,
                )
            self._used += 1
            self._day_used += 1
            if client_ip is not None and limits.requests_per_ip is not None:
                self._per_ip.setdefault(client_ip, deque()).append(now)
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
        """The ``X-Rate-Limit-*`` headers: the daily quota if set, else the current window."""
        with self._lock:
            now = self._clock()
            quota = self._limits.daily_quota
            if quota is not None:
                reset = self._roll_day(now)
                return (
                    ("x-rate-limit-limit", str(quota)),
                    ("x-rate-limit-remaining", str(max(0, quota - self._day_used))),
                    ("x-rate-limit-reset", http_date(reset)),
                )
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
            self._per_ip.clear()
            self._day_reset = None
            self._day_used = 0

    def _check_ip(self, client_ip: str | None, now: float) -> Rejection | None:
        cap = self._limits.requests_per_ip
        if cap is None or client_ip is None:
            return None
        window = self._limits.ip_window
        seen = self._per_ip.get(client_ip)
        if seen is None:
            return None
        while seen and seen[0] <= now - window:
            seen.popleft()
        if len(seen) < cap:
            return None
        wait = seen[0] + window - now
        return Rejection(
            f"Too many requests from IP address {client_ip}; please retry later.",
            self._limits.retry_after if self._limits.retry_after is not None else wait,
        )

    def _check_day(self, now: float) -> Rejection | None:
        quota = self._limits.daily_quota
        if quota is None:
            return None
        reset = self._roll_day(now)
        if self._day_used < quota:
            return None
        wait = max(1, math.ceil((reset - self._to_wall(now)).total_seconds()))
        return Rejection(
            "You have exceeded your daily quota of requests; it resets at 00:00 UTC.",
            self._limits.retry_after if self._limits.retry_after is not None else wait,
        )

    def _roll_day(self, now: float) -> datetime:
        """The next 00:00 UTC of the fake's wall time (the daily count restarts there)."""
        wall = self._to_wall(now).astimezone(timezone.utc)
        if self._day_reset is None or wall >= self._day_reset:
            midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_reset = midnight + timedelta(days=1)
            self._day_used = 0
        return self._day_reset

    def _roll(self, now: float) -> float:
        if self._window_start is None or now >= self._window_start + WINDOW_SECONDS:
            self._window_start = now
            self._used = 0
        return self._window_start
