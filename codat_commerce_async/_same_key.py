"""Calls of one client that share an idempotency key: a later one waits for the first.

Codat answers a key whose first request is still running with 409, and a key it has
answered with that answer. Within one client the SDK knows better than to ask: a call
whose key and request match a call in flight sends nothing, waits for that call (never
past its own deadline) and returns its answer, a success or the same error. If the first
call ends without an answer (cancelled), the waiting call goes on with its own attempts.
Across clients and processes Codat's 409 is waited out instead (:mod:`._retry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from ._exceptions import APIError, APITimeoutError

if TYPE_CHECKING:
    from ._call import Call
    from ._response import APIResponse

__all__ = ["SameKeyCalls"]

T = TypeVar("T")


class _First:
    """The call in flight with a key, and its answer once it has one."""

    __slots__ = ("done", "error", "request", "result")

    def __init__(self, request: tuple[str, str, bytes | None]) -> None:
        self.request = request
        self.done = anyio.Event()
        self.result: APIResponse[Any] | None = None
        self.error: APIError | None = None


class SameKeyCalls:
    """The calls of one client in flight, by idempotency key (only while in flight)."""

    def __init__(self) -> None:
        self._first: dict[str, _First] = {}

    async def run(self, call: Call[T]) -> APIResponse[T]:
        """Run ``call``, or wait for the call in flight with its key and share its answer."""
        key = call.key
        assert key is not None
        request = (call.op.method, call.op.path, call.op.body)
        while (first := self._first.get(key)) is not None:
            if first.request != request:
                return await call.run()  # another body with this key: Codat says 422
            await _wait(first, call)
            if first.error is not None:
                raise first.error
            if first.result is not None:
                return cast("APIResponse[T]", first.result)
            # The first call ended without an answer (cancelled): this one goes on.
        mine = self._first[key] = _First(request)
        try:
            mine.result = result = await call.run()
            return result
        except APIError as exc:
            mine.error = exc
            raise
        finally:
            del self._first[key]
            mine.done.set()


async def _wait(first: _First, call: Call[Any]) -> None:
    left = call.remaining()
    if left is None:
        await first.done.wait()
        return
    with anyio.move_on_after(max(0.0, left)):
        await first.done.wait()
        return
    raise APITimeoutError(
        f"the call deadline of {call.settings.deadline:g} s passed while an earlier call "
        "with this idempotency key was still running in this client",
        request=call.request,
        idempotency_key=call.key,
        attempts=0,
        phase="deadline",
        request_sent=True,  # by the earlier call: only this key is safe to retry with
        not_retried_because="no time is left before the call's deadline",
    )
