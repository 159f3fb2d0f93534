"""Wire-level helpers: responses, Codat ``ErrorMessage`` bodies, dates and ids."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any

__all__ = [
    "JSON_CONTENT_TYPE",
    "Response",
    "ValidationItem",
    "canonical_uuid",
    "error_response",
    "format_retry_after",
    "format_timestamp",
    "html_response",
    "http_date",
    "json_response",
    "parse_timestamp",
]

# What Codat's ASP.NET front end sends; clients must accept the charset parameter.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Response:
    """A complete HTTP response as the fake sends it."""

    status: int
    headers: Headers = ()
    body: bytes = b""

    def with_headers(self, extra: Iterable[tuple[str, str]]) -> Response:
        """Return a copy whose headers named in ``extra`` are replaced by ``extra``."""
        extra = tuple(extra)
        names = {name.lower() for name, _ in extra}
        kept = tuple((n, v) for n, v in self.headers if n.lower() not in names)
        return Response(self.status, kept + extra, self.body)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)


@dataclass(frozen=True)
class ValidationItem:
    """One entry of ``ErrorMessage.validation.errors``."""

    item_id: str
    message: str
    validator_name: str

    def to_json(self) -> dict[str, str]:
        return {
            "itemId": self.item_id,
            "message": self.message,
            "validatorName": self.validator_name,
        }


def json_response(status: int, payload: Any, headers: Headers = ()) -> Response:
    """A JSON response with Codat's content type."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Response(status, (("content-type", JSON_CONTENT_TYPE), *headers), body)


def error_response(
    status: int,
    error: str,
    *,
    validation: Sequence[ValidationItem] = (),
    service: str = "PublicApi",
    can_be_retried: str = "Unknown",
    detailed_error_code: int = 0,
    headers: Headers = (),
) -> Response:
    """A Codat ``ErrorMessage`` JSON response with a fresh ``correlationId``."""
    payload: dict[str, Any] = {
        "statusCode": status,
        "service": service,
        "error": error,
        # Codat's correlation ids are 32 hex digits (a uuid without dashes).
        "correlationId": uuid.uuid4().hex,
        "validation": (
            {"errors": [item.to_json() for item in validation], "warnings": []}
            if validation
            else None
        ),
        "canBeRetried": can_be_retried,
        "detailedErrorCode": detailed_error_code,
    }
    return json_response(status, payload, headers)


def html_response(status: int, headers: Headers = ()) -> Response:
    """A gateway-style HTML error page, as a load balancer would send it."""
    reason = _reason(status)
    page = (
        f"<html><head><title>{status} {reason}</title></head>"
        f"<body><center><h1>{status} {reason}</h1></center><hr></body></html>"
    )
    return Response(status, (("content-type", HTML_CONTENT_TYPE), *headers), page.encode())


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def canonical_uuid(value: str) -> str | None:
    """Lower-case hyphenated form of ``value`` if it is a hyphenated UUID, else None."""
    if _UUID.fullmatch(value) is None:
        return None
    return str(uuid.UUID(value))


# Codat's DateTime: a date, optionally a time (seconds and fraction optional), optionally a
# zone. Unqualified times are "local to the business"; the fake reads them as UTC.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(value: str) -> datetime | None:
    """Parse a Codat ISO-8601 DateTime into an aware UTC datetime, or None if invalid."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if zone[0] == "-":
            offset = -offset
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micros,
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        return None


def format_timestamp(moment: datetime) -> str:
    """Format as Codat does: UTC, ``Z`` suffix, fraction only when there is one."""
    moment = moment.astimezone(timezone.utc)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(moment.astimezone(timezone.utc).replace(microsecond=0), usegmt=True)


def format_retry_after(value: float | str) -> str:
    """Render ``Retry-After``: whole seconds as an integer, strings verbatim.

    Fractions are kept (``"0.05"``) so fast tests need not wait whole seconds; strings let
    tests send HTTP-dates or garbage on purpose.
    """
    if isinstance(value, str):
        return value
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(float(value))


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """All values of header ``name`` (lower-case bytes) from raw ASGI headers."""
    return [v.decode("latin-1") for n, v in headers if n.lower() == name]
