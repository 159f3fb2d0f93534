"""The wire protocol without HTTP: inputs validated, requests built, bodies read."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from codat_commerce_async import (
    ErrorMessage,
    ResponseValidationError,
    SyncState,
    SyncSummary,
    _protocol,
)
from codat_commerce_async._protocol import (
    canonical_company_id,
    format_datetime,
    list_syncs,
    parse_error_body,
    parse_success,
    request_sync,
    request_sync_for_date_range,
    sync_status,
    to_utc,
    validate_idempotency_key,
)

from ._http import httpx
from .conftest import COMPANY, SUMMARY

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (COMPANY, COMPANY),
        (COMPANY.upper(), COMPANY),
        ("{" + COMPANY + "}", COMPANY),
        (COMPANY.replace("-", ""), COMPANY),
        (uuid.UUID(COMPANY), COMPANY),
    ],
)
def test_company_id_is_canonicalised(given: object, expected: str) -> None:
    assert canonical_company_id(given) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        "../../x",
        "a/b",
        "x?admin=1",
        "x#f",
        "a?b=1",
        "%2e%2e",
        "",
        " ",
        "é",
        "\r\n",
        " " + COMPANY,
        COMPANY + "\n",
        COMPANY + "/../x",
        "{" + COMPANY,
        "urn:uuid:" + COMPANY,
        COMPANY.replace("-", "_"),
        "x" * 10_000,
        None,
        123,
        b"8a210b68-6988-11ed-a1eb-0242ac120002",
    ],
)
def test_bad_company_ids_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="company_id must be a UUID") as info:
        canonical_company_id(bad)  # type: ignore[arg-type]
    assert len(str(info.value)) < 200  # a 10 KB input is not echoed back


def test_request_sync_builds_the_documented_request() -> None:
    op = request_sync(COMPANY.upper(), dt.datetime(2024, 6, 30, tzinfo=UTC))
    assert op.method == "POST"
    assert op.path == f"/companies/{COMPANY}/sync/commerce/latest"
    assert json.loads(op.body or b"") == {"syncTo": "2024-06-30T00:00:00Z"}
    assert op.model is SyncSummary
    assert not op.idempotent


def test_request_sync_without_sync_to_sends_no_sync_to() -> None:
    op = request_sync(COMPANY, None)
    assert json.loads(op.body or b"") == {}


def test_date_range_uses_the_date_range_wrapper() -> None:
    op = request_sync_for_date_range(COMPANY, "2024-01-01", "2024-01-31T12:30:00+02:00")
    assert op.path == f"/meta/companies/{COMPANY}/sync/commerce/historic"
    assert json.loads(op.body or b"") == {
        "dateRange": {"start": "2024-01-01T00:00:00Z", "finish": "2024-01-31T10:30:00Z"}
    }


def test_start_after_finish_is_rejected() -> None:
    with pytest.raises(ValueError, match="after finish"):
        request_sync_for_date_range(COMPANY, "2024-02-01", "2024-01-01")


def test_equal_start_and_finish_is_allowed() -> None:
    op = request_sync_for_date_range(COMPANY, "2022-10-23T00:00:00.000Z", "2022-10-23")
    assert json.loads(op.body or b"")["dateRange"]["start"] == "2022-10-23T00:00:00Z"


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        (dt.datetime(2024, 6, 30, tzinfo=UTC), "2024-06-30T00:00:00Z"),
        (dt.datetime(2024, 6, 30, 1, 2, 3, 456000, tzinfo=UTC), "2024-06-30T01:02:03.456000Z"),
        (
            dt.datetime(2024, 6, 30, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-06-30T00:00:00Z",
        ),
        (dt.date(2024, 6, 30), "2024-06-30T00:00:00Z"),
        ("2024-06-30", "2024-06-30T00:00:00Z"),
        ("2024-06-30T00:00:00Z", "2024-06-30T00:00:00Z"),
        ("2022-10-23T00:00:00.000Z", "2022-10-23T00:00:00Z"),
        ("2024-06-30T05:00:00-05:00", "2024-06-30T10:00:00Z"),
        # The calendar's edges, with four-digit years.
        (dt.date(1, 1, 1), "0001-01-01T00:00:00Z"),
        ("0001-01-01T03:00:00+03:00", "0001-01-01T00:00:00Z"),
        ("0999-06-30T00:00:00.5Z", "0999-06-30T00:00:00.500000Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T22:59:59-01:00", "9999-12-31T23:59:59Z"),
    ],
)
def test_dates_go_on_the_wire_as_utc_z(given: object, wire: str) -> None:
    assert format_datetime(to_utc(given, "sync_to")) == wire  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [dt.datetime(2024, 6, 30), "2024-06-30T00:00:00", "yesterday", "", 20240630, None],
)
def test_naive_or_unparsable_dates_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="sync_to"):
        to_utc(bad, "sync_to")  # type: ignore[arg-type]


def test_naive_datetime_error_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        request_sync(COMPANY, dt.datetime(2024, 6, 30))


# Fixed values: parametrize ids must be the same in every process that collects them.
KEY_A, KEY_B = "3f2b8c1e-5d4a-4e7b-9c6f-0a1b2c3d4e5f", "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.mark.parametrize("key", [KEY_A, KEY_B.upper(), uuid.UUID(KEY_B)])
def test_idempotency_keys_accepted_verbatim(key: object) -> None:
    assert validate_idempotency_key(key) == str(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", "abc", "x\r\nInjected: 1", KEY_A + "\n", "{" + COMPANY + "}", 5]
)
def test_bad_idempotency_keys_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        validate_idempotency_key(bad)  # type: ignore[arg-type]


def test_status_operations() -> None:
    assert sync_status(COMPANY, "latest").path == (
        f"/companies/{COMPANY}/sync/commerce/syncs/latest/status"
    )
    assert sync_status(COMPANY, "lastSuccessful").method == "GET"
    sync_id = str(uuid.uuid4())
    assert sync_status(COMPANY, sync_id.upper()).path.endswith(f"/syncs/{sync_id}/status")
    assert list_syncs(COMPANY).path.endswith("/syncs/list/status")
    with pytest.raises(ValueError, match="sync_id"):
        sync_status(COMPANY, "../list")


def _response(status: int, body: bytes) -> httpx.Response:
    return httpx.Response(status, content=body, request=httpx.Request("POST", "https://x"))


def test_summary_parses_snake_case_and_keeps_unknown_fields() -> None:
    body = json.dumps({**SUMMARY, "brandNewField": {"a": 1}}).encode()
    summary = parse_success(
        SyncSummary, _response(200, body), body, idempotency_key="k", attempts=1
    )
    assert summary.commerce_sync_id == SUMMARY["commerceSyncId"]
    assert summary.sync_date_range_utc is not None
    assert summary.sync_date_range_utc.finish == "2024-06-30T00:00:00Z"
    assert summary.model_extra == {"brandNewField": {"a": 1}}
    assert summary.state is SyncState.IN_PROGRESS and summary.is_in_progress
    assert summary.to_wire()["commerceSyncId"] == SUMMARY["commerceSyncId"]


def test_summary_fields_are_all_optional_and_nullable() -> None:
    body = b'{"syncStatus": null, "dataConnections": null, "errorMessage": null}'
    summary = parse_success(
        SyncSummary, _response(200, body), body, idempotency_key=None, attempts=1
    )
    assert summary.company_id is None and summary.data_connections is None


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (1000, "in_progress"),
        (1010, "in_progress"),
        (2000, "succeeded"),
        (2040, "succeeded"),
        (4000, "failed"),
        (5080, "failed"),
        (None, None),
        (3000, None),
    ],
)
def test_sync_state_from_code(code: int | None, state: str | None) -> None:
    result = SyncState.from_code(code)
    assert (result.value if result else None) == state


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"<html>oops</html>",
        b"[1,2]",
        b'{"syncStatusCode": "many"}',
        b"[" * 100_000,
        b'{"syncStatusCode": ' + b"9" * 5000 + b"}",
        b"\xff\xfe",
        b"NaN",
    ],
)
def test_bad_success_bodies_raise_validation_error_keeping_the_body(body: bytes) -> None:
    with pytest.raises(ResponseValidationError) as info:
        parse_success(SyncSummary, _response(200, body), body, idempotency_key="key-1", attempts=2)
    assert info.value.body == body
    assert info.value.idempotency_key == "key-1"
    assert info.value.attempts == 2
    assert info.value.status_code == 200


def test_error_body_parsing_is_lenient() -> None:
    full = json.dumps(
        {
            "statusCode": 400,
            "service": "PublicApi",
            "error": "bad",
            "correlationId": "c1",
            "validation": {
                "errors": [{"itemId": "x", "message": "m", "validatorName": "v"}],
                "warnings": None,
            },
            "canBeRetried": "False",
            "detailedErrorCode": 0,
        }
    ).encode()
    error = parse_error_body(full)
    assert isinstance(error, ErrorMessage)
    assert error.correlation_id == "c1" and error.can_be_retried == "False"
    assert error.validation is not None and error.validation.errors is not None
    assert error.validation.errors[0].validator_name == "v"
    assert parse_error_body(b'{"statusCode": 404, "error": "nope"}') is not None
    for junk in (b"", b"<html></html>", b"null", b"[]", b'{"statusCode": "x"}', b"{" * 5000):
        assert parse_error_body(junk) is None


def test_date_window_and_sync_to_are_validated_on_their_own() -> None:
    body = json.loads(_protocol.date_range_payload("2024-06-01", "2024-06-30"))
    assert body == {
        "dateRange": {"start": "2024-06-01T00:00:00Z", "finish": "2024-06-30T00:00:00Z"}
    }
    with pytest.raises(ValueError, match="after finish"):
        _protocol.date_range_payload("2024-07-01", "2024-06-30")
    assert json.loads(_protocol.sync_to_payload(None)) == {}
    with pytest.raises(ValueError, match="naive"):
        _protocol.sync_to_payload(dt.datetime(2024, 6, 30))
