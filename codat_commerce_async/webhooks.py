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

import base64
import datetime as _dt
import json
import re
import time
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

# The library's (and Svix's) fixed tolerance for webhook-timestamp, in seconds.
_TOLERANCE = 5 * 60
# A Unix time in whole seconds, as Svix sends it.
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
# One entry of webhook-signature: "<version>,<base64>" (entries are separated by spaces).
_SIGNATURE = re.compile(r"[^,\s]+,[^,\s]+")


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
    signer = _signer(secret)
    del secret  # out of this frame's locals, so no traceback renderer can show it
    _verify(signer, body, headers)


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
    signer = _signer(secret)
    del secret  # as in verify
    _verify(signer, body, headers)
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


def _signer(secret: str | bytes) -> Any:
    """The library's ``Webhook`` for ``secret``, or a str saying what is wrong with it.

    Returns rather than raises, and keeps no library exception, so that nothing of the
    secret reaches an exception chain (a ``UnicodeEncodeError`` would quote it whole)."""
    try:
        from standardwebhooks import Webhook
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "verifying webhooks needs standardwebhooks: "
            "pip install 'codat-commerce-async[webhooks]'"
        ) from exc
    problem = _secret_problem(secret)
    if problem is not None:
        return problem
    try:
        signer = Webhook(secret)
    except Exception:  # any refusal by the library: not a usable secret
        signer = None
    return "standardwebhooks refused it" if signer is None else signer


def _secret_problem(secret: object) -> str | None:
    """Why ``secret`` is not a usable ``whsec_`` secret (never quoting it), or None.

    The library decodes the part after ``whsec_`` as lenient base64 (characters outside
    the alphabet are skipped); a non-ASCII character or nothing left to decode is refused
    here, with a message that names the problem but not the secret."""
    if isinstance(secret, (bytes, bytearray)):
        return None if secret else "it is empty"
    if not isinstance(secret, str):
        return f"it must be a str or bytes, not {type(secret).__name__}"
    encoded = secret.removeprefix("whsec_")
    if not encoded.isascii():
        return (
            "it holds a character that is not ASCII (a non-breaking space or similar "
            "pasted with it?)"
        )
    try:
        key = base64.b64decode(encoded + "==")
    except ValueError:  # binascii.Error: the message is about lengths, never the text
        return "its base64 is cut short"
    return None if key else "it is empty"


def _verify(signer: Any, body: object, headers: Mapping[str, str]) -> None:
    """The reason is decided from our own reading of the body and headers; the library
    only says whether one signature matches (its messages differ between versions)."""
    if isinstance(signer, str):
        raise WebhookVerificationError(
            f"the webhook secret is not a 'whsec_' base64 secret: {signer}", reason="secret"
        )
    text = _body_text(body)
    wanted = _standard_headers(headers)
    missing = [name for name in HEADERS if not wanted.get(name)]
    if missing:
        raise WebhookVerificationError(
            f"missing {', '.join(missing)} header (every delivery has webhook-id, "
            "webhook-timestamp and webhook-signature)",
            reason="headers",
        )
    stamp = wanted["webhook-timestamp"].strip()
    if not _UNIX_TIME.fullmatch(stamp):
        raise WebhookVerificationError(
            "the webhook-timestamp header is not a Unix time", reason="headers"
        )
    signatures = [
        part for part in wanted["webhook-signature"].split() if _SIGNATURE.fullmatch(part)
    ]
    if not signatures:
        raise WebhookVerificationError(
            "the webhook-signature header holds no 'v1,<base64>' signature", reason="headers"
        )
    _check_timestamp(int(stamp))
    from standardwebhooks import WebhookVerificationError as _Invalid

    for signature in signatures:
        # One at a time: an older library stops at the first entry it cannot decode.
        one = {**wanted, "webhook-timestamp": stamp, "webhook-signature": signature}
        try:
            signer.verify(text, one, json_parse=False)
        except (_Invalid, ValueError, TypeError):
            continue
        return
    _check_timestamp(int(stamp))  # the library's clock may have crossed the 5 minutes since
    raise WebhookVerificationError(
        "no webhook signature matches: wrong secret, or the body was changed "
        "(verify the raw body, before any JSON parsing)",
        reason="signature",
    )


def _body_text(body: object) -> str:
    """The body as the library signs it (UTF-8 text), or a clear refusal (raised outside
    the ``except`` blocks: the chain would quote the body)."""
    problem: WebhookVerificationError
    if isinstance(body, str):
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            problem = WebhookVerificationError(
                "the body is a str that is not valid text (it holds a lone surrogate): "
                "pass the raw body bytes as received",
                reason="body",
            )
        else:
            return body
    elif isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            problem = WebhookVerificationError("the body is not UTF-8", reason="signature")
    else:
        problem = WebhookVerificationError(
            f"the body must be the raw request body (bytes or str), not "
            f"{type(body).__name__}: verify before any JSON parsing",
            reason="body",
        )
    raise problem


def _check_timestamp(stamp: int) -> None:
    skew = stamp - time.time()
    if abs(skew) > _TOLERANCE:
        when = "in the past" if skew < 0 else "in the future"
        raise WebhookVerificationError(
            f"the webhook-timestamp is more than 5 minutes from now ({abs(skew):.0f} s {when}): "
            "a replayed delivery or a wrong clock",
            reason="timestamp",
        )
