"""When to retry and how long to wait: pure decisions, wired together by tenacity.

The three decisions are plain functions of their inputs (the outcome, the attempt
number, the clock's remaining budget and a random source), so they are tested
table by table without HTTP or sleeping:

- :func:`is_retryable` classifies an outcome;
- :func:`compute_wait` picks the wait (``Retry-After`` or full-jitter backoff);
- :func:`should_stop` gives up when attempts, the ``Retry-After`` cap or the
  call's deadline say so.

Why POSTs are retried at all: every attempt of one call carries the same
``Idempotency-Key``, and Codat answers a repeated key with the first response
(or 409 while the first is still running), so a retry cannot start a second sync.
Why a 500 is not: Codat caches and replays it for that key, so a retry cannot help.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState

from ._config import RetryPolicy
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    RateLimitError,
    parse_retry_after,
)

__all__ = [
    "RetryAccount",
    "RetryBudget",
    "build_retrying",
    "compute_wait",
    "is_retryable",
    "retry_after_of",
    "should_stop",
]

#: Statuses worth another attempt with the same key.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


def is_retryable(exc: BaseException | None, *, attempt: int, idempotent: bool) -> bool:
    """Whether a failed attempt should be tried again (if attempts and time allow).

    ``attempt`` is the number of the attempt that failed (1 for the first);
    ``idempotent`` is True for GETs, which may also retry a 500.
    Cancellation and anything that is not an :class:`APIError` is never retried.
    """
    if not isinstance(exc, APIError):
        return False
    if isinstance(exc, APIStatusError):
        if exc.can_be_retried is False:
            return False
        status = exc.status_code
        if status in RETRYABLE_STATUSES:
            return True
        if status == 409:
            # On a retry, 409 means our own first attempt is still running at Codat.
            return attempt > 1 and not idempotent
        if status == 500:
            return idempotent
        return False
    if isinstance(exc, APITLSError):
        return False
    if isinstance(exc, APITimeoutError) and exc.phase == "deadline":
        return False
    if isinstance(exc, APIConnectionError):
        return exc._retryable
    return False


def backoff_ceiling(attempt: int, policy: RetryPolicy) -> float:
    """The upper bound of the wait after failed attempt ``attempt`` (exponential, capped)."""
    exponent = min(attempt - 1, 32)  # beyond this the cap has long been reached
    return min(policy.backoff_cap, policy.backoff_base * (2.0**exponent))


def compute_wait(
    exc: BaseException | None, *, attempt: int, policy: RetryPolicy, rand: random.Random
) -> float:
    """Seconds to wait before the next attempt.

    With a ``Retry-After`` (429, or 503 if present) the wait is that value plus a
    small jitter; a value above the cap is returned as is, so :func:`should_stop`
    can refuse it. Otherwise: full jitter, ``U(0, min(cap, base * 2**(attempt-1)))``.
    """
    retry_after = retry_after_of(exc)
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return retry_after
        jitter = min(1.0, retry_after * policy.retry_after_jitter)
        return retry_after + (rand.uniform(0.0, jitter) if jitter > 0 else 0.0)
    return rand.uniform(0.0, backoff_ceiling(attempt, policy))


def should_stop(
    exc: BaseException | None,
    *,
    attempt: int,
    max_retries: int,
    wait: float,
    remaining: float | None,
    policy: RetryPolicy,
) -> bool:
    """Whether to give up instead of waiting ``wait`` seconds and trying again.

    ``remaining`` is what is left of the call's deadline (None: no deadline).
    """
    if attempt > max_retries:
        return True
    retry_after = retry_after_of(exc)
    if retry_after is not None and retry_after > policy.max_retry_after:
        return True
    return remaining is not None and wait >= remaining


def retry_after_of(exc: BaseException | None) -> float | None:
    """The ``Retry-After`` an error asks for: a 429's, or a 503's (None otherwise)."""
    if isinstance(exc, RateLimitError):
        return exc.retry_after
    if isinstance(exc, APIStatusError) and exc.status_code == 503:
        return parse_retry_after(exc.response.headers.get("retry-after"))
    return None


def build_retrying(
    *,
    max_retries: int,
    policy: RetryPolicy,
    idempotent: bool,
    remaining: Callable[[], float | None],
    rand: random.Random,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[RetryCallState], Any] | None = None,
    budget: RetryBudget | None = None,
    account: RetryAccount | None = None,
) -> AsyncRetrying:
    """A tenacity controller that applies the three decisions above.

    ``remaining`` reports what is left of the call's deadline; ``budget`` (shared by
    the client) pays for each retry, and ``account`` records what this call took.
    Errors are re-raised
    as they are (``reraise=True``), never wrapped in ``tenacity.RetryError``.
    """

    def retry(state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        return is_retryable(
            outcome.exception(), attempt=state.attempt_number, idempotent=idempotent
        )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return compute_wait(exc, attempt=state.attempt_number, policy=policy, rand=rand)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if should_stop(
            exc,
            attempt=state.attempt_number,
            max_retries=max_retries,
            wait=state.upcoming_sleep,
            remaining=remaining(),
            policy=policy,
        ):
            return True
        if budget is None:
            return False
        cost = budget.cost_of(exc)
        if budget.try_acquire(cost):
            if account is not None:
                account.paid += cost
            return False
        if account is not None:
            account.refused = True
        return True

    return AsyncRetrying(
        retry=retry,
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


class RetryBudget:
    """A client-wide token bucket that limits retries, so an outage does not turn
    into a retry storm across thousands of calls (in the style of botocore's quota).

    Each retry takes ``retry_cost`` tokens (``timeout_cost`` after a timeout or a
    broken connection, which cost Codat the most); each successful call gives back
    what its retries took, or ``success_refund`` if it needed none. When a retry
    cannot be paid for, the call fails at once with
    :class:`~codat_commerce_async.RetryBudgetExhaustedError`.
    """

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_cost: int = 10,
        success_refund: int = 1,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("retry_cost", retry_cost),
            ("timeout_cost", timeout_cost),
            ("success_refund", success_refund),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                from ._exceptions import ConfigurationError

                raise ConfigurationError(f"RetryBudget {name} must be an integer >= 0")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.success_refund = success_refund
        self._tokens = capacity

    @property
    def available(self) -> int:
        """Tokens left."""
        return self._tokens

    def cost_of(self, exc: BaseException | None) -> int:
        """What a retry after ``exc`` costs."""
        if isinstance(exc, APIConnectionError):
            return self.timeout_cost
        return self.retry_cost

    def try_acquire(self, cost: int) -> bool:
        """Take ``cost`` tokens if there are enough."""
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True

    def release(self, paid: int) -> None:
        """A call succeeded after retries that took ``paid`` tokens (0 if none)."""
        self._tokens = min(self.capacity, self._tokens + (paid or self.success_refund))

    def __repr__(self) -> str:
        return f"RetryBudget(available={self._tokens}, capacity={self.capacity})"


class RetryAccount:
    """What one call's retries took from the budget, and whether it was refused."""

    __slots__ = ("paid", "refused")

    def __init__(self) -> None:
        self.paid = 0
        self.refused = False
