"""``client.sync.get_status`` (get-sync-status) and per-call ``extra_headers=`` /
``with_options(default_headers=)``, against the fake Codat in-process."""

from __future__ import annotations

import uuid

import pytest

from codat_commerce_async import (
    APIResponse,
    AsyncSyncClient,
    ConfigurationError,
    NotFoundError,
    RetryPolicy,
    SyncClient,
    SyncStatus,
)
from codat_commerce_async.testing import FakeCodat, Fault

pytestmark = pytest.mark.anyio

NO_WAIT = RetryPolicy(backoff_base=0, backoff_cap=0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeCodat:
    return FakeCodat()


def client_on(fake: FakeCodat, **options: object) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        retry_policy=NO_WAIT,
        **options,  # type: ignore[arg-type]
    )


def status_path(company: str) -> str:
    return f"/meta/companies/{company}/sync/commerce/status"


async def test_get_status_reads_the_company_status(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    async with client_on(fake) as client:
        with pytest.raises(NotFoundError):
            await client.sync.get_status(company)  # no sync yet
        summary = await client.sync.request_sync(company)
        status = await client.sync.get_status(company)
        raw = await client.sync.with_raw_response.get_status(uuid.UUID(company))
    assert isinstance(status, SyncStatus)
    assert status.company_id == company
    assert status.commerce_sync_id == summary.commerce_sync_id
    assert status.succeeded  # the fake's syncs finish at once by default
    assert status.data_connections and status.data_connections[0].source_type == "Commerce"
    assert isinstance(raw, APIResponse) and raw.parsed == status
    assert [r.path for r in fake.requests if r.method == "GET"] == [status_path(company)] * 3


async def test_get_status_is_retried_like_a_get(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    async with client_on(fake) as client:
        await client.sync.request_sync(company)
        fake.faults.script(Fault.error(503), Fault.edge(502))
        raw = await client.sync.with_raw_response.get_status(company)
    assert raw.attempts == 3
    assert raw.idempotency_key is None
    gets = [r for r in fake.requests if r.operation == "get-sync-status"]
    assert sorted(r.status or 0 for r in gets) == [200, 502, 503]
    assert gets[-1].status == 200
    assert all(r.idempotency_key is None for r in gets)


async def test_get_status_validates_before_io(fake: FakeCodat) -> None:
    async with client_on(fake) as client:
        with pytest.raises(ValueError, match="company_id"):
            await client.sync.get_status("../companies")
    assert fake.requests == ()


def test_blocking_get_status(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        client.sync.request_sync(company)
        status = client.sync.get_status(company)
        raw = client.sync.with_raw_response.get_status(company)
    assert status.company_id == company
    assert raw.status_code == 200 and raw.parsed.company_id == company


# -- headers -------------------------------------------------------------------------------


async def test_extra_headers_reach_every_single_call(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    extra = {"X-Request-Source": "nightly"}
    async with client_on(fake, default_headers={"X-Team": "payments"}) as client:
        summary = await client.sync.request_sync(company, extra_headers=extra)
        await client.sync.request_sync_for_date_range(
            company, start="2026-01-01", finish="2026-01-02", extra_headers=extra
        )
        assert summary.commerce_sync_id is not None
        await client.sync.get_sync_status(company, summary.commerce_sync_id, extra_headers=extra)
        await client.sync.get_latest_sync(company, extra_headers=extra)
        await client.sync.get_last_successful_sync(company, extra_headers=extra)
        await client.sync.list_syncs(company, extra_headers=extra)
        await client.sync.get_status(company, extra_headers=extra)
        await client.sync.with_raw_response.list_syncs(company, extra_headers=extra)
        await client.sync.wait_for_sync(company, summary, poll_interval=0.01, extra_headers=extra)
        await client.sync.list_syncs(company)  # without: only the client's headers
    *with_extra, last = fake.requests
    assert len(with_extra) == 9
    for record in with_extra:
        assert record.header("x-request-source") == "nightly"
        assert record.header("x-team") == "payments"
    assert last.header("x-request-source") is None
    assert last.header("x-team") == "payments"


async def test_with_options_default_headers_merge_and_replace(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    async with client_on(fake, default_headers={"X-Team": "payments", "X-Env": "prod"}) as base:
        tagged = base.with_options(default_headers={"x-env": "staging", "X-Job": "42"})
        await tagged.sync.request_sync(company, extra_headers={"X-Job": "43"})
        await tagged.sync.list_syncs(company)
        await base.sync.list_syncs(company)
    first, second, third = fake.requests
    assert (first.header("x-team"), first.header("x-env"), first.header("x-job")) == (
        "payments",
        "staging",
        "43",
    )
    assert (second.header("x-env"), second.header("x-job")) == ("staging", "42")
    assert (third.header("x-env"), third.header("x-job")) == ("prod", None)


async def test_bulk_runs_send_extra_headers(fake: FakeCodat) -> None:
    companies = [str(uuid.uuid4()) for _ in range(3)]
    async with client_on(fake) as client:
        run = client.sync.request_sync_many(
            companies, wait=True, poll_interval=0.01, extra_headers={"X-Run": "r1"}
        )
        async with run as results:
            assert all([result.ok async for result in results])
        waits = client.sync.wait_for_many(companies, extra_headers={"X-Run": "r2"})
        async with waits as results:
            assert all([result.ok async for result in results])
    runs = [r.header("x-run") for r in fake.requests]
    assert runs.count("r1") >= 6 and runs.count("r2") == 3
    assert None not in runs


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic eA=="},
        {"idempotency-key": str(uuid.uuid4())},
        {"X-Bad": "a\r\nInjected: 1"},
        {"X-Bad": "caf\u00e9"},
        {"bad name": "x"},
        {"X-Number": 1},
        {"X-Pad": " leading"},
        {"X-Pad": "trailing "},
        {"X-Pad": " "},
        [("X-Job", "7")],
        "X-Job: 7",
    ],
    ids=[
        "authorization",
        "idempotency-key",
        "crlf",
        "non-ascii",
        "name",
        "not-a-string",
        "leading-space",
        "trailing-space",
        "only-space",
        "list-of-pairs",
        "a-string",
    ],
)
async def test_bad_headers_are_refused_before_any_io(fake: FakeCodat, headers: dict) -> None:
    company = str(uuid.uuid4())
    async with client_on(fake) as client:
        with pytest.raises(ConfigurationError):
            await client.sync.request_sync(company, extra_headers=headers)
        with pytest.raises(ConfigurationError):
            await client.sync.get_status(company, extra_headers=headers)
        with pytest.raises(ConfigurationError):
            client.sync.request_sync_many([company], extra_headers=headers)
        with pytest.raises(ConfigurationError):
            client.with_options(default_headers=headers)
    with pytest.raises(ConfigurationError):
        client_on(fake, default_headers=headers)  # the constructor's rule, the same
    assert fake.requests == ()


async def test_a_list_of_pairs_is_refused_with_the_fix(fake: FakeCodat) -> None:
    # httpx takes pairs to repeat a name; here headers replace the client's by name,
    # so the SDK asks for a dict instead of guessing what a repeat would mean.
    async with client_on(fake) as client:
        with pytest.raises(ConfigurationError, match=r"dict\(pairs\)"):
            await client.sync.request_sync(str(uuid.uuid4()), extra_headers=[("X-Job", "7")])
        await client.sync.request_sync(str(uuid.uuid4()), extra_headers={"X-Job": "7"})
    (sent,) = fake.requests
    assert sent.header("x-job") == "7"


async def test_inner_whitespace_and_empty_values_are_sent(fake: FakeCodat) -> None:
    async with client_on(fake, default_headers={"X-Note": "two words", "X-Empty": ""}) as client:
        await client.sync.request_sync(str(uuid.uuid4()))
    (sent,) = fake.requests
    assert (sent.header("x-note"), sent.header("x-empty")) == ("two words", "")


def test_blocking_with_options_default_headers(fake: FakeCodat) -> None:
    company = str(uuid.uuid4())
    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        client.with_options(default_headers={"X-Job": "7"}).sync.request_sync(company)
        client.sync.get_status(company, extra_headers={"X-Job": "8"})
        with pytest.raises(ConfigurationError):
            client.with_options(default_headers={"Authorization": "x"})
    assert [r.header("x-job") for r in fake.requests] == ["7", "8"]
