"""When to retry, how long to wait, and the retry loop that applies the decisions.

The three decisions are plain functions of their inputs (the outcome, the attempt
number, the clock's remaining budget and a random source), so they are tested
table by table without HTTP or sleeping:

- :func:`is_retryable` classifies an outcome (:func:`is_key_in_progress` the 409 that
  means "this key's first request is still running");
- :func:`compute_wait` picks the wait (``Retry-After`` or full-jitter backoff);
- :func:`should_stop` gives up when attempts, the ``Retry-After`` cap or the
  call's deadline say so (a key still in progress is waited out until the deadline).

Why POSTs are retried at all: every attempt of one call carries the same
``Idempotency-Key``, and Codat answers a repeated key with the first response
(or 409 while the first is still running), so a retry cannot start a second sync.
Why a 500 is not: Codat caches and replays it for that key, so a retry cannot help.

:func:`run_with_retries` is the whole loop (a plain loop: see docs/architecture.md
for why not tenacity's controller); a policy given as tenacity strategies is evaluated by
it too (see ``_strategies``), after these safety decisions.
:func:`may_resend_with_new_key` answers the question a caller asks after the SDK gave
up: may I send this again with a *new* key?
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, TypeVar

from ._config import RetryPolicy
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    ConfigurationError,
    RateLimitError,
    RetryBudgetExhaustedError,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ._call import Call
    from ._response import APIResponse
    from ._strategies import CodatRetryCallState

__all__ = [
    "RetryBudget",
    "compute_wait",
    "is_key_in_progress",
    "is_retryable",
    "may_resend_with_new_key",
    "retry_after_of",
    "run_with_retries",
    "should_stop",
]

T = TypeVar("T")

#: Statuses worth another attempt with the same key.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Refusals after which only the *same* key is safe: the first request may still be
#: running (409), or may have reached Codat before the refusal (408, 429).
RESEND_WITH_SAME_KEY = frozenset({408, 409, 429})


def is_retryable(
    exc: BaseException | None, *, attempt: int, idempotent: bool, key_from_caller: bool = False
) -> bool:
    """Whether a failed attempt should be tried again (if attempts and time allow).

    ``attempt`` is the number of the attempt that failed (1 for the first);
    ``idempotent`` is True for GETs, which may also retry a 500; ``key_from_caller``
    is True when the caller chose the idempotency key (see :func:`is_key_in_progress`).
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
            return is_key_in_progress(
                exc, attempt=attempt, idempotent=idempotent, key_from_caller=key_from_caller
            )
        if status == 500:
            return idempotent
        return False
    if isinstance(exc, APITLSError):
        return False
    if isinstance(exc, APITimeoutError) and exc.phase == "deadline":
        return False
    if isinstance(exc, APIConnectionError):
        return exc.not_retried_because is None
    return False


def is_key_in_progress(
    exc: BaseException | None, *, attempt: int, idempotent: bool, key_from_caller: bool = False
) -> bool:
    """Whether ``exc`` is Codat's 409 for an idempotency key whose first request is still
    running, which a later attempt with the same key will get the answer of.

    On a retry of a POST it is our own first attempt. On the first attempt it can be
    only when the caller chose the key (``key_from_caller``): an earlier call with it, in
    another process, may still run. A fresh key's 409 is a real conflict.
    """
    return (
        isinstance(exc, APIStatusError)
        and exc.status_code == 409
        and exc.can_be_retried is not False
        and not idempotent
        and (attempt > 1 or key_from_caller)
    )


def may_resend_with_new_key(exc: BaseException) -> bool:
    """Whether a failed trigger certainly started nothing at Codat, so sending it
    again with a *new* idempotency key cannot start a second sync.

    True for a 4xx refusal other than 408/409/429, for a connection failure whose
    only attempt never reached Codat (``request_sent`` False), and for errors raised
    before any I/O (``ValueError`` for bad input). Otherwise resend with the same key.
    """
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        return 400 <= status < 500 and status not in RESEND_WITH_SAME_KEY
    if isinstance(exc, APIConnectionError):
        return not exc.request_sent and exc.attempts <= 1
    return not isinstance(exc, APIError)


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
    key_in_progress: bool = False,
) -> bool:
    """Whether to give up instead of waiting ``wait`` seconds and trying again.

    ``remaining`` is what is left of the call's deadline (None: no deadline).
    ``key_in_progress`` (:func:`is_key_in_progress`): the answer is on its way, so only
    the deadline ends the wait (``max_retries`` does, when there is no deadline).
    """
    if attempt > max_retries and not (key_in_progress and remaining is not None):
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


async def run_with_retries(call: Call[T]) -> APIResponse[T]:
    """Attempt ``call`` until it succeeds or the decisions above say stop.

    Every attempt, the first included, goes through the same three decisions; the
    first attempt pays for nothing else (most calls succeed first time). Each retry
    is paid for from the client's :class:`RetryBudget`, and refunded on success.
    """
    settings = call.settings
    policy = settings.retry_policy
    budget = call.core.retry_budget
    paid = 0
    state: CodatRetryCallState | None = None  # tenacity's view, built at the first retry
    while True:
        try:
            result = await call.attempt()
        except APIError as exc:
            attempt = call.attempts
            idempotent, caller_key = call.op.idempotent, call.key_from_caller
            if settings.max_retries == 0 or not is_retryable(
                exc, attempt=attempt, idempotent=idempotent, key_from_caller=caller_key
            ):
                raise
            if policy.has_strategies:
                if state is None:
                    from ._strategies import CodatRetryCallState

                    state = CodatRetryCallState(call)
                decided = await state.decide(exc)
                if decided is None:
                    raise
                wait = decided
            else:
                wait = compute_wait(exc, attempt=attempt, policy=policy, rand=call.core.jitter)
                if should_stop(
                    exc,
                    attempt=attempt,
                    max_retries=settings.max_retries,
                    wait=wait,
                    remaining=call.remaining(),
                    policy=policy,
                    key_in_progress=is_key_in_progress(
                        exc, attempt=attempt, idempotent=idempotent, key_from_caller=caller_key
                    ),
                ):
                    raise
            await call.before_retry(exc)
            if budget is not None:
                cost = budget.cost_of(exc)
                if not budget.try_acquire(cost):
                    raise RetryBudgetExhaustedError(
                        "the client's retry budget is empty, so this call was not retried "
                        f"(last error: {type(exc).__name__}: {exc.message})",
                        request=exc.request,
                        idempotency_key=exc.idempotency_key,
                        attempts=exc.attempts,
                    ) from exc
                paid += cost
            if state is not None:
                await state.before_sleep(wait)
            call.retry_scheduled(exc, wait)
            await call.core.clock.sleep(wait)
            continue
        if budget is not None:
            budget.release(paid)
        return result


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
