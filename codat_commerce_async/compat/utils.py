"""``utils.RetryConfig`` and ``utils.BackoffStrategy`` of the original SDK, and how they map
onto this SDK's retry settings.

The original retried every call (POSTs included, with no idempotency key) on connection
errors, 408, 429 and any 5xx, waiting ``initial_interval * exponent**n`` milliseconds plus up
to one second of jitter (at most ``max_interval``), and kept going until ``max_elapsed_time``
had passed since the first attempt. Here a call is retried with one ``Idempotency-Key`` on
every attempt, so a retry never starts a second sync. :func:`to_engine_settings` translates:

- ``strategy`` other than ``"backoff"``: no retries (``max_retries=0``).
- ``backoff.initial_interval`` (ms): ``RetryPolicy.backoff_base`` (s), the first wait's
  ceiling.
- ``backoff.max_interval`` (ms): ``RetryPolicy.backoff_cap`` (s), the largest ceiling.
- ``backoff.exponent``: not used; ceilings double, and waits are drawn from
  ``U(0, ceiling)`` ("full jitter").
- ``backoff.max_elapsed_time`` (ms): ``deadline`` (s), bounding the whole call. It is at
  least one attempt's time bound (the original only checked it after a failure) and at most
  80 minutes (Codat forgets an idempotency key after 90).
- No cap on attempts in the original: ``max_retries`` is as many waits of the original
  schedule as fit in ``max_elapsed_time`` (at most 100).
- ``retry_connection_errors``: not used; connection errors and timeouts are retried
  whenever retries are on, which the idempotency key makes safe.
- Status codes 408, 429 and 5XX: here 408, 429, 502, 503 and 504 (and a 409 on a retry);
  not 500, which Codat replays for the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DEFAULT_ATTEMPT_TIMEOUT, RetryPolicy

__all__ = [
    "DEFAULT_RETRY_CONFIG",
    "MAX_COMPAT_DEADLINE",
    "MAX_COMPAT_RETRIES",
    "BackoffStrategy",
    "EngineRetrySettings",
    "RetryConfig",
    "to_engine_settings",
]

#: The longest deadline a ``RetryConfig`` maps to (seconds): Codat replays an idempotency
#: key's response for 90 minutes, so retrying beyond that could start a second sync.
MAX_COMPAT_DEADLINE = 80 * 60.0
#: The most retries a ``RetryConfig`` maps to.
MAX_COMPAT_RETRIES = 100


@dataclass
class BackoffStrategy:
    """The original's backoff settings, all in milliseconds except ``exponent``."""

    initial_interval: int
    max_interval: int
    exponent: float
    max_elapsed_time: int


@dataclass
class RetryConfig:
    """The original's retry settings: ``RetryConfig("backoff", BackoffStrategy(...), True)``."""

    strategy: str
    backoff: BackoffStrategy | None = None
    retry_connection_errors: bool = False


#: What the original used when no ``retries`` were given (one hour of retries). Compat mode
#: does not use it: without a ``RetryConfig`` this SDK's own defaults apply.
DEFAULT_RETRY_CONFIG = RetryConfig("backoff", BackoffStrategy(500, 60000, 1.5, 3600000), True)


@dataclass(frozen=True)
class EngineRetrySettings:
    """The per-call settings a :class:`RetryConfig` becomes (see the module docstring).

    ``None`` means "keep the client's setting"."""

    max_retries: int
    deadline: float | None = None
    retry_policy: RetryPolicy | None = None


def _retries_within(backoff: BackoffStrategy, window: float) -> int:
    """How many waits of the original schedule fit in ``window`` seconds (at most 100)."""
    base = max(backoff.initial_interval, 0) / 1000.0
    cap = max(backoff.max_interval, 0) / 1000.0
    exponent = backoff.exponent if backoff.exponent >= 1 else 1.0
    total, count = 0.0, 0
    while window > 0 and count < MAX_COMPAT_RETRIES:
        ceiling = base * exponent ** min(count, 200)
        total += min(cap, ceiling) if cap > 0 else ceiling
        if total > window:
            break
        count += 1
    return count


def to_engine_settings(
    config: RetryConfig, *, attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT
) -> EngineRetrySettings:
    """Translate the original's ``RetryConfig`` into ``max_retries``, ``deadline`` and a
    :class:`~codat_commerce_async.RetryPolicy` (see the table in the module docstring).

    ``attempt_timeout`` is the client's bound on one attempt: the deadline is never shorter.
    """
    if config.strategy != "backoff" or config.backoff is None:
        return EngineRetrySettings(max_retries=0)
    backoff = config.backoff
    for name in ("initial_interval", "max_interval", "exponent", "max_elapsed_time"):
        value = getattr(backoff, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"BackoffStrategy.{name} must be a number >= 0")
    window = backoff.max_elapsed_time / 1000.0
    floor = attempt_timeout if attempt_timeout is not None else DEFAULT_ATTEMPT_TIMEOUT
    deadline = min(max(window, floor), MAX_COMPAT_DEADLINE)
    base = backoff.initial_interval / 1000.0
    cap = max(base, backoff.max_interval / 1000.0)
    return EngineRetrySettings(
        max_retries=_retries_within(backoff, window),
        deadline=deadline,
        retry_policy=RetryPolicy(backoff_base=base, backoff_cap=cap),
    )
