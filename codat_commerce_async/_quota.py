"""Codat's daily quota, learnt from the ``X-Rate-Limit-*`` headers (sans-I/O).

Codat allows 1,000 x (1 + active connected companies) requests a day per client, reset
at 00:00 UTC, and every response carries ``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining``
and ``X-Rate-Limit-Reset`` (a date). A bulk run that ignores them spends the quota and
then meets 429s until midnight, taking the interactive traffic of the same account down
with it. The policy, one pure function (:func:`decide`):

- no headers seen yet, or the reset time has passed: go;
- more than ``reserve`` requests left: go;
- otherwise, if the quota resets within ``grace`` seconds (60): go, and let Codat's
  429s and their ``Retry-After`` hold the last minute (the client's 429 gate does);
- otherwise: stop starting triggers (the run reports :class:`DailyQuotaExhaustedError`).

Clocks: the reset is read against the response's own ``Date`` header (Codat's clock),
so a machine whose clock is off still counts the right number of seconds; ``reset_at``
is then expressed on the local clock (on the Redis server's clock for shared limits).

Responses to concurrent requests arrive out of order, so snapshots are merged: a reset
more than :data:`SAME_PERIOD` later starts a new period; within one period the smaller
``remaining`` wins. The Redis limits apply the same merge in a Lua script and the same
:func:`decide`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from ._exceptions import ConfigurationError
from ._response import ascii_int

__all__ = [
    "DEFAULT_QUOTA_GRACE",
    "DEFAULT_QUOTA_RESERVE",
    "SAME_PERIOD",
    "DailyQuota",
    "QuotaDecision",
    "QuotaSnapshot",
    "decide",
    "merge",
    "parse_reset",
    "snapshot_from_headers",
    "validate_reserve",
]

#: Requests a bulk run leaves for interactive calls (the ``quota_reserve`` knob).
DEFAULT_QUOTA_RESERVE = 100
#: A quota that resets within this many seconds does not stop a run: the last minute is
#: left to Codat's 429s and ``Retry-After`` (which the client's gate honours).
DEFAULT_QUOTA_GRACE = 60.0

#: Resets closer than this belong to the same quota period (they differ by clock jitter).
SAME_PERIOD = 60.0

_UTC = _dt.timezone.utc
# Epoch seconds after 2001-09-09: a number this large is a timestamp, not a delay.
_EPOCH_THRESHOLD = 1_000_000_000


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    """What one response said about the daily quota."""

    remaining: int
    limit: int | None
    reset_at: _dt.datetime | None
    """When Codat says the quota resets (UTC, Codat's clock); None if not said."""
    due: _dt.datetime | None = None
    """The same moment on the clock that decides (this machine's, or the Redis
    server's): what :func:`decide` compares with "now". None: ``reset_at``."""

    @property
    def resets(self) -> _dt.datetime | None:
        """:attr:`due` if known, else :attr:`reset_at`."""
        return self.due if self.due is not None else self.reset_at


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """``action`` is ``"go"`` or ``"stop"`` (then ``snapshot`` says why)."""

    action: Literal["go", "stop"]
    snapshot: QuotaSnapshot | None = None


_GO = QuotaDecision("go")


def validate_reserve(value: int) -> int:
    """``quota_reserve``: an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError("quota_reserve must be an integer >= 0 (requests kept back)")
    return value


def parse_reset(value: str | None, now: _dt.datetime) -> _dt.datetime | None:
    """``X-Rate-Limit-Reset`` as a UTC datetime.

    Codat documents it as "the date when the quota will be reset"; accepted: an
    HTTP-date, ISO-8601, epoch seconds, or (a small number) seconds from ``now``.
    """
    if value is None:
        return None
    parsed = _parse_reset_text(value)
    if isinstance(parsed, float):
        try:
            return now + _dt.timedelta(seconds=parsed)
        except OverflowError:
            return None
    return parsed


@functools.lru_cache(maxsize=16)
def _parse_reset_text(value: str) -> _dt.datetime | float | None:
    """An absolute reset, or seconds from now (a float); cached: every response of a
    day carries the same reset, so the hot path parses it once."""
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        if number < _EPOCH_THRESHOLD:
            return number
        try:
            return _dt.datetime.fromtimestamp(number, _UTC)
        except (OverflowError, OSError, ValueError):
            return None
    when: _dt.datetime | None = None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    return when.astimezone(_UTC)


def snapshot_from_headers(headers: Mapping[str, str], now: _dt.datetime) -> QuotaSnapshot | None:
    """The quota a response reports, or None when it carries no usable ``Remaining``.

    ``now`` is the local time the response arrived; the reset is moved onto the local
    clock by the response's ``Date``. ``headers`` must look names up case-insensitively
    (``httpx.Headers`` does).
    """
    remaining = ascii_int(headers.get("x-rate-limit-remaining"))
    if remaining is None:
        return None
    limit = ascii_int(headers.get("x-rate-limit-limit"))
    server_now = _server_date(headers.get("date")) or now
    reset = parse_reset(headers.get("x-rate-limit-reset"), server_now)
    due = None if reset is None else now + (reset - server_now)
    return QuotaSnapshot(remaining, limit, reset, due)


@functools.lru_cache(maxsize=16)
def _server_date(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.astimezone(_UTC) if when.tzinfo else when.replace(tzinfo=_UTC)


def merge(current: QuotaSnapshot | None, new: QuotaSnapshot) -> QuotaSnapshot:
    """Combine snapshots from responses that may arrive out of order (the Redis script
    applies the same rule): a later reset starts a new period, an earlier one is a late
    answer from the previous period, and within a period the smaller ``remaining`` wins."""
    if current is None:
        return new
    new_period, current_period = _period(new), _period(current)
    if abs(new_period - current_period) > SAME_PERIOD:
        return new if new_period > current_period else current
    return new if new.remaining < current.remaining else current


def _period(snapshot: QuotaSnapshot) -> float:
    resets = snapshot.resets
    return resets.timestamp() if resets is not None else -1e12


def decide(
    snapshot: QuotaSnapshot | None,
    now: _dt.datetime,
    *,
    reserve: int,
    grace: float = DEFAULT_QUOTA_GRACE,
) -> QuotaDecision:
    """May a bulk run start another trigger now? (See the module docstring.)"""
    if snapshot is None or snapshot.remaining > reserve:
        return _GO
    if snapshot.resets is None:
        return QuotaDecision("stop", snapshot=snapshot)
    until = (snapshot.resets - now).total_seconds()
    if until <= grace:  # passed already, or within the last minute
        return _GO
    return QuotaDecision("stop", snapshot=snapshot)


class DailyQuota:
    """The in-process record of the daily quota: one per client."""

    def __init__(self, reserve: int = DEFAULT_QUOTA_RESERVE) -> None:
        self.reserve = validate_reserve(reserve)
        self.snapshot: QuotaSnapshot | None = None

    def observe(self, headers: Mapping[str, str], now: _dt.datetime | None = None) -> None:
        """Learn from one response's headers."""
        remaining = ascii_int(headers.get("x-rate-limit-remaining"))
        if remaining is None:
            return
        current = self.snapshot
        if remaining > self.reserve and (current is None or current.remaining > self.reserve):
            return  # the hot path: plenty left, and nothing low on record to correct
        seen = snapshot_from_headers(headers, now or _dt.datetime.now(_UTC))
        if seen is not None:
            self.snapshot = merge(self.snapshot, seen)

    def decide(self, now: _dt.datetime | None = None) -> QuotaDecision:
        """:func:`decide` on what has been seen so far."""
        return decide(self.snapshot, now or _dt.datetime.now(_UTC), reserve=self.reserve)
