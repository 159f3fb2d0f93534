"""Codat's webhooks: verify a delivery, read it as a typed event, act on the quota events.

Codat delivers webhooks through Svix, which follows the Standard Webhooks scheme: headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``, a ``whsec_...`` secret per
endpoint, and the *raw* request body. Verification is done by the maintained
``standardwebhooks`` library (``pip install 'codat-commerce-async[webhooks]'``)::

    from codat_commerce_async import webhooks

    event = webhooks.unwrap(body, request.headers, secret=CODAT_WEBHOOK_SECRET)
    if isinstance(event, webhooks.ConnectionDeletedEvent):
        stop_syncing(event.company_id)
    webhooks.apply_rate_limit(client, event)   # pause/resume the client's bulk runs

Events this SDK's users care about get their own model; any other event type comes back
as :class:`UnknownEvent` with its payload as a dict, so a new event never breaks a
handler. Codat retries a delivery that does not get a 2xx for about 28 hours: answer
quickly, and treat a :class:`WebhookVerificationError` as a 400.

There is no "commerce sync completed" event: wait for syncs with ``wait_for_sync``.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from ._exceptions import WebhookError, WebhookVerificationError
from ._models import Connection
from ._models._base import CodatModel

if TYPE_CHECKING:
    from ._blocking import SyncClient
    from ._client import AsyncSyncClient

__all__ = [
    "CompanyReference",
    "ConnectionDeletedEvent",
    "ConnectionDeletedPayload",
    "RateLimitPayload",
    "RateLimitReachedEvent",
    "RateLimitResetEvent",
    "UnknownEvent",
    "WebhookError",
    "WebhookEvent",
    "WebhookVerificationError",
    "apply_rate_limit",
    "parse",
    "unwrap",
    "verify",
]

#: The Standard Webhooks headers, lower-case.
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookEvent(CodatModel):
    """What every Codat webhook carries (its envelope)."""

    id: str | None = None
    """The event's id (also the ``webhook-id`` header): deduplicate redeliveries on it."""
    event_type: str
    """e.g. ``"connection.deleted"``."""
    generated_date: str | None = None
    """When Codat generated the event (UTC, ISO-8601)."""


class CompanyReference(CodatModel):
    """The company an event is about (Codat's ``companyReference``)."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    links: dict[str, Any] | None = None
    tags: dict[str, Any] | None = None


class ConnectionDeletedPayload(CodatModel):
    """``connection.deleted``: the company and the connection deleted."""

    reference_company: CompanyReference | None = None
    connection: Connection | None = None


class ConnectionDeletedEvent(WebhookEvent):
    """A company's data connection was deleted: stop syncing it for that company.

    Shape from the ``webhooks`` section of Codat's Sync for Commerce spec
    (``ConnectionWebhook``)."""

    event_type: Literal["connection.deleted"]
    payload: ConnectionDeletedPayload | None = None

    @property
    def company_id(self) -> str | None:
        """The company whose connection was deleted."""
        company = self.payload.reference_company if self.payload else None
        return company.id if company else None


class RateLimitPayload(CodatModel):
    """The daily quota, as Codat's rate limit events report it."""

    daily_quota: int | None = None
    """Requests allowed per day (1,000 x (1 + active connected companies))."""
    quota_remaining: int | None = None
    expiry_date: str | None = None
    """When the quota resets (UTC, ISO-8601; Codat resets it at 00:00 UTC)."""

    @property
    def expires_at(self) -> _dt.datetime | None:
        """``expiry_date`` as an aware datetime (None when absent or unreadable)."""
        if not self.expiry_date:
            return None
        text = self.expiry_date.strip()
        try:
            parsed = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


class RateLimitReachedEvent(WebhookEvent):
    """``client.rateLimit.reached``: the day's quota is spent until ``expiry_date``."""

    event_type: Literal["client.rateLimit.reached"]
    payload: RateLimitPayload | None = None


class RateLimitResetEvent(WebhookEvent):
    """``client.rateLimit.reset``: the quota was reset; requests may go on."""

    event_type: Literal["client.rateLimit.reset"]
    payload: RateLimitPayload | None = None


class UnknownEvent(WebhookEvent):
    """Any other event type, passed through with its payload as JSON data."""

    payload: Any = None


AnyEvent = ConnectionDeletedEvent | RateLimitReachedEvent | RateLimitResetEvent | UnknownEvent

_TYPED: dict[str, type[WebhookEvent]] = {
    "connection.deleted": ConnectionDeletedEvent,
    "client.rateLimit.reached": RateLimitReachedEvent,
    "client.rateLimit.reset": RateLimitResetEvent,
}


def verify(body: bytes | str, headers: Mapping[str, str], *, secret: str | bytes) -> None:
    """Check a delivery's signature and timestamp (5 minutes' tolerance) or raise
    :class:`WebhookVerificationError`. ``body`` must be the raw body as received."""
    try:
        from standardwebhooks import Webhook
        from standardwebhooks import WebhookVerificationError as _Invalid
        from standardwebhooks.webhooks import EmptyWebhookSecretError
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "verifying webhooks needs standardwebhooks: "
            "pip install 'codat-commerce-async[webhooks]'"
        ) from exc
    try:
        webhook = Webhook(secret)
    except (EmptyWebhookSecretError, binascii.Error, ValueError, RuntimeError):
        raise WebhookVerificationError(
            "the webhook secret is not a 'whsec_' base64 secret", reason="secret"
        ) from None
    try:
        text = body if isinstance(body, str) else body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookVerificationError("the body is not UTF-8", reason="signature") from None
    wanted = _standard_headers(headers)
    try:
        webhook.verify(text, wanted, json_parse=False)
    except _Invalid as exc:
        raise _translate(str(exc)) from None
    except (binascii.Error, ValueError):
        # A signature that is not "v1,<base64>" (the library does not catch it itself).
        raise WebhookVerificationError(
            "the webhook-signature header is malformed", reason="headers"
        ) from None


def parse(body: bytes | str) -> AnyEvent:
    """Read an already verified body as a typed event (unknown types pass through)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookError("the webhook body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("eventType"), str):
        raise WebhookError("the webhook body is not a Codat event (no eventType)")
    model = _TYPED.get(data["eventType"], UnknownEvent)
    try:
        event: AnyEvent = model.model_validate(data)  # type: ignore[assignment]
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise WebhookError(
            f"the {data['eventType']} event does not match its schema: {where}: {first['msg']}"
        ) from None
    return event


def unwrap(body: bytes | str, headers: Mapping[str, str], *, secret: str | bytes) -> AnyEvent:
    """:func:`verify` then :func:`parse`: the event, or a :class:`WebhookError`."""
    verify(body, headers, secret=secret)
    return parse(body)


def apply_rate_limit(client: AsyncSyncClient | SyncClient, event: WebhookEvent) -> bool:
    """Pause ``client``'s bulk runs on ``client.rateLimit.reached`` (until the quota's
    ``expiryDate``, or until the reset event if it has none) and resume them on
    ``client.rateLimit.reset``. Returns True if the event was one of the two.

    Call it on the client's event loop (an ``async def`` route); a :class:`SyncClient`
    may be called from any thread.
    """
    if isinstance(event, RateLimitReachedEvent):
        until = event.payload.expires_at if event.payload else None
        client.pause_bulk_runs(until=until)
        return True
    if isinstance(event, RateLimitResetEvent):
        client.resume_bulk_runs()
        return True
    return False


def _standard_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The three signature headers, lower-case (Svix's ``svix-*`` names accepted too)."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("svix-"):
            lower = "webhook-" + lower.removeprefix("svix-")
        if lower in HEADERS:
            found.setdefault(lower, value)
    return found


def _translate(message: str) -> WebhookVerificationError:
    if "timestamp too" in message:
        return WebhookVerificationError(
            f"the webhook-timestamp is more than 5 minutes from now ({message.lower()}): "
            "a replayed delivery or a wrong clock",
            reason="timestamp",
        )
    if "Missing required headers" in message:
        return WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header", reason="headers"
        )
    if "Invalid Signature Headers" in message:
        return WebhookVerificationError(
            "the webhook-timestamp header is not a Unix time", reason="headers"
        )
    return WebhookVerificationError(
        "no webhook signature matches: wrong secret, or the body was changed "
        "(verify the raw body, before any JSON parsing)",
        reason="signature",
    )
