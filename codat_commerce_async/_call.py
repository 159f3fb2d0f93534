"""One logical call: an operation, its request and key, its settings and its clock.

A :class:`Call` is built once per public method call and carried through every
attempt; the retry loop (:func:`~._retry.run_with_retries`) asks it for one
:meth:`Call.attempt` at a time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import anyio.lowlevel

from . import _protocol
from ._config import CallSettings
from ._events import CallEvent, EventKind
from ._exceptions import APIError, APITimeoutError, ClientClosedError
from ._limits import Priority
from ._logging import logger
from ._response import APIResponse
from ._retry import retry_after_of, run_with_retries
from ._send import send_attempt

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["Call", "pending_cancels"]

T = TypeVar("T")


def pending_cancels(loop: object) -> int:
    """The current task's cancel requests not taken back yet (``Task.cancelling()``), when
    ``loop`` (the client's, see ``Core.loop``) is asyncio's; else 0: trio's cancellation
    is level-triggered, it cannot be lost."""
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return 0
    cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Python >= 3.11
    return 0 if cancelling is None else int(cancelling())


class Call(Generic[T]):
    """The state of one logical call, shared by its attempts."""

    __slots__ = (
        "attempts",
        "core",
        "key",
        "key_from_caller",
        "op",
        "priority",
        "request",
        "settings",
        "started",
    )

    def __init__(
        self,
        core: Core,
        op: _protocol.Operation[T],
        settings: CallSettings,
        idempotency_key: str | None = None,
        priority: Priority = Priority.FOREGROUND,
    ) -> None:
        self.core = core
        #: Who gets the request rate's next token first (see :class:`Priority`).
        self.priority = priority
        self.op = op
        self.settings = settings
        #: Sent with every attempt of a POST, so a retry can never start a second sync.
        self.key = None if op.idempotent else (idempotency_key or _protocol.new_idempotency_key())
        #: The caller chose the key, so an earlier call may hold it (see _same_key, _retry).
        self.key_from_caller = self.key is not None and idempotency_key is not None
        self.request = core.requests.build(
            op.method, op.path, op.body, self.key, settings.timeout, settings.extra_headers
        )
        self.started = core.clock.now()
        #: Attempts sent (or being sent) so far.
        self.attempts = 0

    # -- time ------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        deadline = self.settings.deadline
        return None if deadline is None else deadline - (self.core.clock.now() - self.started)

    def granted_slack(self) -> None:
        """A background call got its first token: its deadline counts from now."""
        if self.attempts == 0:
            self.started = self.core.clock.now()

    def time_limit(self) -> tuple[float | None, str]:
        """The bound of the attempt about to be sent and its name (``"attempt"`` or
        ``"deadline"``); raises :meth:`deadline_error` if the deadline has passed."""
        left = self.remaining()
        limit, phase = self.settings.attempt_timeout, "attempt"
        if left is not None and (limit is None or left < limit):
            limit, phase = left, "deadline"
            if left <= 0:
                raise self.deadline_error()
        return limit, phase

    def deadline_error(self, message: str | None = None) -> APITimeoutError:
        """The error for a deadline that passed (or would pass) before the next attempt
        was sent."""
        return APITimeoutError(
            message or f"the call deadline of {self.settings.deadline:g} s passed",
            request=self.request,
            idempotency_key=self.key,
            attempts=self.attempts,
            phase="deadline",
            request_sent=self.attempts > 0,
            not_retried_because="no time is left before the call's deadline",
        )

    async def before_retry(self, failure: APIError) -> None:
        """Never retry once the calling task is being cancelled: raise the cancellation
        of an enclosing scope, or, on asyncio, a cancel request of the task that was
        swallowed below us (the failure may only have come from it)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if pending_cancels(self.core.loop) > 0:
            raise asyncio.CancelledError("the calling task is being cancelled") from failure

    # -- running ---------------------------------------------------------------

    async def run(self) -> APIResponse[T]:
        """All attempts, with the ``call_finished`` event around them."""
        core = self.core
        if not core.hooks:
            return await self._closable()
        try:
            result = await self._closable()
        except BaseException as exc:  # cancellation too: a tracer must close its span
            made = getattr(exc, "attempts", self.attempts)  # 0 if the deadline passed unsent
            core.emit(self.event("call_finished", made, getattr(exc, "status_code", None), exc))
            raise
        core.emit(self.event("call_finished", self.attempts, result.status_code))
        return result

    async def _closable(self) -> APIResponse[T]:
        """The retry loop in a cancel scope that closing the client cancels; that
        cancellation (or a failure of the pool closed under it) is a ClientClosedError."""
        core = self.core
        cause: BaseException | None = None
        with anyio.CancelScope() as scope:
            core.calls.add(scope)
            try:
                return await run_with_retries(self)
            except APIError as exc:
                if not core.closed:
                    raise
                cause = exc
            finally:
                core.calls.discard(scope)
        # Reached only when close() cancelled this call, or its attempt failed after it.
        raise ClientClosedError(
            "the client was closed while this call was in flight; no attempt starts "
            "after close. The idempotency key tells what may have reached Codat.",
            request=self.request,
            idempotency_key=self.key,
            attempts=self.attempts,
        ) from cause

    async def attempt(self) -> APIResponse[T]:
        """One attempt: wait for the limits, send, then parse or raise a typed error."""
        core, op, key = self.core, self.op, self.key
        limits = core.limits
        await limits.acquire(self)
        try:
            if core.closed:  # closed from elsewhere while this attempt waited
                raise ClientClosedError(
                    "the client was closed before this attempt was sent",
                    request=self.request,
                    idempotency_key=key,
                    attempts=self.attempts,
                )
            limit, phase = self.time_limit()
            self.attempts += 1
            number = self.attempts
            if core.hooks:
                core.emit(self.event("request_sent", number))
            try:
                response, body = await send_attempt(
                    core.pool.send,
                    self.request,
                    max_response_size=core.max_response_size,
                    time_limit=limit,
                    limit_phase=phase,
                    secrets=core.secrets,
                    errors=core.pool.library.errors,
                )
            except APIError as exc:
                exc.idempotency_key = key
                exc.attempts = number
                if logger.isEnabledFor(logging.DEBUG):
                    self._log(type(exc).__name__)
                raise
        finally:
            limits.release(self)
        status = response.status_code
        if core.hooks:
            core.emit(self.event("response_received", number, status))
        if logger.isEnabledFor(logging.DEBUG):
            self._log(status)
        if 200 <= status < 300:
            limits.observe(self, status, response.headers, None)
            parsed = _protocol.parse_success(
                op.model, response, body, idempotency_key=key, attempts=number
            )
            return APIResponse(response, parsed, number, key)
        error = _protocol.error_for_response(
            response, body, idempotency_key=key, attempts=number, secrets=core.secrets
        )
        # A 429's or a 503's Retry-After is about the whole client (Codat counts per
        # IP; a 503 is the service): the limits pause every call, not only this one.
        limits.observe(self, status, response.headers, retry_after_of(error))
        raise error

    # -- telling others --------------------------------------------------------

    def event(
        self,
        kind: EventKind,
        attempt: int,
        status_code: int | None = None,
        error: BaseException | None = None,
        wait: float | None = None,
    ) -> CallEvent:
        op = self.op
        return CallEvent(
            kind=kind,
            method=op.method,
            path=op.path,
            company_id=op.company_id,
            attempt=attempt,
            idempotency_key=self.key,
            status_code=status_code,
            error=error,
            wait=wait,
            elapsed=self.core.clock.now() - self.started,
        )

    def retry_scheduled(self, exc: APIError, wait: float) -> None:
        """Tell hooks and the log that attempt :attr:`attempts` failed and a retry follows."""
        op, number = self.op, self.attempts
        if self.core.hooks:
            status = getattr(exc, "status_code", None)
            self.core.emit(self.event("retry_scheduled", number, status, exc, wait))
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s failed (%s) on attempt %d of %d; retrying in %.2f s",
                op.method,
                op.path,
                type(exc).__name__,
                number,
                self.settings.max_retries + 1,
                wait,
                extra={
                    "codat_method": op.method,
                    "codat_path": op.path,
                    "codat_attempt": number,
                    "codat_error": type(exc).__name__,
                    "codat_wait": wait,
                },
            )

    def _log(self, outcome: int | str) -> None:
        op = self.op
        logger.debug(
            "%s %s -> %s (attempt %d)",
            op.method,
            op.path,
            outcome,
            self.attempts,
            extra={
                "codat_method": op.method,
                "codat_path": op.path,
                "codat_outcome": outcome,
                "codat_attempt": self.attempts,
            },
        )
