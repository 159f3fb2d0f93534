"""AsyncSyncClient against a scripted in-memory Codat: wire contract, errors, retries."""

from __future__ import annotations

import base64
import datetime as dt
import gc
import json
import logging
import re
import traceback
import uuid

import anyio
import pytest

from codat_commerce_async import (
    APIConnectionError,
    APIResponse,
    APIStatusError,
    APITimeoutError,
    AsyncSyncClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    SyncSummary,
    UnexpectedRedirectError,
    UnprocessableEntityError,
)
from codat_commerce_async.testing import ManualClock

from ._http import httpx
from .conftest import (
    BASE_URL,
    CANARY_KEY,
    COMPANY,
    SUMMARY,
    ScriptedCodat,
    error_body,
    virtual_clock,
)

pytestmark = pytest.mark.anyio

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
BASIC = "Basic " + base64.b64encode(CANARY_KEY.encode()).decode()


def resp(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        body = error_body(status) if status >= 400 else SUMMARY
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


# -- the wire contract -------------------------------------------------------


async def test_request_sync_wire_contract(
    client: AsyncSyncClient, codat: ScriptedCodat, http_library: str
) -> None:
    summary = await client.sync.request_sync(
        COMPANY.upper(), sync_to=dt.datetime(2024, 6, 30, tzinfo=dt.timezone.utc)
    )
    assert isinstance(summary, SyncSummary)
    assert summary.commerce_sync_id == SUMMARY["commerceSyncId"]
    (request,) = codat.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/companies/{COMPANY}/sync/commerce/latest"
    assert json.loads(request.content) == {"syncTo": "2024-06-30T00:00:00Z"}
    headers = request.headers
    assert headers["authorization"] == BASIC
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert UUID4.match(headers["idempotency-key"])
    ua = headers["user-agent"]
    # Differs by library: the User-Agent names the one the client runs on.
    assert ua.startswith("codat-commerce-async/") and "Python/" in ua
    assert f" {http_library}/" in ua


async def test_request_sync_without_sync_to(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    await client.sync.request_sync(COMPANY)
    assert "syncTo" not in codat.body()


async def test_date_range_wire_contract(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    await client.sync.request_sync_for_date_range(
        uuid.UUID(COMPANY), start=dt.date(2024, 1, 1), finish="2024-01-31T23:59:59Z"
    )
    (request,) = codat.requests
    assert request.method == "POST"
    assert request.url.path == f"/meta/companies/{COMPANY}/sync/commerce/historic"
    assert codat.body() == {
        "dateRange": {"start": "2024-01-01T00:00:00Z", "finish": "2024-01-31T23:59:59Z"}
    }
    assert UUID4.match(request.headers["idempotency-key"])


async def test_auth_header_and_default_headers_are_sent(codat: ScriptedCodat) -> None:
    async with AsyncSyncClient(
        auth_header="Basic QUJD",
        default_headers={"X-Team": "payments"},
        transport=httpx.MockTransport(codat),
    ) as client:
        await client.sync.request_sync(COMPANY)
    assert codat.requests[0].headers["authorization"] == "Basic QUJD"
    assert codat.requests[0].headers["x-team"] == "payments"


async def test_status_endpoints(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    status = {"companyId": COMPANY, "syncId": str(uuid.uuid4()), "syncStatusCode": 2000}
    codat.then(resp(200, status), resp(200, status), resp(200, status), resp(200, [status]))
    sync_id = status["syncId"]
    assert (await client.sync.get_sync_status(COMPANY, sync_id)).succeeded
    assert (await client.sync.get_latest_sync(COMPANY)).is_terminal
    assert (await client.sync.get_last_successful_sync(COMPANY)).sync_status_code == 2000
    listed = await client.sync.list_syncs(COMPANY)
    assert [s.sync_id for s in listed] == [sync_id]
    paths = [r.url.path for r in codat.requests]
    base = f"/companies/{COMPANY}/sync/commerce/syncs"
    assert paths == [
        f"{base}/{sync_id}/status",
        f"{base}/latest/status",
        f"{base}/lastSuccessful/status",
        f"{base}/list/status",
    ]
    assert all(r.method == "GET" and "idempotency-key" not in r.headers for r in codat.requests)


@pytest.mark.parametrize(
    "bad", ["../../x", "a?b=1", "", " ", "x" * 10_000, "a/b", "%2e%2e", "\r\n"]
)
async def test_bad_company_ids_send_nothing(
    client: AsyncSyncClient, codat: ScriptedCodat, bad: str
) -> None:
    with pytest.raises(ValueError, match="company_id"):
        await client.sync.request_sync(bad)
    with pytest.raises(ValueError, match="company_id"):
        await client.sync.request_sync_for_date_range(bad, start="2024-01-01", finish="2024-01-02")
    assert codat.requests == []


async def test_bad_dates_and_keys_send_nothing(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    with pytest.raises(ValueError, match="naive"):
        await client.sync.request_sync(COMPANY, sync_to=dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="after finish"):
        await client.sync.request_sync_for_date_range(
            COMPANY, start="2024-02-01", finish="2024-01-01"
        )
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.sync.request_sync(COMPANY, idempotency_key="abc\r\nX: 1")
    assert codat.requests == []


EDGE_OF_THE_CALENDAR = [
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+03:00",
    dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=2))),
    dt.datetime(1, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=3))),
]


@pytest.mark.parametrize("edge", EDGE_OF_THE_CALENDAR, ids=str)
async def test_dates_outside_utcs_calendar_are_refused_before_sending(
    client: AsyncSyncClient, codat: ScriptedCodat, edge: object
) -> None:
    with pytest.raises(ValueError, match="sync_to is not a valid date"):
        await client.sync.request_sync(COMPANY, sync_to=edge)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finish is not a valid date"):
        await client.sync.request_sync_for_date_range(
            COMPANY,
            start="2024-01-01",
            finish=edge,  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="start is not a valid date"):
        await client.sync.request_sync_for_date_range(
            COMPANY,
            start=edge,  # type: ignore[arg-type]
            finish="2024-01-01",
        )
    assert codat.requests == []


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (500, InternalServerError),
    ],
)
async def test_each_status_maps_to_its_error_without_retry(
    client: AsyncSyncClient, codat: ScriptedCodat, status: int, cls: type[APIStatusError]
) -> None:
    codat.then(resp(status))
    with pytest.raises(cls) as info:
        await client.sync.request_sync(COMPANY)
    error = info.value
    assert error.status_code == status
    assert error.correlation_id == f"corr-{status}"
    assert error.error is not None and error.error.service == "PublicApi"
    assert error.idempotency_key == codat.keys[0]
    assert error.attempts == 1 and len(codat.requests) == 1
    assert error.response.status_code == status


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_retryable_statuses_exhaust_attempts(
    client: AsyncSyncClient, codat: ScriptedCodat, status: int
) -> None:
    codat.default = lambda request: resp(status)
    with pytest.raises(APIStatusError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.status_code == status
    assert info.value.attempts == 3 and len(codat.requests) == 3
    assert len(set(codat.keys)) == 1  # one key for every attempt


async def test_html_and_empty_error_bodies(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(resp(502, b"<html>bad gateway</html>"), resp(503, b""), resp(504, b"\xff"))
    with pytest.raises(InternalServerError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.status_code == 504 and info.value.error is None


async def test_redirects_are_never_followed(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(resp(302, b"", {"Location": "https://evil.example/steal"}))
    with pytest.raises(UnexpectedRedirectError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.status_code == 302
    assert [r.url.host for r in codat.requests] == ["api.codat.io"]


async def test_invalid_success_body_is_not_retried_and_keeps_the_body(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.then(resp(200, b"<html>surprise</html>"))
    with pytest.raises(ResponseValidationError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.body == b"<html>surprise</html>"
    assert info.value.idempotency_key == codat.keys[0]
    assert len(codat.requests) == 1


async def test_response_size_cap(codat: ScriptedCodat) -> None:
    codat.then(resp(200, {**SUMMARY, "padding": "x" * 5000}))
    async with AsyncSyncClient(
        api_key=CANARY_KEY, max_response_size=1000, transport=httpx.MockTransport(codat)
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.sync.request_sync(COMPANY)
    assert len(codat.requests) == 1


# -- retries -----------------------------------------------------------------


async def test_same_key_on_every_attempt_and_new_key_per_call(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.then(resp(503), httpx.ConnectError("refused"), resp(200))
    await client.sync.request_sync(COMPANY)
    first = codat.keys
    assert len(first) == 3 and len(set(first)) == 1
    await client.sync.request_sync(COMPANY)
    assert codat.keys[3] != first[0]
    bodies = {r.content for r in codat.requests[:3]}
    assert len(bodies) == 1  # identical body with the key, or Codat would answer 422


async def test_caller_key_is_sent_verbatim_on_every_attempt(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    key = str(uuid.uuid4()).upper()
    codat.then(resp(502), resp(200))
    raw = await client.sync.with_raw_response.request_sync(COMPANY, idempotency_key=key)
    assert codat.keys == [key, key]
    assert raw.idempotency_key == key and raw.attempts == 2


@pytest.mark.parametrize(
    "failure",
    [
        resp(408),
        resp(429),
        resp(502),
        resp(503),
        resp(504),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.WriteTimeout("slow write"),
        httpx.PoolTimeout("pool"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_retried_outcomes_then_success(
    client: AsyncSyncClient, codat: ScriptedCodat, failure: httpx.Response | Exception
) -> None:
    codat.then(failure, resp(200))
    summary = await client.sync.request_sync(COMPANY)
    assert summary.company_id == COMPANY
    assert len(codat.requests) == 2 and len(set(codat.keys)) == 1


async def test_connection_errors_exhausted_raise_api_connection_error(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.then(httpx.ReadError("reset"), httpx.ReadError("reset"), httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.attempts == 3 and info.value.phase == "read"
    assert info.value.idempotency_key == codat.keys[0]
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_connect_refused_says_nothing_was_sent(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.request_sent is False and info.value.attempts == 3


async def test_409_is_retried_only_on_a_retry(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.then(resp(503), resp(409), resp(200))
    await client.sync.request_sync(COMPANY)
    assert len(codat.requests) == 3


async def test_can_be_retried_false_wins(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(resp(503, error_body(503, canBeRetried="False")))
    with pytest.raises(InternalServerError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.can_be_retried is False and len(codat.requests) == 1


async def test_500_is_retried_for_reads_only(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(resp(500), resp(200, {"syncStatusCode": 2000}))
    assert (await client.sync.get_latest_sync(COMPANY)).succeeded
    assert len(codat.requests) == 2


async def test_backoff_waits_are_full_jitter(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.default = lambda request: resp(503)
    with pytest.raises(InternalServerError):
        await client.sync.request_sync(COMPANY)
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0


async def test_retry_after_seconds(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(resp(429, headers={"Retry-After": "3"}), resp(200))
    await client.sync.request_sync(COMPANY)
    assert 3.0 <= sum(clock.sleeps) <= 3.3


async def test_retry_after_http_date(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    codat.then(resp(429, headers={"Retry-After": header}), resp(200))
    await client.sync.request_sync(COMPANY)
    assert 8.0 <= sum(clock.sleeps) <= 11.1


async def test_garbage_retry_after_falls_back_to_backoff(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(resp(429, headers={"Retry-After": "soon-ish"}), resp(200))
    await client.sync.request_sync(COMPANY)
    assert len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.5


async def test_retry_after_zero_does_not_sleep(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(resp(429, headers={"Retry-After": "0"}), resp(200))
    await client.sync.request_sync(COMPANY)
    assert clock.sleeps == [0.0]


async def test_retry_after_above_the_cap_raises_at_once(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(resp(429, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimitError) as info:
        await client.sync.request_sync(COMPANY)
    assert info.value.retry_after == 120.0 and info.value.attempts == 1
    assert clock.sleeps == [] and len(codat.requests) == 1


async def test_retry_after_beyond_the_deadline_raises_at_once(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY, deadline=10, transport=httpx.MockTransport(codat), clock=clock
    ) as client:
        codat.then(resp(429, headers={"Retry-After": "30"}))
        with pytest.raises(RateLimitError) as info:
            await client.sync.request_sync(COMPANY)
    assert info.value.retry_after == 30.0 and clock.sleeps == []


async def test_deadline_covers_attempts_and_sleeps(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        deadline=5,
        max_retries=10,
        transport=httpx.MockTransport(codat),
        clock=clock,
    ) as client:
        codat.default = lambda request: resp(503, headers={"Retry-After": "2"})
        with pytest.raises(InternalServerError) as info:
            await client.sync.request_sync(COMPANY)
    # 2 s + 2 s fit in 5 s; a third wait would not.
    assert info.value.attempts == 3 and len(clock.sleeps) == 2
    assert clock.now() - 1000.0 <= 5.0


async def test_per_call_and_with_options_overrides(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = lambda request: resp(503)
    with pytest.raises(InternalServerError):
        await client.sync.request_sync(COMPANY, max_retries=0)
    assert len(codat.requests) == 1
    more = client.with_options(max_retries=4)
    assert more.limits is client.limits  # one pool and one set of limits
    with pytest.raises(InternalServerError) as info:
        await more.sync.request_sync(COMPANY)
    assert info.value.attempts == 5
    assert client.max_retries == 2  # the original is unchanged


async def test_attempt_time_limit_bounds_a_hanging_attempt(codat: ScriptedCodat) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return resp(200)

    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        attempt_timeout=0.05,
        max_retries=1,
        transport=httpx.MockTransport(hang),
        clock=clock,
    ) as client:
        with anyio.fail_after(20):  # the handler sleeps 30 s: only an unbounded attempt gets here
            with pytest.raises(APITimeoutError) as info:
                await client.sync.request_sync(COMPANY)
    assert info.value.phase == "attempt" and info.value.attempts == 2


# -- cancellation ------------------------------------------------------------


async def test_cancellation_propagates_and_starts_no_new_attempt() -> None:
    seen: list[httpx.Request] = []
    reached = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reached.set()
        await anyio.sleep_forever()
        raise AssertionError

    async with AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(hang)) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.sync.request_sync, COMPANY)
            await reached.wait()  # mid-request, however slow the machine
            tg.cancel_scope.cancel()
        assert tg.cancel_scope.cancelled_caught
        await anyio.sleep(0.05)
        assert len(seen) == 1


async def test_cancel_during_backoff_stops_at_once(codat: ScriptedCodat) -> None:
    codat.default = lambda request: resp(503)
    sleeping = anyio.Event()

    class ParkingClock(ManualClock):
        async def sleep(self, seconds: float) -> None:
            sleeping.set()
            await anyio.sleep_forever()

    transport = httpx.MockTransport(codat)
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=transport, clock=ParkingClock()
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.sync.request_sync, COMPANY)
            await sleeping.wait()
            tg.cancel_scope.cancel()
        assert len(codat.requests) == 1


# -- limits ------------------------------------------------------------------


async def test_in_flight_requests_never_exceed_max_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.002)
        in_flight -= 1
        return resp(200)

    async with AsyncSyncClient(
        api_key=CANARY_KEY, max_concurrency=3, transport=httpx.MockTransport(handler)
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(client.sync.request_sync, str(uuid.uuid4()))
    assert peak == 3


async def test_a_429_gates_other_calls_of_the_client(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(resp(429, headers={"Retry-After": "4"}))
    with pytest.raises(RateLimitError):
        await client.sync.request_sync(COMPANY, max_retries=0)
    assert clock.sleeps == []
    await client.sync.request_sync(str(uuid.uuid4()))  # another company, same client
    assert clock.sleeps and 3.9 <= clock.sleeps[0] <= 4.0


# -- raw access, logging, secrets, lifecycle ---------------------------------


async def test_raw_response(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(resp(503), resp(200, SUMMARY, {"X-Rate-Limit-Remaining": "99"}))
    raw = await client.sync.with_raw_response.request_sync_for_date_range(
        COMPANY, start="2024-01-01", finish="2024-01-02"
    )
    assert isinstance(raw, APIResponse)
    assert raw.status_code == 200 and raw.attempts == 2
    assert raw.headers["x-rate-limit-remaining"] == "99" and raw.rate_limit_remaining == 99
    assert raw.idempotency_key == codat.keys[0]
    assert raw.parse().commerce_sync_id == SUMMARY["commerceSyncId"]
    assert raw.http_response.json()["companyId"] == COMPANY
    assert raw.elapsed.total_seconds() >= 0


async def test_debug_log_line_per_attempt_without_secrets(
    client: AsyncSyncClient, codat: ScriptedCodat, caplog: pytest.LogCaptureFixture
) -> None:
    codat.then(resp(503), resp(200))
    with caplog.at_level(logging.DEBUG, logger="codat_commerce_async"):
        await client.sync.request_sync(COMPANY)
    lines = [r.getMessage() for r in caplog.records if r.name == "codat_commerce_async"]
    path = f"/companies/{COMPANY}/sync/commerce/latest"
    assert f"POST {path} -> 503 (attempt 1)" in lines
    assert f"POST {path} -> 200 (attempt 2)" in lines
    assert any("retrying in" in line and "attempt 1 of 3" in line for line in lines)
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    for line in lines:
        assert CANARY_KEY not in line and encoded not in line


async def test_lower_layer_messages_with_the_key_are_withheld(codat: ScriptedCodat) -> None:
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    leak = httpx.LocalProtocolError(f"Illegal header value b'Basic {encoded}\\n'")
    codat.then(leak)
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat)) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sync.request_sync(COMPANY)
    text = "".join(traceback.format_exception(info.value))
    assert encoded not in text and CANARY_KEY not in text
    assert "withheld" in str(info.value)
    assert len(codat.requests) == 1  # a local protocol error is not retried


async def test_no_exception_chain_or_repr_contains_the_key(codat: ScriptedCodat) -> None:
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    failures: list[httpx.Response | Exception] = [
        resp(401),
        resp(500),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("t"),
        resp(200, b"not json"),
        resp(302, b"", {"Location": "https://x.example"}),
    ]
    async with AsyncSyncClient(
        api_key=CANARY_KEY, max_retries=0, transport=httpx.MockTransport(codat)
    ) as client:
        for failure in failures:
            codat.then(failure)
            with pytest.raises(Exception) as info:
                await client.sync.request_sync(COMPANY)
            text = "".join(traceback.format_exception(info.value)) + repr(info.value)
            assert CANARY_KEY not in text and encoded not in text


async def test_closed_client_refuses_calls(codat: ScriptedCodat) -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat))
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.sync.request_sync(COMPANY)


async def test_injected_http_client_is_never_closed(codat: ScriptedCodat) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(codat)) as http:
        async with AsyncSyncClient(api_key=CANARY_KEY, http_client=http) as client:
            await client.sync.request_sync(COMPANY)
        assert not http.is_closed
    assert codat.requests[0].headers["authorization"] == BASIC


async def test_injected_client_auth_and_redirects_are_overridden(codat: ScriptedCodat) -> None:
    codat.then(resp(307, b"", {"Location": "https://elsewhere.example/"}))
    async with (
        httpx.AsyncClient(
            transport=httpx.MockTransport(codat), auth=("user", "pw"), follow_redirects=True
        ) as http,
        AsyncSyncClient(api_key=CANARY_KEY, http_client=http) as client,
    ):
        with pytest.raises(UnexpectedRedirectError):
            await client.sync.request_sync(COMPANY)
    assert len(codat.requests) == 1
    assert codat.requests[0].headers["authorization"] == BASIC


@pytest.mark.asyncio_only
async def test_unclosed_client_warns_when_collected() -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY)
    with pytest.warns(ResourceWarning, match="without being closed"):
        del client
        gc.collect()


async def test_closed_or_borrowing_clients_do_not_warn(codat: ScriptedCodat) -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY)
    await client.aclose()
    async with httpx.AsyncClient() as http:
        borrowed = AsyncSyncClient(api_key=CANARY_KEY, http_client=http)
        copy = borrowed.with_options(max_retries=0)
        del client, borrowed, copy
        gc.collect()  # -W error turns any ResourceWarning into a failure


def test_client_is_bound_to_its_first_event_loop(codat: ScriptedCodat) -> None:
    import asyncio

    client = AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat))
    home = asyncio.new_event_loop()
    home.run_until_complete(client.sync.request_sync(COMPANY))
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(client.sync.request_sync(COMPANY))
    home.run_until_complete(client.aclose())  # closed on the loop that owns it
    home.close()


# -- event hooks -------------------------------------------------------------


async def test_event_hooks_fire_in_order_without_secrets(codat: ScriptedCodat) -> None:
    from codat_commerce_async import CallEvent

    events: list[CallEvent] = []
    codat.then(resp(503), resp(200))
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(codat),
        event_hooks=[events.append],
        clock=clock,
    ) as client:
        await client.sync.request_sync(COMPANY)
    kinds = [e.kind for e in events]
    assert kinds == [
        "request_sent",
        "response_received",
        "retry_scheduled",
        "request_sent",
        "response_received",
        "call_finished",
    ]
    assert [e.attempt for e in events] == [1, 1, 1, 2, 2, 2]
    assert events[2].status_code == 503 and events[2].wait is not None
    assert events[-1].status_code == 200 and events[-1].error is None
    assert {e.idempotency_key for e in events} == {codat.keys[0]}
    assert all(e.company_id == COMPANY and e.method == "POST" for e in events)
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    assert all(CANARY_KEY not in repr(e) and encoded not in repr(e) for e in events)


async def test_call_finished_carries_the_final_error(codat: ScriptedCodat) -> None:
    from codat_commerce_async import CallEvent

    events: list[CallEvent] = []
    codat.then(resp(404))
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=httpx.MockTransport(codat), event_hooks=[events.append]
    ) as client:
        with pytest.raises(NotFoundError):
            await client.sync.request_sync(COMPANY)
    assert events[-1].kind == "call_finished" and events[-1].status_code == 404
    assert isinstance(events[-1].error, NotFoundError)


def test_event_hooks_must_be_callable() -> None:
    from codat_commerce_async import ConfigurationError

    with pytest.raises(ConfigurationError):
        AsyncSyncClient(api_key=CANARY_KEY, event_hooks=["nope"])  # type: ignore[list-item]


async def test_codat_echoing_the_key_never_reaches_the_message(codat: ScriptedCodat) -> None:
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    codat.then(resp(401, error_body(401, f"bad header Basic {encoded} for key {CANARY_KEY}")))
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat)) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.sync.request_sync(COMPANY)
    text = "".join(traceback.format_exception(info.value))
    assert CANARY_KEY not in text and encoded not in text
    assert "<redacted>" in str(info.value)


async def test_a_cancelled_call_still_reports_call_finished() -> None:
    from codat_commerce_async import CallEvent

    events: list[CallEvent] = []
    reached = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        reached.set()
        await anyio.sleep_forever()
        raise AssertionError

    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=httpx.MockTransport(hang), event_hooks=[events.append]
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.sync.request_sync, COMPANY)
            await reached.wait()  # mid-request, however slow the machine
            tg.cancel_scope.cancel()
    assert [e.kind for e in events] == ["request_sent", "call_finished"]
    assert events[-1].error is not None


async def test_a_clock_of_your_own(codat: ScriptedCodat) -> None:
    from codat_commerce_async import ConfigurationError

    class Frozen:
        def __init__(self) -> None:
            self.slept: list[float] = []

        def now(self) -> float:
            return 0.0

        async def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)

        def random(self) -> float:
            return 0.5

    clock = Frozen()
    codat.then(resp(503), resp(200))
    transport = httpx.MockTransport(codat)
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=transport, clock=clock) as client:
        await client.sync.request_sync(COMPANY)
    assert clock.slept == [0.25]  # full jitter: U(0, 0.5) drawn at 0.5
    with pytest.raises(ConfigurationError, match="clock"):
        AsyncSyncClient(api_key=CANARY_KEY, clock=object())  # type: ignore[arg-type]
