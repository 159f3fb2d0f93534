"""Matrix rows 7-17: rate limits, error statuses, conflicts and the Idempotency-Key,
against the fake Codat served on a loopback port (its ledger counts the syncs),
through the async client and the blocking facade."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from email.utils import format_datetime
from typing import Any

import anyio
import pytest

from codat_commerce_async import (
    AuthenticationError,
    BadRequestError,
    CallEvent,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    UnprocessableEntityError,
)
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from .._http import httpx
from ..conftest import CANARY_KEY, new_company
from ._harness import FAST, eventually, fake_records, open_api, raises

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]


def _keys(fake: FakeCodat, company: str) -> list[str | None]:
    return [r.idempotency_key for r in fake_records(fake, company)]


# -- row 7: 429 with Retry-After -----------------------------------------------------------


async def test_row07_retry_after_seconds_is_waited_with_the_same_key(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.rate_limited(0.2), times=2, company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        started = time.monotonic()
        raw = await api.raw_request_sync(company)
        elapsed = time.monotonic() - started
    assert raw.attempts == 3 and elapsed >= 0.4
    waits = [e.wait for e in api.kinds("retry_scheduled")]
    assert all(w is not None and 0.2 <= w <= 0.2 + 0.02 for w in waits), waits  # RA + <=10%
    assert len(set(_keys(fake, company))) == 1
    assert fake.syncs_started(company) == 1


async def test_row07_retry_after_http_date(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    now = dt.datetime.now(dt.timezone.utc)
    past = format_datetime(now - dt.timedelta(hours=1), usegmt=True)
    fake.faults.script(Fault.rate_limited(past), company_id=company)
    if mode == "async":  # the detail (a real wait on a date) once; the facade: a past date
        soon = format_datetime(now + dt.timedelta(seconds=1.2), usegmt=True)
        fake.faults.script(Fault.rate_limited(soon), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(company)
    waits = [e.wait or 0.0 for e in api.kinds("retry_scheduled")]
    assert waits[0] == 0.0  # a date in the past: retry at once
    if mode == "async":
        assert 0.1 <= waits[1] <= 1.2 * 1.1  # whole-second dates: 0.2-1.2 s, plus jitter
    assert raw.attempts == len(waits) + 1 and fake.syncs_started(company) == 1


async def test_row07_exhausted_429s_raise_rate_limit_error(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.rate_limited(0.05), times=3, company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(RateLimitError, api.request_sync(company))
    assert exc.attempts == 3 and exc.retry_after == 0.05
    assert len(set(_keys(fake, company))) == 1 and fake.syncs_started(company) == 0


async def test_row07_a_429_gates_every_call_of_the_client(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    """Calls started after the 429 *and calls already queued for a connection* wait."""
    first = new_company()
    fake.faults.script(Fault.rate_limited(0.5), company_id=first)
    fake.faults.randomly(Fault.latency(0.01), 1.0)
    seen_429: list[float] = []
    sent: list[tuple[float, str | None]] = []

    def on_event(event: CallEvent) -> None:
        if event.kind == "response_received" and event.status_code == 429:
            seen_429.append(time.monotonic())
        elif event.kind == "request_sent":
            sent.append((time.monotonic(), event.company_id))

    async with open_api(
        mode, base_url=fake_server.base_url, max_concurrency=2, event_hooks=[on_event]
    ) as api:
        others = [new_company() for _ in range(30)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(api.request_sync, first)
            await anyio.sleep(0.002)
            for company in others:  # queued behind the in-flight cap when the 429 lands
                tg.start_soon(api.request_sync, company)
    assert len(seen_429) == 1
    # Judged where the SDK decides to send, on one clock: a busy server thread that reads
    # a request sent before the 429 late cannot make it look sent during the gate.
    gate_from, gate_to = seen_429[0], seen_429[0] + 0.5 - 0.02
    mine = {first, *others}
    during = [t for t, company in sent if company in mine and gate_from < t < gate_to]
    assert during == [], f"{len(during)} requests were sent while the client was told to wait"
    assert sum(fake.syncs_started(company) for company in mine) == 31


# -- row 8: odd Retry-After values --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "backoff"),
    [
        ("inf", True),
        ("nan", True),
        ("1e999", True),
        ("-5", True),
        ("soon", True),
        ("", True),
        ("Sat, 01 Jan 100000 00:00:00 GMT", True),  # year 100000: not a date
        ("Wed, 21 Oct 2015 07:28:00 GMT", False),  # in the past: no wait at all
    ],
)
async def test_row08_invalid_retry_after_falls_back_to_backoff(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, header: str, backoff: bool
) -> None:
    company = new_company()
    fake.faults.script(Fault.rate_limited(header), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(company)
    (wait,) = [e.wait for e in api.kinds("retry_scheduled")]
    assert wait is not None
    assert (0 <= wait <= FAST.backoff_base) if backoff else wait == 0.0
    assert raw.attempts == 2


@pytest.mark.parametrize(
    ("header", "options"),
    [
        ("120", {}),  # above RetryPolicy.max_retry_after (5 s here, 60 s by default)
        ("5", {"deadline": 3.0}),  # beyond what is left of the call's deadline
    ],
)
async def test_row08_retry_after_too_long_raises_at_once(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, header: str, options: dict[str, Any]
) -> None:
    company = new_company()
    fake.faults.script(Fault.rate_limited(header), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url, **options) as api:
        started = time.monotonic()
        exc = await raises(RateLimitError, api.request_sync(company))
        elapsed = time.monotonic() - started
    # At once (~10 ms): waiting would take at least the 5 s cap or the 3 s deadline.
    assert exc.attempts == 1 and exc.retry_after == float(header) and elapsed < 2.5
    assert api.kinds("retry_scheduled") == []


async def test_row08_default_cap_is_sixty_seconds(
    fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.rate_limited("61"), company_id=company)
    async with open_api("async", base_url=fake_server.base_url, retry_policy=RetryPolicy()) as api:
        exc = await raises(RateLimitError, api.request_sync(company))
    assert exc.attempts == 1 and exc.retry_after == 61


# -- rows 10-11: 5xx ------------------------------------------------------------------------


async def test_row10_500_with_codat_error_is_not_retried(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.fail_after_sync(500), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(InternalServerError, api.request_sync(company))
        # Why not retry: Codat stores the 500 under the key and replays it.
        again = await raises(
            InternalServerError, api.request_sync(company, idempotency_key=exc.idempotency_key)
        )
    assert exc.status_code == 500 and exc.attempts == 1
    assert exc.correlation_id and len(exc.correlation_id) == 32
    assert exc.error is not None and "internal server error" in exc.error.error.lower()
    assert exc.can_be_retried is None  # Codat's "Unknown"
    assert b"correlationId" in exc.body
    assert again.correlation_id == exc.correlation_id  # the replay, not a new attempt
    assert fake.syncs_started(company) == 1  # the sync did start: check its status


@pytest.mark.parametrize(("status", "body"), [(502, "html"), (503, "empty"), (504, "json")])
async def test_row11_gateway_errors_are_retried_with_the_same_key(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, status: int, body: str
) -> None:
    company = new_company()
    fake.faults.script(Fault.edge(status, body=body), times=2, company_id=company)  # type: ignore[arg-type]
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(company)
    assert raw.attempts == 3
    assert len(set(_keys(fake, company))) == 1 and fake.syncs_started(company) == 1


async def test_row11_persistent_gateway_error_raises_with_no_parsed_body(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.edge(503, body="html"), times=3, company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(InternalServerError, api.request_sync(company))
    assert exc.status_code == 503 and exc.attempts == 3 and exc.error is None
    assert exc.body.lstrip().startswith(b"<")
    assert fake.syncs_started(company) == 0


async def test_row11_gateway_timeout_after_the_sync_started_never_duplicates(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    # A 504 produced after the sync started is stored under the key: retries replay it.
    company = new_company()
    fake.faults.script(Fault.fail_after_sync(504), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(InternalServerError, api.request_sync(company))
    assert exc.attempts == 3 and fake.syncs_started(company) == 1
    assert [r.replayed for r in fake_records(fake, company)] == [False, True, True]


# -- rows 12-14: 409 and 422 ----------------------------------------------------------------


async def test_row12_409_on_the_first_attempt_is_not_retried(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(
        Fault.error(409, message="A sync is already in progress."), company_id=company
    )
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(ConflictError, api.request_sync(company))
    assert exc.attempts == 1 and exc.error is not None and "in progress" in exc.error.error
    assert len(fake_records(fake, company)) == 1 and fake.syncs_started(company) == 0


async def test_row13_409_on_a_retry_waits_for_the_replay(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    # Attempt 1 holds the key at Codat for 0.4 s; our read timeout (0.1 s) fires first,
    # and every retry meanwhile is told 409 "still in progress" until the replay comes.
    company = new_company()
    fake.faults.script(Fault.latency(0.4, stage="before_sync"), company_id=company)
    async with open_api(
        mode,
        base_url=fake_server.base_url,
        timeout=httpx.Timeout(2.0, read=0.1),
        max_retries=10,
        retry_policy=RetryPolicy(backoff_base=0.1, backoff_cap=0.2),
    ) as api:
        raw = await api.raw_request_sync(company)
    statuses = [r.status for r in fake_records(fake, company)]
    assert 409 in statuses and statuses[-1] == 200
    assert fake.syncs_started(company) == 1 and raw.attempts == len(statuses)
    assert len(set(_keys(fake, company))) == 1


async def test_row13_409_until_attempts_run_out_keeps_the_key_for_later(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.latency(0.5, stage="before_sync"), company_id=company)
    # With a deadline a key in progress is waited out until it passes (tests/test_same_key.py);
    # without one, max_retries bounds the wait.
    async with open_api(
        mode, base_url=fake_server.base_url, timeout=httpx.Timeout(2.0, read=0.1), deadline=None
    ) as api:
        exc = await raises(ConflictError, api.request_sync(company))
        assert exc.attempts == 3 and exc.idempotency_key
        # "Later": once the first attempt is done inside Codat (its 0.5 s, or more if busy).
        assert await eventually(
            lambda: fake.in_flight(company) == 0 and fake.syncs_started(company) == 1
        )
        raw = await api.raw_request_sync(company, idempotency_key=exc.idempotency_key)
    assert raw.attempts == 1 and fake_records(fake, company)[-1].replayed
    assert fake.syncs_started(company) == 1


async def test_row14_422_same_key_different_body_is_never_retried(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company, key = new_company(), str(uuid.uuid4())
    async with open_api(mode, base_url=fake_server.base_url) as api:
        await api.request_sync(company, idempotency_key=key, sync_to="2024-01-01")
        exc = await raises(
            UnprocessableEntityError,
            api.request_sync(company, idempotency_key=key, sync_to="2024-02-01"),
        )
    assert exc.attempts == 1 and exc.idempotency_key == key
    assert fake.syncs_started(company) == 1


# -- rows 15-16: client errors and canBeRetried ------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
    ],
)
async def test_row15_client_errors_are_never_retried(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, status: int, cls: type[Exception]
) -> None:
    company = new_company()
    fake.faults.script(Fault.error(status), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(cls, api.request_sync(company))
    assert exc.status_code == status and exc.attempts == 1
    assert len(fake_records(fake, company)) == 1


async def test_row15_401_names_no_key_material(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.api_key = "another-key-entirely"
    try:
        async with open_api(mode, base_url=fake_server.base_url) as api:
            exc = await raises(AuthenticationError, api.request_sync(company))
    finally:
        fake.api_key = CANARY_KEY
    assert exc.attempts == 1 and len(fake_records(fake, company)) == 1
    assert CANARY_KEY not in str(exc) + repr(exc)  # (the canary scan checks all forms)


async def test_row15_404_unknown_company(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = fake.mark_unknown(new_company())
    async with open_api(mode, base_url=fake_server.base_url) as api:
        exc = await raises(NotFoundError, api.request_sync(company))
    assert exc.attempts == 1 and company in exc.error.error


@pytest.mark.parametrize(
    ("status", "hint", "attempts"),
    [
        (503, "False", 1),  # the server's hint wins over our retry rule
        (429, "False", 1),
        (503, "True", 2),
        (500, "True", 1),  # a 500 is replayed for the key: "True" cannot make a retry useful
    ],
)
async def test_row16_can_be_retried_hint(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, status: int, hint: str, attempts: int
) -> None:
    company = new_company()
    fake.faults.script(Fault.error(status, stage="edge", can_be_retried=hint), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        if attempts == 1:
            exc = await raises(Exception, api.request_sync(company))
            assert exc.status_code == status and exc.attempts == 1
        else:
            raw = await api.raw_request_sync(company)
            assert raw.attempts == attempts
    assert len(fake_records(fake, company)) == attempts


# -- row 17: the key ------------------------------------------------------------------------


async def test_row17_one_key_per_call_on_every_attempt(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    first, second = new_company(), new_company()
    fake.faults.script(Fault.edge(503), times=2, company_id=first)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(first)
        other = await api.raw_request_sync(second)
    keys = _keys(fake, first)
    assert raw.attempts == 3 and keys == [raw.idempotency_key] * 3
    assert uuid.UUID(keys[0]).version == 4 and str(uuid.UUID(keys[0])) == keys[0]
    assert _keys(fake, second) == [other.idempotency_key] != [raw.idempotency_key]


@pytest.mark.parametrize("as_uuid", [False, True])
async def test_row17_a_callers_key_is_sent_verbatim(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, as_uuid: bool
) -> None:
    company = new_company()
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"nightly-job:{company}:2024-06-30")
    fake.faults.script(Fault.drop(), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(company, idempotency_key=key if as_uuid else str(key))
    assert _keys(fake, company) == [str(key)] * 2 and raw.idempotency_key == str(key)
    assert fake.syncs_started(company) == 1
