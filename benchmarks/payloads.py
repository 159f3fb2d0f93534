"""Canned answers shared by the nginx config and the fallback server."""

from __future__ import annotations

import json

SUMMARY = {
    "syncDateRangeUtc": {"start": "2024-06-01T00:00:00Z", "finish": "2024-06-30T00:00:00Z"},
    "companyId": "f4637ec9-9fc0-4a02-8df0-c90d6dc86208",
    "commerceSyncId": "8d0a044e-b683-4fc9-bd0d-bfb2ca5731b7",
    "syncStatusCode": 1000,
    "syncStatus": "Started",
    "errorMessage": None,
    "syncExceptionMessage": None,
    "syncUtc": "2024-06-30T00:00:00Z",
    "dataConnections": [],
    "dataPushed": False,
}


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


SUMMARY_JSON = _compact(SUMMARY)
ERROR_429 = _compact(
    {"statusCode": 429, "service": "PublicApi", "error": "Too many requests", "canBeRetried": "Yes"}
)
ERROR_503 = _compact(
    {
        "statusCode": 503,
        "service": "PublicApi",
        "error": "Service unavailable",
        "canBeRetried": "Yes",
    }
)
