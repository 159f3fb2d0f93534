"""Retry policies in tenacity's words, evaluated by the SDK's plain loop.

:class:`CodatRetryCallState` is a ``tenacity.RetryCallState`` that the loop in
:func:`~._retry.run_with_retries` fills after each failed attempt and hands to the
user's strategies in tenacity's own order (outcome, retry, after, wait, stop, then
before_sleep and the sleep), without ``AsyncRetrying``: its controller rebuilds an
action list per attempt and cost ~80 µs a call, the loop pays nothing on success.

Safety is the loop's, not the policy's: a user's ``retry`` is asked only about errors
:func:`~._retry.is_retryable` allows, and :func:`~._retry.should_stop` (``max_retries``,
the ``Retry-After`` cap, the deadline) and the retry budget apply whatever ``stop`` says.
:func:`wait_codat` and :func:`stop_codat` are the SDK's defaults as tenacity strategies.
"""

from __future__ import annotations

import inspect
import math
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ._config import DEFAULT_MAX_RETRIES, RetryPolicy, Strategy
from ._exceptions import KEY_HIDDEN, APIError, RetryPolicyError
from ._retry import compute_wait, is_key_in_progress, should_stop

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["CodatRetryCallState", "stop_codat", "wait_codat"]

_DEFAULT_POLICY = RetryPolicy()
_RANDOM = random.Random()  # for the strategies used outside an SDK call


class _CallName:
    """Stands in for tenacity's wrapped function, so ``before_sleep_log`` and
    ``after_log`` name the call (``POST /companies/<id>/sync/commerce/latest``)."""

    def __init__(self, method: str, path: str) -> None:
        self.__qualname__ = f"{method} {path}"
        self.__module__ = ""  # tenacity prefixes a non-empty module to the name

    def __call__(self) -> None:  # never called: tenacity only reads the name
        raise TypeError("not callable")

    def __str__(self) -> str:
        return self.__qualname__


class CodatRetryCallState(tenacity.RetryCallState):
    """tenacity's view of one SDK call, timed on the call's clock.

    ``outcome`` holds the attempt's :class:`APIError`; ``attempt_number`` is the
    attempt that failed; ``seconds_since_start`` and ``idle_for`` are in the client's
    clock (virtual under ``ManualClock``)."""

    def __init__(self, call: Call[Any]) -> None:
        name = _CallName(call.op.method, call.op.path)
        super().__init__(retry_object=cast(Any, name), fn=cast(Any, name), args=(), kwargs={})
        self.start_time = call.started
        self.upcoming_sleep = 0.0  # tenacity >= 8.3 sets it too; older ones lack it
        self._codat_call = call

    async def decide(self, exc: APIError) -> float | None:
        """The wait before the next attempt, or None to give up (re-raise ``exc``).

        Called only for an error the SDK would retry, in tenacity's order."""
        call = self._codat_call
        policy = call.settings.retry_policy
        self.attempt_number = call.attempts
        outcome = tenacity.Future(call.attempts)
        outcome.set_exception(exc)
        self.outcome = outcome
        self.outcome_timestamp = call.core.clock.now()
        self.next_action = None
        if policy.retry is not None and not await self._ask(policy.retry, "retry"):
            return None
        if policy.after is not None:
            await self._ask(policy.after, "after", hide_key=True)
        wait = await self._ask(policy.wait or _WAIT_CODAT, "wait")
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
            raise self._error(f"the retry policy's wait returned {type(wait).__name__} {wait!r}")
        wait = float(wait)
        if math.isinf(wait):
            return None
        self.upcoming_sleep = wait
        if should_stop(
            exc,
            attempt=call.attempts,
            max_retries=call.settings.max_retries,
            wait=wait,
            remaining=call.remaining(),
            policy=policy,
            key_in_progress=key_in_progress(call, exc),
        ):
            return None
        budget = call.core.retry_budget
        if budget is not None and budget.available < budget.cost_of(exc):
            return wait  # the loop refuses it with RetryBudgetExhaustedError
        if policy.stop is not None and await self._ask(policy.stop, "stop"):
            return None
        return wait

    async def before_sleep(self, wait: float) -> None:
        """Record the retry about to happen and call the policy's ``before_sleep``."""
        self.next_action = tenacity.RetryAction(wait)
        self.idle_for += wait
        callback = self._codat_call.settings.retry_policy.before_sleep
        if callback is not None:
            await self._ask(callback, "before_sleep", hide_key=True)

    async def _ask(self, strategy: Strategy, role: str, *, hide_key: bool = False) -> Any:
        """Run one strategy (awaiting a coroutine's result); a failure is the call's."""
        token = KEY_HIDDEN.set(True) if hide_key else None
        try:
            result = strategy(self)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise self._error(
                f"the retry policy's {role} strategy raised {type(exc).__name__}"
            ) from exc
        finally:
            if token is not None:
                KEY_HIDDEN.reset(token)
        return result

    def _error(self, problem: str) -> RetryPolicyError:
        call = self._codat_call
        return RetryPolicyError(
            f"{problem}; the call was not retried (reuse the idempotency key to resend)",
            idempotency_key=call.key,
            attempts=call.attempts,
        )


def key_in_progress(call: Call[Any], exc: BaseException | None) -> bool:
    """Whether ``exc`` is a 409 for this call's key still in progress (waited out to the
    deadline, as without strategies)."""
    return is_key_in_progress(
        exc,
        attempt=call.attempts,
        idempotent=call.op.idempotent,
        key_from_caller=call.key_from_caller,
    )


def _call_of(retry_state: tenacity.RetryCallState) -> Call[Any] | None:
    if isinstance(retry_state, CodatRetryCallState):
        return retry_state._codat_call
    return None


def _upcoming_sleep(retry_state: tenacity.RetryCallState) -> float:
    # tenacity < 8.3 has no upcoming_sleep: the wait is then unknown to a stop.
    return float(getattr(retry_state, "upcoming_sleep", 0.0))


def _error_of(retry_state: tenacity.RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return None if outcome is None or not outcome.failed else outcome.exception()


class wait_codat(wait_base):  # tenacity names its strategies in lower case
    """The SDK's wait as a tenacity strategy: the ``Retry-After`` of a 429 (or 503) plus a
    little jitter, else full-jitter exponential backoff ``U(0, min(cap, base * 2**(n-1)))``.

    Arguments left as None take the call's :class:`RetryPolicy` values. Compose it:
    ``wait=wait_codat() + wait_random(0, 1)``. A ``Retry-After`` above the policy's
    ``max_retry_after`` is returned as is, and the SDK's stop refuses it.
    """

    def __init__(
        self,
        *,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        retry_after_jitter: float | None = None,
    ) -> None:
        given: dict[str, Any] = {
            name: value
            for name, value in (
                ("backoff_base", backoff_base),
                ("backoff_cap", backoff_cap),
                ("retry_after_jitter", retry_after_jitter),
            )
            if value is not None
        }
        replace(_DEFAULT_POLICY, **given)  # validates, with RetryPolicy's messages
        self._given = given

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        call = _call_of(retry_state)
        policy = _DEFAULT_POLICY if call is None else call.settings.retry_policy
        if self._given:
            policy = replace(policy, **self._given)
        return compute_wait(
            _error_of(retry_state),
            attempt=retry_state.attempt_number,
            policy=policy,
            rand=_RANDOM if call is None else call.core.jitter,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._given.items())
        return f"wait_codat({args})"


class stop_codat(stop_base):  # tenacity names its strategies in lower case
    """The SDK's stop as a tenacity strategy: after ``max_retries`` retries, before a
    wait that would pass the call's deadline, on a ``Retry-After`` above the policy's
    ``max_retry_after``, or when the client's retry budget cannot pay for the retry.

    The SDK applies it to every call whatever your ``stop`` says, so
    ``stop=stop_codat() | stop_after_delay(30)`` and ``stop=stop_after_delay(30)`` are
    the same policy; writing it says so. Outside an SDK call it stops after
    ``DEFAULT_MAX_RETRIES`` retries or on the ``Retry-After`` cap.
    """

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        call = _call_of(retry_state)
        exc = _error_of(retry_state)
        if call is None:
            return should_stop(
                exc,
                attempt=retry_state.attempt_number,
                max_retries=DEFAULT_MAX_RETRIES,
                wait=_upcoming_sleep(retry_state),
                remaining=None,
                policy=_DEFAULT_POLICY,
            )
        if should_stop(
            exc,
            attempt=retry_state.attempt_number,
            max_retries=call.settings.max_retries,
            wait=_upcoming_sleep(retry_state),
            remaining=call.remaining(),
            policy=call.settings.retry_policy,
            key_in_progress=key_in_progress(call, exc),
        ):
            return True
        budget = call.core.retry_budget
        return budget is not None and budget.available < budget.cost_of(exc)

    def __repr__(self) -> str:
        return "stop_codat()"


_WAIT_CODAT = wait_codat()
