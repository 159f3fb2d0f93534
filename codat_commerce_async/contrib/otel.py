"""OpenTelemetry tracing: one span per SDK call, attempts and retries as span events.

::

    pip install 'codat-commerce-async[otel]'

    from codat_commerce_async import AsyncSyncClient
    from codat_commerce_async.contrib.otel import tracing_hook

    client = AsyncSyncClient(event_hooks=[tracing_hook()])

A span starts when a call's first attempt is sent and ends when the call finishes. It is
a ``CLIENT`` span named ``codat.sync POST /companies/{companyId}/sync/commerce/latest``
(the route template, so names stay few), child of whatever span is current (a request
handler's, say), with these attributes:

- ``http.request.method``, ``url.template``, ``codat.operation``;
- ``codat.company_id`` (not secret; pass ``record_company_id=False`` to leave it out);
- ``codat.idempotency_key`` (POSTs), ``codat.attempts``, ``http.request.resend_count``;
- ``http.response.status_code`` of the last response, and on failure ``error.type`` (the
  exception class), an ``exception`` event and an ``ERROR`` status. The event holds the
  type and a message but no traceback; for an HTTP error the message is the status and
  Codat's ``correlationId``, never the text of Codat's answer, which could echo anything.

Events: ``codat.attempt`` as each attempt is sent, ``codat.response`` as its response
arrives (``http.response.status_code``), ``codat.retry`` before each wait
(``codat.retry.wait``, ``error.type``). No header, body or credential is ever recorded.

The span is not made current while the call runs. A cancelled call's span ends at once
with ``error.type="cancelled"``.
"""

from __future__ import annotations

import contextvars
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "codat_commerce_async.contrib.otel needs opentelemetry-api: "
        "pip install 'codat-commerce-async[otel]'"
    ) from exc

from .._events import CallEvent, EventHook
from .._exceptions import APIConnectionError, APIError, APIStatusError
from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = ["SPAN_NAME_PREFIX", "operation_name", "route_template", "tracing_hook"]

#: Every span's name starts with this, then the method and the route template.
SPAN_NAME_PREFIX = "codat.sync"

_INSTRUMENTATION = "codat_commerce_async"
_hook_ids = itertools.count()

_OPERATIONS = {
    ("POST", "/companies/{companyId}/sync/commerce/latest"): "request-sync",
    ("POST", "/meta/companies/{companyId}/sync/commerce/historic"): "request-sync-for-date-range",
    ("GET", "/companies/{companyId}/sync/commerce/syncs/{syncId}/status"): "get-sync-status",
    ("GET", "/companies/{companyId}/sync/commerce/syncs/latest/status"): "get-latest-sync",
    (
        "GET",
        "/companies/{companyId}/sync/commerce/syncs/lastSuccessful/status",
    ): "get-last-successful-sync",
    ("GET", "/companies/{companyId}/sync/commerce/syncs/list/status"): "list-syncs",
}


def route_template(path: str) -> str:
    """The path with its ids replaced: ``/companies/{companyId}/.../syncs/{syncId}/status``."""
    parts = path.split("/")
    for index in range(1, len(parts)):
        previous = parts[index - 1]
        if previous == "companies":
            parts[index] = "{companyId}"
        elif previous == "syncs" and parts[index] not in ("latest", "lastSuccessful", "list"):
            parts[index] = "{syncId}"
    return "/".join(parts)


def operation_name(method: str, template: str) -> str | None:
    """Codat's operationId for a method and route template (None if unknown)."""
    return _OPERATIONS.get((method, template))


@dataclass
class _CallSpan:
    span: trace.Span
    attempts: int = 0
    ended: bool = False

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.span.end()


def tracing_hook(
    tracer: trace.Tracer | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    record_company_id: bool = True,
) -> EventHook:
    """An event hook that records one span per call (see the module docstring).

    ``tracer`` defaults to one from ``tracer_provider`` (default: the global provider).
    Use one hook per client or share it: spans are tracked per task, so concurrent calls
    never mix.
    """
    if tracer is None:
        tracer = trace.get_tracer(_INSTRUMENTATION, __version__, tracer_provider)
    # Hooks run synchronously in the task making the call, so a context variable tells
    # this call's span apart from every concurrent call's.
    current: contextvars.ContextVar[_CallSpan | None] = contextvars.ContextVar(
        f"codat_otel_span_{next(_hook_ids)}", default=None
    )

    def start(event: CallEvent) -> _CallSpan:
        template = route_template(event.path)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": event.method,
            "url.template": template,
        }
        operation = operation_name(event.method, template)
        if operation is not None:
            attributes["codat.operation"] = operation
        if record_company_id:
            attributes["codat.company_id"] = event.company_id
        if event.idempotency_key is not None:
            attributes["codat.idempotency_key"] = event.idempotency_key
        span = tracer.start_span(
            f"{SPAN_NAME_PREFIX} {event.method} {template}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        state = _CallSpan(span)
        current.set(state)
        return state

    def hook(event: CallEvent) -> None:
        state = current.get()
        if event.kind == "request_sent":
            if state is None or event.attempt == 1:
                state = start(event)
            state.attempts += 1
            state.span.add_event("codat.attempt", {"codat.attempt": event.attempt})
        elif event.kind == "response_received":
            if state is not None and event.status_code is not None:
                state.span.add_event(
                    "codat.response",
                    {
                        "codat.attempt": event.attempt,
                        "http.response.status_code": event.status_code,
                    },
                )
        elif event.kind == "retry_scheduled":
            if state is not None:
                details: dict[str, AttributeValue] = {
                    "codat.attempt": event.attempt,
                    "codat.retry.wait": event.wait or 0.0,
                }
                if event.error is not None:
                    details["error.type"] = type(event.error).__name__
                if event.status_code is not None:
                    details["http.response.status_code"] = event.status_code
                state.span.add_event("codat.retry", details)
        elif event.kind == "call_finished":
            if state is None:  # failed before its first attempt was sent (its deadline)
                state = start(event)
            _finish(state, event)
            state.end()
            current.set(None)

    return hook


def _finish(state: _CallSpan, event: CallEvent) -> None:
    """Record a call's outcome on its span."""
    span = state.span
    span.set_attribute("codat.attempts", state.attempts)
    span.set_attribute("http.request.resend_count", max(0, state.attempts - 1))
    if event.status_code is not None:
        span.set_attribute("http.response.status_code", event.status_code)
    error = event.error
    if error is None:
        return
    if not isinstance(error, Exception):  # cancellation (asyncio or trio), Ctrl-C
        span.set_attribute("error.type", "cancelled")
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
        return
    kind = type(error).__name__
    span.set_attribute("error.type", kind)
    span.add_event("exception", {"exception.type": kind, "exception.message": _message(error)})
    span.set_status(Status(StatusCode.ERROR, kind))


def _message(error: BaseException) -> str:
    """What to record of an error: never a traceback, and never text Codat sent (which
    could echo anything), only what the SDK itself wrote and scrubbed."""
    if isinstance(error, APIConnectionError):
        return str(error)  # built by the SDK, with any credential removed
    parts: list[str] = []
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        parts.append(f"status={status}")
    if isinstance(error, APIStatusError) and error.correlation_id:
        parts.append(f"correlation_id={error.correlation_id}")
    if isinstance(error, APIError):
        parts.append(f"attempts={error.attempts}")
    return f"{type(error).__name__} ({', '.join(parts)})" if parts else type(error).__name__
