"""Polling a sync until it finishes: the interval schedule and the wait loop.

Codat has no "sync finished" webhook for commerce syncs, so completion is polled.
Each poll is an ordinary call (retries, deadline, the client's rate limit and 429
gate); between polls the wait grows by ``POLL_BACKOFF`` up to a cap, with "equal
jitter" (half fixed, half random) so thousands of waits started together drift
apart instead of polling in lockstep.

Which id to poll: the spec does not say whether ``SyncSummary.commerceSyncId`` is
valid as ``{syncId}`` in ``GET .../syncs/{syncId}/status``. We poll by that id and,
on a 404, fall back to ``.../syncs/latest/status`` for the rest of that wait.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable

from ._exceptions import NotFoundError, SyncWaitTimeoutError
from ._logging import logger
from ._models import CompanySyncStatus

__all__ = [
    "DEFAULT_MAX_POLL_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_WAIT_TIMEOUT",
    "POLL_BACKOFF",
    "jittered",
    "validate_bulk_poll_settings",
    "validate_poll_settings",
    "wait_until_terminal",
]

#: The first interval between polls, in seconds (before jitter).
DEFAULT_POLL_INTERVAL = 5.0
#: The longest interval between polls, in seconds (before jitter).
DEFAULT_MAX_POLL_INTERVAL = 60.0
#: How much the interval grows after each poll.
POLL_BACKOFF = 1.5
#: How long a wait lasts before :class:`SyncWaitTimeoutError` (one hour).
DEFAULT_WAIT_TIMEOUT = 3600.0


def jittered(interval: float, rand: random.Random) -> float:
    """Equal jitter: ``U(interval / 2, interval)``."""
    half = interval / 2.0
    return half + rand.uniform(0.0, half)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def validate_poll_settings(
    poll_interval: float, max_poll_interval: float, timeout: float | None
) -> tuple[float, float, float | None]:
    """The poll settings as floats, or ``ValueError`` (before any I/O)."""
    first = _positive("poll_interval", poll_interval)
    cap = _positive("max_poll_interval", max_poll_interval)
    if cap < first:
        raise ValueError("max_poll_interval must not be below poll_interval")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
        timeout = float(timeout)
    return first, cap, timeout


def validate_bulk_poll_settings(
    poll_interval: float, max_poll_interval: float | None, timeout: float | None
) -> tuple[float, float | None, float | None]:
    """A bulk run's poll settings (``max_poll_interval`` may be None: no cap)."""
    if max_poll_interval is None:
        first, _, limit = validate_poll_settings(poll_interval, poll_interval, timeout)
        return first, None, limit
    return validate_poll_settings(poll_interval, max_poll_interval, timeout)


async def wait_until_terminal(
    *,
    company_id: str,
    sync_id: str | None,
    by_id: Callable[[str], Awaitable[CompanySyncStatus]],
    latest: Callable[[], Awaitable[CompanySyncStatus]],
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | None,
    sleep_first: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    rand: random.Random,
) -> CompanySyncStatus:
    """Poll until the status is terminal; return it or raise :class:`SyncWaitTimeoutError`.

    ``sleep_first`` skips the immediate poll (the caller knows the sync just started).
    """
    started = clock()
    deadline = None if timeout is None else started + timeout
    interval = poll_interval
    use_latest = sync_id is None
    last: CompanySyncStatus | None = None

    async def pause() -> bool:
        """Sleep before the next poll; False when the deadline has already passed."""
        nonlocal interval
        now = clock()
        if deadline is not None and now >= deadline:
            return False
        wait = jittered(interval, rand)
        interval = min(interval * POLL_BACKOFF, max_poll_interval)
        await sleep(wait if deadline is None else min(wait, deadline - now))
        return True

    if sleep_first:
        await pause()
    while True:
        if not use_latest:
            assert sync_id is not None
            try:
                last = await by_id(sync_id)
            except NotFoundError:
                use_latest = True
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "sync %s of company %s is unknown to the by-id status endpoint; "
                        "polling the company's latest sync instead",
                        sync_id,
                        company_id,
                    )
        if use_latest:
            last = await latest()
        assert last is not None
        if last.is_terminal:
            return last
        if not await pause():
            raise SyncWaitTimeoutError(
                company_id=company_id,
                sync_id=sync_id,
                last_status=last,
                timeout=clock() - started if timeout is None else timeout,
            )
