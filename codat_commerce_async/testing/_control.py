"""The fake's control plane under the reserved ``/_fake/`` prefix.

Codat has no path starting with ``/_fake/``, so these never shadow an API route. They
let tests in another process (or another language) read what the fake saw and start
afresh: ``GET /_fake/ledger`` and ``POST /_fake/reset``. No credential is needed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

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


def control_response(fake: FakeCodat, method: str, path: str) -> Response:
    """Answer a request under :data:`CONTROL_PREFIX`."""
    routes = {"/_fake/ledger": "GET", "/_fake/reset": "POST"}
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
        fake.reset()
        return json_response(200, {"reset": True})
    return json_response(200, ledger_json(fake))
