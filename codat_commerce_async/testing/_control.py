"""The fake's control plane under the reserved ``/_fake/`` prefix.

Codat has no path starting with ``/_fake/``, so these never shadow an API route. They
let tests in another process (or another language) read what the fake saw, start afresh
(the faults the process was started with stay, and the answer says what was forgotten
and kept) and have the fake deliver a signed webhook: ``GET /_fake/ledger``, ``POST /_fake/reset``
and ``POST /_fake/webhooks``. No credential is needed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from .._http_library import default_library
from ._wire import Response, error_response, json_response

if TYPE_CHECKING:
    from ._app import FakeCodat

__all__ = ["CONTROL_PREFIX", "control_response", "ledger_json"]

CONTROL_PREFIX = "/_fake/"


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
    answers ``{"status": <the receiver's status>}``."""
    try:
        request = json.loads(body)
        url, secret, event_type = request["url"], request["secret"], request["eventType"]
        if not all(isinstance(v, str) for v in (url, secret, event_type)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return error_response(400, "Send JSON with string url, secret and eventType.")
    try:
        delivered = await fake.send_webhook(
            url, event_type, request.get("payload"), secret=secret, event_id=request.get("id")
        )
    except default_library().errors.any_error as exc:  # httpx's or httpx2's
        return error_response(502, f"The webhook could not be delivered: {type(exc).__name__}")
    return json_response(200, {"status": delivered.status_code})
