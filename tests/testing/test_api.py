"""Endpoints, auth, validation, 404/405 and the sync lifecycle of the fake Codat."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from codat_commerce_async.testing import FakeCodat, FakeTransport, ManualClock

from .._http import httpx
from .conftest import RANGE, START, client_for, historic, latest, status

pytestmark = pytest.mark.anyio

JSON = "application/json; charset=utf-8"


def assert_error(response: httpx.Response, status_code: int) -> dict[str, Any]:
    assert response.status_code == status_code
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert body["statusCode"] == status_code
    assert isinstance(body["canBeRetried"], str)
    assert isinstance(body["detailedErrorCode"], int)
    assert isinstance(body["error"], str)
    assert body["error"]
    assert len(body["correlationId"]) == 32
    assert set(body) == {
        "statusCode",
        "service",
        "error",
        "correlationId",
        "validation",
        "canBeRetried",
        "detailedErrorCode",
    }
    return dict(body)


def validation_items(response: httpx.Response) -> list[tuple[str, str]]:
    body = assert_error(response, 400)
    return [(e["itemId"], e["validatorName"]) for e in body["validation"]["errors"]]


# ---------------------------------------------------------------------------------- POSTs


async def test_request_sync_returns_a_started_summary(fake, http, company):
    response = await http.post(latest(company))

    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    summary = response.json()
    assert summary["companyId"] == company
    assert uuid.UUID(summary["commerceSyncId"]).version == 4
    assert summary["syncStatusCode"] == 1000
    assert summary["syncStatus"] == "Started"
    assert summary["dataPushed"] is False
    assert summary["errorMessage"] is None
    assert summary["syncUtc"] == "2026-04-15T12:00:00Z"
    # Never synced: from the configuration start date up to now.
    assert summary["syncDateRangeUtc"] == {
        "start": "2026-03-16T12:00:00Z",
        "finish": "2026-04-15T12:00:00Z",
    }
    (connection,) = summary["dataConnections"]
    assert connection["status"] == "Linked"
    assert connection["sourceType"] == "Commerce"
    assert company in connection["linkUrl"]
    assert fake.syncs_started(company) == 1


@pytest.mark.parametrize(
    ("content", "finish"),
    [
        (None, "2026-04-15T12:00:00Z"),
        (b"", "2026-04-15T12:00:00Z"),
        (b'{"syncTo": null}', "2026-04-15T12:00:00Z"),
        (b'{"syncTo": "2026-04-01T00:00:00Z"}', "2026-04-01T00:00:00Z"),
        (b'{"syncTo": "2026-04-01T01:30:00+01:30"}', "2026-04-01T00:00:00Z"),
        (b'{"syncTo": "2026-04-01T00:00:00.250Z"}', "2026-04-01T00:00:00.250000Z"),
        (b'{"syncTo": "2026-04-01"}', "2026-04-01T00:00:00Z"),
        (b'{"syncTo": "2026-04-01T00:00:00", "extra": 1}', "2026-04-01T00:00:00Z"),
    ],
)
async def test_request_sync_body_forms(http, company, content, finish):
    response = await http.post(latest(company), content=content)

    assert response.status_code == 200, response.text
    assert response.json()["syncDateRangeUtc"]["finish"] == finish


async def test_next_latest_sync_starts_where_the_last_success_ended(fake, http, clock, company):
    first = await http.post(latest(company), json={"syncTo": "2026-04-10T00:00:00Z"})
    assert first.status_code == 200
    clock.advance(5)

    second = (await http.post(latest(company))).json()

    assert second["syncDateRangeUtc"] == {
        "start": "2026-04-10T00:00:00Z",
        "finish": "2026-04-15T12:00:05Z",
    }
    assert second["dataConnections"][0]["lastSync"] == "2026-04-15T12:00:00Z"


async def test_a_sync_after_one_up_to_the_calendars_end_has_an_empty_window(http, company):
    end = "9999-12-31T23:59:59.999999Z"
    first = await http.post(latest(company), json={"syncTo": end})
    assert first.json()["syncDateRangeUtc"] == {"start": "2026-03-16T12:00:00Z", "finish": end}
    second = await http.post(latest(company))  # "now" is before the last sync's end
    assert second.json()["syncDateRangeUtc"] == {"start": end, "finish": end}


async def test_request_sync_for_date_range(fake, http, company):
    response = await http.post(
        historic(company),
        json={"dateRange": {"start": "2026-01-01", "finish": "2026-01-31T23:00:00-01:00"}},
    )

    assert response.status_code == 200
    summary = response.json()
    assert summary["syncDateRangeUtc"] == {
        "start": "2026-01-01T00:00:00Z",
        "finish": "2026-02-01T00:00:00Z",
    }
    assert summary["syncStatusCode"] == 1000
    (sync,) = fake.syncs
    assert sync.operation == "request-sync-for-date-range"
    assert sync.commerce_sync_id == summary["commerceSyncId"]


async def test_equal_start_and_finish_is_accepted(http, company):
    moment = "2022-10-23T00:00:00.000Z"
    response = await http.post(
        historic(company), json={"dateRange": {"start": moment, "finish": moment}}
    )
    assert response.status_code == 200


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("endpoint", "content", "expected"),
    [
        ("latest", b"{", [("$", "Json")]),
        ("latest", b"\xff\xfe", [("$", "Json")]),
        ("latest", b"[]", [("$", "Type")]),
        ("latest", b"null", [("$", "Type")]),  # SyncToLatestArgs is an object, not nullable
        ("latest", b'{"syncTo": "9999-12-31T23:59:59-01:00"}', [("syncTo", "DateTime")]),
        ("latest", b'{"syncTo": "0001-01-01T00:00:00+03:00"}', [("syncTo", "DateTime")]),
        ("latest", b'"2026-01-01"', [("$", "Type")]),
        ("latest", b'{"syncTo": 5}', [("syncTo", "Type")]),
        ("latest", b'{"syncTo": "yesterday"}', [("syncTo", "DateTime")]),
        ("latest", b'{"syncTo": "2026-02-30T00:00:00Z"}', [("syncTo", "DateTime")]),
        ("historic", None, [("dateRange", "Required")]),
        ("historic", b"{}", [("dateRange", "Required")]),
        ("historic", b"not json", [("$", "Json")]),
        ("historic", b"null", [("$", "Type")]),
        (
            "historic",
            b'{"dateRange": {"start": "0001-01-01T00:00:00+03:00", '
            b'"finish": "9999-12-31T23:59:59-01:00"}}',
            [("dateRange.start", "DateTime"), ("dateRange.finish", "DateTime")],
        ),
        ("historic", b'{"dateRange": null}', [("dateRange", "Required")]),
        ("historic", b'{"dateRange": "2026"}', [("dateRange", "Type")]),
        (
            "historic",
            b'{"dateRange": {}}',
            [("dateRange.start", "Required"), ("dateRange.finish", "Required")],
        ),
        ("historic", b'{"dateRange": {"start": "2026-01-01"}}', [("dateRange.finish", "Required")]),
        (
            "historic",
            b'{"dateRange": {"start": 1, "finish": "soon"}}',
            [("dateRange.start", "Type"), ("dateRange.finish", "DateTime")],
        ),
        (
            "historic",
            b'{"dateRange": {"start": "2026-02-01", "finish": "2026-01-01"}}',
            [("dateRange", "DateRange")],
        ),
        # The flat body of the buggy 0.8.5 spec must not be accepted.
        (
            "historic",
            b'{"start": "2026-01-01", "finish": "2026-02-01"}',
            [("dateRange", "Required")],
        ),
    ],
)
async def test_invalid_bodies_get_400_with_validation_items(
    fake, http, company, endpoint, content, expected
):
    url = latest(company) if endpoint == "latest" else historic(company)

    response = await http.post(url, content=content, headers={"content-type": "application/json"})

    assert validation_items(response) == expected
    assert fake.syncs_started() == 0


# ----------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic ",
        "Basic fake-api-key",  # not base64-encoded
        "Basic d3Jvbmcta2V5",  # base64("wrong-key")
        "Bearer ZmFrZS1hcGkta2V5",
        "ZmFrZS1hcGkta2V5",
    ],
)
async def test_missing_or_wrong_authorization_gets_401(fake, company, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    async with client_for(fake, auth=False) as http:
        response = await http.post(latest(company), headers=headers)

    body = assert_error(response, 401)
    assert body["error"] == "Unauthorized"
    assert fake.syncs_started() == 0


async def test_valid_authorization_forms(fake, company):
    assert fake.auth_header == "Basic ZmFrZS1hcGkta2V5"
    async with client_for(fake, auth=False) as http:
        for value in ("Basic ZmFrZS1hcGkta2V5", "basic ZmFrZS1hcGkta2V5"):
            response = await http.get(status(company, "list"), headers={"Authorization": value})
            assert response.status_code == 200


async def test_custom_api_key_and_accept_any_auth(company):
    fake = FakeCodat(api_key="s3cret")
    assert fake.auth_header == "Basic czNjcmV0"
    async with client_for(fake) as http:
        assert (await http.post(latest(company))).status_code == 200

    fake.accept_any_auth = True
    async with client_for(fake, auth=False) as http:
        ok = await http.post(latest(company), headers={"Authorization": "anything at all"})
        blank = await http.post(latest(company), headers={"Authorization": "  "})
        missing = await http.post(latest(company))
    assert ok.status_code == 200
    assert blank.status_code == 401
    assert missing.status_code == 401


# ------------------------------------------------------------------------ routes and ids


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/companies",
        "/companies/{c}/sync/commerce",
        "/companies/{c}/sync/commerce/latest/",
        "/companies/{c}/sync/commerce/historic",
        "/meta/companies/{c}/sync/commerce/latest",
        "/companies/{c}/sync/commerce/syncs/status",
        "/companies/{c}/sync/commerce/syncs/latest",
        "/meta/companies/{c}/sync/commerce/status/latest",  # get-sync-status has no suffix
    ],
)
async def test_unknown_paths_get_404_even_without_auth(fake, company, path):
    async with client_for(fake, auth=False) as http:
        for method in ("GET", "POST"):
            response = await http.request(method, path.format(c=company))
            assert_error(response, 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/companies/{c}/sync/commerce/latest", "POST"),
        ("PUT", "/meta/companies/{c}/sync/commerce/historic", "POST"),
        ("POST", "/companies/{c}/sync/commerce/syncs/latest/status", "GET"),
        ("DELETE", "/companies/{c}/sync/commerce/syncs/list/status", "GET"),
    ],
)
async def test_wrong_method_gets_405(http, company, method, path, allowed):
    response = await http.request(method, path.format(c=company))

    assert_error(response, 405)
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize(
    "company_id",
    [
        "not-a-uuid",
        "..%2F..%2Fx",
        "8a210b6869886911eda1eb0242ac120002",
        "%7B8a210b68-6988-11ed-a1eb-0242ac120002%7D",
        "8a210b68-6988-11ed-a1eb-0242ac12000",
        "8a210b68-6988-11ed-a1eb-0242ac120002%0D%0A",
    ],
)
async def test_malformed_company_ids_get_404(fake, company_id):
    async with client_for(fake) as http:
        for method, url in [
            ("POST", latest(company_id)),
            ("POST", historic(company_id)),
            ("GET", status(company_id, "latest")),
            ("GET", status(company_id, "list")),
        ]:
            response = await http.request(method, url, json=RANGE if "historic" in url else None)
            assert_error(response, 404)
    assert fake.syncs_started() == 0


async def test_malformed_sync_id_gets_404(http, company):
    assert_error(await http.get(status(company, "not-a-sync")), 404)


async def test_upper_case_company_id_is_canonicalised(fake, http, company):
    response = await http.post(latest(company.upper()))

    assert response.status_code == 200
    assert response.json()["companyId"] == company
    assert fake.syncs_started(company.upper()) == 1


async def test_strict_mode_only_knows_listed_companies(company):
    other = str(uuid.uuid4())
    fake = FakeCodat(companies=[company.upper()])
    async with client_for(fake) as http:
        assert (await http.post(latest(company))).status_code == 200
        body = assert_error(await http.post(latest(other)), 404)
        assert body["error"] == f"No company was found with ID {other}"
        assert body["service"] == "ClientsApi"
        assert_error(await http.get(status(other, "list")), 404)

        assert fake.add_company(other) == other
        assert (await http.post(latest(other))).status_code == 200


async def test_companies_marked_unknown_get_404_everywhere(fake, http, company):
    sync_id = (await http.post(latest(company))).json()["commerceSyncId"]
    fake.mark_unknown(company)

    for method, url in [
        ("POST", latest(company)),
        ("POST", historic(company)),
        ("GET", status(company, sync_id)),
        ("GET", status(company, "latest")),
        ("GET", status(company, "lastSuccessful")),
        ("GET", status(company, "list")),
    ]:
        response = await http.request(method, url, json=RANGE if "historic" in url else None)
        assert_error(response, 404)
    assert fake.syncs_started(company) == 1


async def test_company_id_arguments_are_validated(fake):
    with pytest.raises(ValueError, match="UUID"):
        fake.add_company("acme")
    with pytest.raises(ValueError, match="UUID"):
        FakeCodat(companies=["acme"])


# ------------------------------------------------------------------------------ lifecycle


async def test_sync_is_in_progress_until_the_duration_passed(fake, http, clock, company):
    fake.sync_duration = 30
    summary = (await http.post(latest(company))).json()
    sync_id = summary["commerceSyncId"]

    async def statuses() -> list[dict[str, Any]]:
        by_id = (await http.get(status(company, sync_id))).json()
        newest = (await http.get(status(company, "latest"))).json()
        listed = (await http.get(status(company, "list"))).json()
        assert by_id == newest == listed[0]
        return [by_id]

    (running,) = await statuses()
    assert running == {
        "companyId": company,
        "syncId": sync_id,
        "syncStatusCode": 1000,
        "syncStatus": "InProgress",
        "errorMessage": None,
        "syncExceptionMessage": None,
        "syncUtc": "2026-04-15T12:00:00Z",
        "dataPushed": False,
    }
    assert_error(await http.get(status(company, "lastSuccessful")), 404)

    clock.advance(29.999)
    assert (await statuses())[0]["syncStatusCode"] == 1000

    clock.advance(0.001)
    (done,) = await statuses()
    assert done["syncStatusCode"] == 2000
    assert done["syncStatus"] == "Complete"
    assert done["dataPushed"] is True
    assert (await http.get(status(company, "lastSuccessful"))).json() == done


async def test_default_duration_zero_completes_immediately(http, company):
    sync_id = (await http.post(latest(company))).json()["commerceSyncId"]
    assert (await http.get(status(company, sync_id))).json()["syncStatusCode"] == 2000


async def test_long_running_sync_reports_1010(fake, http, clock, company):
    fake.sync_duration = 3600
    await http.post(latest(company))
    clock.advance(600)
    assert (await http.get(status(company, "latest"))).json()["syncStatusCode"] == 1010


async def test_outcome_per_company_and_default(fake, http, clock, company):
    other = str(uuid.uuid4())
    fake.set_outcome(company, 4000, error_message="Mapping is not configured", duration=10)
    fake.set_outcome(None, 2040)

    await http.post(latest(company))
    await http.post(latest(other))
    clock.advance(10)

    failed = (await http.get(status(company, "latest"))).json()
    assert failed["syncStatusCode"] == 4000
    assert failed["syncStatus"] == "ValidateError"
    assert failed["errorMessage"] == "Mapping is not configured"
    assert failed["dataPushed"] is False
    assert_error(await http.get(status(company, "lastSuccessful")), 404)

    quiet = (await http.get(status(other, "lastSuccessful"))).json()
    assert quiet["syncStatusCode"] == 2040
    assert quiet["dataPushed"] is False


async def test_outcome_rejects_non_terminal_codes(fake):
    with pytest.raises(ValueError, match="terminal"):
        fake.set_outcome(None, 1000)


async def test_last_successful_skips_later_failures(fake, http, company):
    good = (await http.post(latest(company))).json()["commerceSyncId"]
    fake.set_outcome(company, 5130)
    await http.post(latest(company))

    assert (await http.get(status(company, "latest"))).json()["syncStatusCode"] == 5130
    assert (await http.get(status(company, "lastSuccessful"))).json()["syncId"] == good
    assert [s["syncStatusCode"] for s in (await http.get(status(company, "list"))).json()] == [
        2000,
        5130,
    ]


async def test_status_endpoints_without_syncs(http, company):
    assert (await http.get(status(company, "list"))).json() == []
    assert_error(await http.get(status(company, "latest")), 404)
    assert_error(await http.get(status(company, "lastSuccessful")), 404)
    assert_error(await http.get(status(company, str(uuid.uuid4()))), 404)


async def test_sync_of_another_company_is_not_found(http, company):
    sync_id = (await http.post(latest(company))).json()["commerceSyncId"]
    assert_error(await http.get(status(str(uuid.uuid4()), sync_id)), 404)


async def test_sync_id_lookup_can_be_disabled(company):
    fake = FakeCodat(sync_id_lookup=False)
    async with client_for(fake) as http:
        commerce_sync_id = (await http.post(latest(company))).json()["commerceSyncId"]

        assert_error(await http.get(status(company, commerce_sync_id)), 404)
        (listed,) = (await http.get(status(company, "list"))).json()
        assert listed["syncId"] != commerce_sync_id
        by_id = await http.get(status(company, listed["syncId"]))
    assert by_id.status_code == 200
    assert by_id.json() == listed
    (sync,) = fake.syncs
    assert (sync.sync_id, sync.commerce_sync_id) == (listed["syncId"], commerce_sync_id)


# ------------------------------------------------------------------- headers and records


async def test_every_response_carries_rate_limit_headers(fake, http, company):
    responses = [
        await http.post(latest(company)),
        await http.post(historic(company)),
        await http.get(status(company, "latest")),
        await http.get("/nowhere"),
        await http.delete(latest(company)),
    ]
    async with client_for(fake, auth=False) as anonymous:
        responses.append(await anonymous.post(latest(company)))

    assert [r.status_code for r in responses] == [200, 400, 200, 404, 405, 401]
    for response in responses:
        assert int(response.headers["x-rate-limit-limit"]) == 1000
        assert int(response.headers["x-rate-limit-remaining"]) >= 0
        reset = parsedate_to_datetime(response.headers["x-rate-limit-reset"])
        assert reset == START + timedelta(seconds=60)


async def test_requests_are_recorded_with_authorization_redacted(fake, http, clock, company):
    clock.advance(2.5)
    await http.post(latest(company), json={"syncTo": None}, headers={"Idempotency-Key": "k-1"})
    await http.get(status(company, "list"), headers={"X-Trace": "t"})

    first, second = fake.requests
    assert first.method == "POST"
    assert first.path == latest(company)
    assert first.operation == "request-sync"
    assert first.company_id == company
    assert first.json() == {"syncTo": None}
    assert first.idempotency_key == "k-1"
    assert first.status == 200
    assert first.received_at == 1002.5
    assert first.header("Authorization") == "[redacted]"
    assert all(value != fake.auth_header for _, value in first.headers)
    assert (first.replayed, first.dropped, first.faults) == (False, False, ())
    assert second.operation == "list-syncs"
    assert second.header("x-trace") == "t"
    assert second.body == b""
    assert second.idempotency_key is None


async def test_syncs_ledger_and_counts(fake, http, company):
    other = str(uuid.uuid4())
    await http.post(latest(company), headers={"Idempotency-Key": "a"})
    await http.post(historic(company), json=RANGE)
    await http.post(latest(other), headers={"Idempotency-Key": "b"})

    assert fake.syncs_started() == 3
    assert fake.syncs_started(company) == 2
    assert fake.syncs_started(other) == 1
    assert [(s.company_id, s.idempotency_key) for s in fake.syncs] == [
        (company, "a"),
        (company, None),
        (other, "b"),
    ]
    fake.assert_no_duplicate_syncs()


async def test_reset_forgets_everything(fake, http, company):
    await http.post(latest(company), headers={"Idempotency-Key": "a"})
    fake.reset()
    assert fake.requests == ()
    assert fake.syncs == ()
    again = await http.post(latest(company), headers={"Idempotency-Key": "a"})
    assert again.status_code == 200
    assert fake.syncs_started(company) == 1  # the key was forgotten too


async def test_client_helper_uses_the_fake_transport(fake, company, http_library):
    async with fake.client() as http:
        assert isinstance(http, httpx.AsyncClient)
        # Differs by library: FakeTransport is httpx's; on httpx2 it is its httpx2 twin.
        if http_library == "httpx":
            assert isinstance(http._transport, FakeTransport)
        else:
            assert isinstance(http._transport, httpx.AsyncBaseTransport)
            assert type(http._transport).__name__ == "FakeTransport"
        assert str(http.base_url) == "http://localhost"
        response = await http.post(latest(company))
    assert response.status_code == 200
    async with fake.client(authenticated=False) as http:
        assert (await http.post(latest(company))).status_code == 401


async def test_now_follows_the_clock():
    clock = ManualClock()
    fake = FakeCodat(clock=clock, start_time=START)
    clock.advance(90)
    assert fake.now() == START + timedelta(seconds=90)


# --------------------------------------------------------------------------- raw ASGI use


async def test_lifespan_and_early_disconnect():
    fake = FakeCodat()
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def lifespan_receive() -> Any:
        return next(lifespan)

    await fake({"type": "lifespan"}, lifespan_receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    sent.clear()

    async def gone() -> Any:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": latest(str(uuid.uuid4())), "headers": []}
    await fake(scope, gone, send)
    assert sent == []
    assert fake.requests == ()

    with pytest.raises(RuntimeError, match="HTTP only"):
        await fake({"type": "websocket"}, gone, send)
