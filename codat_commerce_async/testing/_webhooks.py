"""Signed Codat-style webhooks from the fake, for testing webhook handlers.

Bodies follow Codat's envelope ``{id, eventType, generatedDate, payload}`` and are signed
as Svix signs them (Standard Webhooks, via the ``standardwebhooks`` library).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._http_library import resolve_library
from ..webhooks import _secret_problem

if TYPE_CHECKING:
    from .._types import AsyncBaseTransport, Response

__all__ = ["new_webhook_secret", "send_webhook", "sign_webhook", "webhook_body"]


def new_webhook_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, as Svix issues them)."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def webhook_body(
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    event_id: str | None = None,
    generated: datetime | None = None,
) -> bytes:
    """A Codat webhook body: ``{id, eventType, generatedDate, payload}``."""
    moment = (generated or datetime.now(timezone.utc)).astimezone(timezone.utc)
    envelope = {
        "id": event_id or str(uuid.uuid4()),
        "eventType": event_type,
        "generatedDate": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payload": dict(payload) if payload is not None else {},
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def sign_webhook(
    body: bytes, secret: str, *, message_id: str | None = None, timestamp: datetime | None = None
) -> dict[str, str]:
    """The ``webhook-id``/``-timestamp``/``-signature`` headers for ``body``."""
    try:
        from standardwebhooks import Webhook
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "signing webhooks needs standardwebhooks: pip install 'codat-commerce-async[webhooks]'"
        ) from exc
    problem = _secret_problem(secret)
    if problem is not None:  # checked here: the library's own error could quote the secret
        raise ValueError(f"secret is not a 'whsec_' base64 secret: {problem}")
    moment = timestamp or datetime.now(timezone.utc)
    msg_id = message_id or "msg_" + uuid.uuid4().hex
    signature = Webhook(secret).sign(msg_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def send_webhook(
    url: str,
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    secret: str,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    transport: AsyncBaseTransport | None = None,
) -> Response:
    """POST one signed webhook to ``url`` and return the receiver's response.

    ``transport`` (e.g. ``httpx.ASGITransport(app=your_app)``, or an httpx2 one) sends it
    in-process. It is sent with the transport's library (without one:
    ``CODAT_HTTP_LIBRARY``, else httpx)."""
    body = webhook_body(event_type, payload, event_id=event_id)
    headers = sign_webhook(body, secret, message_id=event_id, timestamp=timestamp)
    library = resolve_library(None, transport=transport).module
    async with library.AsyncClient(transport=transport, timeout=30) as http:
        response: Response = await http.post(url, content=body, headers=headers)
        return response
