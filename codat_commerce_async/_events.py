"""Event hooks: observe each call without touching the SDK (metrics, tracing, audit).

A hook is a plain callable taking a :class:`CallEvent`. Hooks run inline on the
event loop, so keep them fast; an exception from a hook propagates to the caller.
No event carries a header, a body or a credential.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["CallEvent", "EventHook", "EventKind"]

EventKind = Literal["request_sent", "response_received", "retry_scheduled", "call_finished"]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One step of a call.

    ``request_sent`` fires as an attempt goes out, ``response_received`` when its
    HTTP response has been read, ``retry_scheduled`` before a wait (with ``wait``
    and the ``error`` that caused it), ``call_finished`` once per call (with the
    final ``status_code`` or ``error``).
    """

    kind: EventKind
    method: str
    path: str
    company_id: str
    attempt: int
    """The attempt number (1 for the first); for ``call_finished``, the attempts made."""
    idempotency_key: str | None
    status_code: int | None = None
    error: BaseException | None = None
    wait: float | None = None
    """Seconds until the next attempt (``retry_scheduled`` only)."""
    elapsed: float = 0.0
    """Seconds since the call started."""


EventHook = Callable[[CallEvent], object]


def validate_hooks(hooks: Sequence[EventHook] | None) -> tuple[EventHook, ...]:
    """Hooks as a tuple (empty when none: the hot path then skips building events)."""
    if hooks is None:
        return ()
    result: tuple[object, ...] = tuple(hooks)
    if not all(callable(hook) for hook in result):
        from ._exceptions import ConfigurationError

        raise ConfigurationError("every event hook must be callable")
    return tuple(hooks)
