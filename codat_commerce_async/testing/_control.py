"""The fake's control plane under the reserved ``/_fake/`` prefix.

Codat has no path starting with ``/_fake/``, so these never shadow an API route. They
let tests in another process (or another language) read what the fake saw, start afresh
(the faults the process was started with stay, and the answer says what was forgotten
and kept) and have the fake deliver a signed webhook: ``GET /_fake/ledger``, ``POST /_fake/reset``
and ``POST /_fake/webhooks``. No credential is needed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._http_library import default_library
from ..webhooks import _secret_problem
from ._wire import Response, ValidationItem, error_response, json_response

if TYPE_CHECKING:
    from ._app import FakeCodat

__all__ = ["CONTROL_PREFIX", "control_response", "ledger_json"]

CONTROL_PREFIX = "/_fake/"

# A webhook id goes into the webhook-id header: printable ASCII, no spaces.
_HEADER_TOKEN = re.compile(r"[!-~]{1,256}")


def ledger_json(fake: FakeCodat) -> dict[str, Any]:
    """What the fake received and started, per company (JSON-ready)."""
    requests = fake.requests
    syncs = fake.syncs
    per_company: dict[str, dict[str, Any]] = {}

    def entry(company: str) -> dict[str, Any]:
        return per_company.setdefault(
            company, {"requests": 0, "syncs_started": 0, "sync_ids": [], "idempotency_keys": []}
        )

    for record in requests:
        if record.company_id is not None:
            entry(record.company_id)["requests"] += 1
    for sync in syncs:
        item = entry(sync.company_id)
        item["syncs_started"] += 1
        item["sync_ids"].append(sync.commerce_sync_id)
        if sync.idempotency_key is not None:
            item["idempotency_keys"].append(sync.idempotency_key)
    keys = Counter(s.idempotency_key for s in syncs if s.idempotency_key is not None)
    return {
        "requests": len(requests),
        "requests_by_operation": dict(Counter(r.operation or "unmatched" for r in requests)),
        "replayed": sum(1 for r in requests if r.replayed),
        "syncs_started": len(syncs),
        "duplicate_idempotency_keys": sorted(k for k, n in keys.items() if n > 1),
        "companies": per_company,
    }


async def control_response(fake: FakeCodat, method: str, path: str, body: bytes) -> Response:
    """Answer a request under :data:`CONTROL_PREFIX`."""
    routes = {"/_fake/ledger": "GET", "/_fake/reset": "POST", "/_fake/webhooks": "POST"}
    wanted = routes.get(path)
    if wanted is None:
        return error_response(404, f"No resource was found at {path}")
    if method != wanted:
        return error_response(
            405,
            f"The method {method} is not allowed for this resource.",
            headers=(("allow", wanted),),
        )
    if path == "/_fake/reset":
        return json_response(200, {"reset": True, **fake.reset()})
    if path == "/_fake/webhooks":
        return await _send_webhook(fake, body)
    return json_response(200, ledger_json(fake))


async def _send_webhook(fake: FakeCodat, body: bytes) -> Response:
    """``{"url", "secret", "eventType", "payload"?, "id"?}``: sign and deliver one webhook;
    answers ``{"status": <the receiver's status>}``, or a 400 naming the field at fault."""
    request = _webhook_request(body)
    if isinstance(request, ValidationItem):
        return error_response(400, f"{request.item_id}: {request.message}", validation=[request])
    try:
        delivered = await fake.send_webhook(
            request["url"],
            request["eventType"],
            request.get("payload"),
            secret=request["secret"],
            event_id=request.get("id"),
        )
    except default_library().errors.any_error as exc:  # httpx's or httpx2's
        return error_response(502, f"The webhook could not be delivered: {type(exc).__name__}")
    return json_response(200, {"status": delivered.status_code})


def _webhook_request(body: bytes) -> dict[str, Any] | ValidationItem:
    """The checked request of ``POST /_fake/webhooks``, or what is wrong with it (the
    secret's problem is described, never quoted)."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return ValidationItem(
            "$", "The request body is not JSON (or is nested too deeply).", "Json"
        )
    if not isinstance(request, dict):
        return ValidationItem("$", "The request body must be a JSON object.", "Type")
    for name in ("url", "secret", "eventType"):
        if not isinstance(request.get(name), str) or not request[name]:
            return ValidationItem(name, f"{name} is required, as a non-empty string.", "Required")
    if not _is_http_url(request["url"]):
        return ValidationItem("url", "url must be an absolute http(s) URL.", "Url")
    problem = _secret_problem(request["secret"])
    if problem is not None:
        return ValidationItem(
            "secret", f"secret is not a 'whsec_' base64 secret: {problem}.", "Secret"
        )
    event_id = request.get("id")
    if event_id is not None and not (
        isinstance(event_id, str) and _HEADER_TOKEN.fullmatch(event_id)
    ):
        return ValidationItem(
            "id", "id must be a string of printable ASCII without spaces (it is a header).", "Type"
        )
    payload = request.get("payload")
    if payload is not None and not isinstance(payload, dict):
        return ValidationItem("payload", "payload must be a JSON object.", "Type")
    return request


def _is_http_url(url: str) -> bool:
    try:
        parsed = urlsplit(url)
        host = parsed.hostname
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(host) and url.isascii() and url.isprintable()
