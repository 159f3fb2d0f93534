"""The wire protocol without I/O: validate inputs, build requests, read responses.

Every function here takes and returns plain values, so the whole contract with
Codat can be tested without HTTP (in the manner of gidgethub's ``sansio``).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import pydantic

from ._exceptions import APIStatusError, ResponseValidationError, make_status_error
from ._models import CompanySyncStatus, ErrorMessage, SyncStatus, SyncSummary
from ._types import CompanyId, DateInput

if TYPE_CHECKING:
    from ._types import Response

__all__ = [
    "Operation",
    "canonical_company_id",
    "date_range_payload",
    "format_datetime",
    "parse_error_body",
    "parse_success",
    "request_sync",
    "request_sync_for_date_range",
    "sync_to_payload",
    "trigger_historic",
    "trigger_latest",
    "validate_idempotency_key",
]

ModelT = TypeVar("ModelT")

_UUID_RE = re.compile(
    r"\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?"
)
_GUID_KEY_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _canonical_uuid(value: object, what: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and len(value) <= 38 and _UUID_RE.fullmatch(value):
        if value.startswith("{") != value.endswith("}"):
            raise ValueError(f"{what} must be a UUID, got {_preview(value)}")
        return str(uuid.UUID(value))
    raise ValueError(f"{what} must be a UUID (uuid.UUID or its string), got {_preview(value)}")


def canonical_company_id(company_id: CompanyId) -> str:
    """The canonical lower-case form of a company id, or ``ValueError``.

    Only UUIDs are accepted, so nothing a caller passes can change the URL's
    shape (``../x``, ``a?b=1`` and the like never reach the wire).
    """
    return _canonical_uuid(company_id, "company_id")


def canonical_sync_id(sync_id: CompanyId) -> str:
    """The canonical form of a sync id (a UUID), or ``ValueError``."""
    return _canonical_uuid(sync_id, "sync_id")


def validate_idempotency_key(key: str | uuid.UUID) -> str:
    """A caller's idempotency key: a UUID (Codat's rule: a GUID), sent verbatim."""
    if isinstance(key, uuid.UUID):
        return str(key)
    if isinstance(key, str) and _GUID_KEY_RE.fullmatch(key):
        return key
    raise ValueError(
        "idempotency_key must be a UUID such as str(uuid.uuid4()), got " + _preview(key)
    )


def new_idempotency_key() -> str:
    """A fresh key for one logical call (uuid4)."""
    return str(uuid.uuid4())


def _parse_iso(text: str, what: str) -> _dt.datetime | _dt.date:
    raw = text.strip()
    if len(raw) == 10:
        try:
            return _dt.date.fromisoformat(raw)
        except ValueError:
            pass
    candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        return _dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"{what} is not an ISO-8601 date or date-time: {_preview(text)}") from None


def to_utc(value: DateInput, what: str) -> _dt.datetime:
    """An aware UTC datetime from a datetime, date (midnight UTC) or ISO-8601 string.

    A naive datetime is rejected: guessing its zone would shift the sync window.
    """
    if isinstance(value, str):
        value = _parse_iso(value, what)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(
                f"{what} is a naive datetime; give it a time zone, e.g. "
                "datetime(..., tzinfo=timezone.utc), or pass a date"
            )
        try:
            return value.astimezone(_dt.timezone.utc)
        except OverflowError:
            # 9999-12-31T23:59-01:00 is a valid datetime, but not in UTC (nor in a payload).
            raise ValueError(
                f"{what} is not a valid date: {value.isoformat()} falls outside the years "
                "1 to 9999 in UTC"
            ) from None
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc)
    raise ValueError(f"{what} must be a datetime, date or ISO-8601 string, got {_preview(value)}")


def format_datetime(moment: _dt.datetime) -> str:
    """ISO-8601 in UTC ending in ``Z``, as Codat documents it."""
    utc = moment.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    # isoformat, not strftime: "%Y" drops the leading zeros of years before 1000.
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


@dataclass(frozen=True, slots=True)
class Operation(Generic[ModelT]):
    """One call, ready to send: everything but the transport-level details."""

    method: str
    path: str
    body: bytes | None
    model: type[ModelT]
    company_id: str
    #: True for GETs. POSTs start syncs, so they carry an ``Idempotency-Key`` and
    #: are retried only where that key makes a retry safe.
    idempotent: bool


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sync_to_payload(sync_to: DateInput | None) -> bytes:
    """The body of ``request_sync``: ``{"syncTo": ...}`` when given; ``ValueError`` for
    a date that is not one (validated once, before any company is touched)."""
    body: dict[str, str] = {}
    if sync_to is not None:
        body["syncTo"] = format_datetime(to_utc(sync_to, "sync_to"))
    return _dumps(body)


def date_range_payload(start: DateInput, finish: DateInput) -> bytes:
    """The body of ``request_sync_for_date_range``: ``{"dateRange": {...}}``;
    ``ValueError`` for a bad date or ``start`` after ``finish``."""
    start_utc = to_utc(start, "start")
    finish_utc = to_utc(finish, "finish")
    if start_utc > finish_utc:
        raise ValueError(
            f"start ({format_datetime(start_utc)}) is after finish ({format_datetime(finish_utc)})"
        )
    window = {"start": format_datetime(start_utc), "finish": format_datetime(finish_utc)}
    return _dumps({"dateRange": window})


def trigger_latest(company_id: CompanyId, payload: bytes) -> Operation[SyncSummary]:
    """``POST /companies/{id}/sync/commerce/latest`` with a :func:`sync_to_payload`."""
    return _trigger("/companies/{}/sync/commerce/latest", canonical_company_id(company_id), payload)


def trigger_historic(company_id: CompanyId, payload: bytes) -> Operation[SyncSummary]:
    """``POST /meta/companies/{id}/sync/commerce/historic`` with a :func:`date_range_payload`."""
    company = canonical_company_id(company_id)
    return _trigger("/meta/companies/{}/sync/commerce/historic", company, payload)


def _trigger(path: str, company: str, payload: bytes) -> Operation[SyncSummary]:
    return Operation(
        method="POST",
        path=path.format(company),
        body=payload,
        model=SyncSummary,
        company_id=company,
        idempotent=False,
    )


def request_sync(company_id: CompanyId, sync_to: DateInput | None) -> Operation[SyncSummary]:
    """``POST /companies/{id}/sync/commerce/latest`` with ``{"syncTo": ...}`` when given."""
    company = canonical_company_id(company_id)
    return _trigger("/companies/{}/sync/commerce/latest", company, sync_to_payload(sync_to))


def request_sync_for_date_range(
    company_id: CompanyId, start: DateInput, finish: DateInput
) -> Operation[SyncSummary]:
    """``POST /meta/companies/{id}/sync/commerce/historic`` with ``{"dateRange": {...}}``."""
    company = canonical_company_id(company_id)
    payload = date_range_payload(start, finish)
    return _trigger("/meta/companies/{}/sync/commerce/historic", company, payload)


def _read(path: str, company: str, model: type[ModelT]) -> Operation[ModelT]:
    return Operation(
        method="GET",
        path=path.format(company),
        body=None,
        model=model,
        company_id=company,
        idempotent=True,
    )


def sync_status(company_id: CompanyId, which: str) -> Operation[CompanySyncStatus]:
    """``GET /companies/{id}/sync/commerce/syncs/{which}/status``.

    ``which`` is a sync id, ``latest`` or ``lastSuccessful``.
    """
    company = canonical_company_id(company_id)
    if which not in ("latest", "lastSuccessful"):
        which = canonical_sync_id(which)
    path = "/companies/{}/sync/commerce/syncs/" + which + "/status"
    return _read(path, company, CompanySyncStatus)


def list_syncs(company_id: CompanyId) -> Operation[list[CompanySyncStatus]]:
    """``GET /companies/{id}/sync/commerce/syncs/list/status`` (a JSON array)."""
    company = canonical_company_id(company_id)
    return _read("/companies/{}/sync/commerce/syncs/list/status", company, list[CompanySyncStatus])


def company_sync_status(company_id: CompanyId) -> Operation[SyncStatus]:
    """``GET /meta/companies/{id}/sync/commerce/status`` (``get-sync-status``)."""
    company = canonical_company_id(company_id)
    return _read("/meta/companies/{}/sync/commerce/status", company, SyncStatus)


_ADAPTERS: dict[object, pydantic.TypeAdapter[object]] = {}


def _validate(model: type[ModelT], body: bytes) -> ModelT:
    validate = getattr(model, "model_validate_json", None)
    if validate is not None:
        result: ModelT = validate(body)
        return result
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = pydantic.TypeAdapter(model)
    return adapter.validate_json(body)  # type: ignore[return-value]


def parse_success(
    model: type[ModelT],
    response: Response,
    body: bytes,
    *,
    idempotency_key: str | None,
    attempts: int,
) -> ModelT:
    """Validate a success body straight from bytes, or raise ResponseValidationError."""
    try:
        return _validate(model, body)
    except (pydantic.ValidationError, ValueError, RecursionError) as exc:
        name = getattr(model, "__name__", str(model))
        raise ResponseValidationError(
            f"Codat answered {response.status_code} but the body is not a valid {name}: "
            f"{_summarise_validation(exc)}",
            response=response,
            body=body,
            idempotency_key=idempotency_key,
            attempts=attempts,
        ) from None


def _summarise_validation(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors(include_url=False, include_input=False)[:1]
        if first:
            loc = ".".join(str(part) for part in first[0]["loc"]) or "body"
            return f"{loc}: {first[0]['msg']}"
    return type(exc).__name__


def parse_error_body(body: bytes) -> ErrorMessage | None:
    """Codat's ErrorMessage from an error body, or None for HTML, empty or odd bodies."""
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        return ErrorMessage.model_validate_json(body)
    except (pydantic.ValidationError, ValueError, RecursionError):
        return None


def error_for_response(
    response: Response,
    body: bytes,
    *,
    idempotency_key: str | None,
    attempts: int,
    secrets: Sequence[str] = (),
) -> APIStatusError:
    """The typed error for a non-2xx response (credentials scrubbed from its message)."""
    return make_status_error(
        response,
        body,
        parse_error_body(body),
        idempotency_key=idempotency_key,
        attempts=attempts,
        secrets=secrets,
    )
