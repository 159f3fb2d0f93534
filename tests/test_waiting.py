"""Sync statuses and waiting: terminal detection, the poll schedule, the 404 fallback,
the timeout error, and the same against the fake Codat and through the blocking facade."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    CodatError,
    CompanySyncStatus,
    NotFoundError,
    SyncClient,
    SyncState,
    SyncSummary,
    SyncWaitTimeoutError,
)
from codat_commerce_async._waiting import POLL_BACKOFF
from codat_commerce_async.testing import FakeCodat, ManualClock

from ._http import httpx
from .conftest import COMPANY, SUMMARY, ScriptedCodat, error_body

SYNC = "8d0a044e-b683-4fc9-bd0d-bfb2ca5731b7"


def status(code: int, sync_id: str = SYNC, **extra: Any) -> httpx.Response:
    body = {"companyId": COMPANY, "syncId": sync_id, "syncStatusCode": code, **extra}
    return httpx.Response(200, json=body)


def paths(codat: ScriptedCodat) -> list[str]:
    return [r.url.path.rsplit("/syncs/", 1)[1] for r in codat.requests]


@pytest.mark.parametrize(
    ("code", "state", "terminal"),
    [
        (1000, SyncState.IN_PROGRESS, False),
        (1010, SyncState.IN_PROGRESS, False),
        (2000, SyncState.SUCCEEDED, True),
        (2040, SyncState.SUCCEEDED, True),
        (4000, SyncState.FAILED, True),
        (5080, SyncState.FAILED, True),
        (3000, None, False),
        (None, None, False),
    ],
)
def test_status_models_classify_codes(code: int | None, state: Any, terminal: bool) -> None:
    for model in (CompanySyncStatus, SyncSummary):
        item = model.model_validate({"syncStatusCode": code})
        assert item.state is state
        assert item.is_terminal is terminal
        assert item.succeeded is (state is SyncState.SUCCEEDED)
        assert item.failed is (state is SyncState.FAILED)


@pytest.mark.anyio
async def test_polls_by_id_until_terminal(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(status(1000), status(1010), status(2000, syncStatus="Complete"))
    final = await client.sync.wait_for_sync(COMPANY, SYNC)
    assert final.succeeded
    assert final.sync_status == "Complete"
    assert paths(codat) == [f"{SYNC}/status"] * 3
    assert all(r.method == "GET" for r in codat.requests)


@pytest.mark.anyio
async def test_a_failed_sync_is_terminal_too(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(status(1000), status(5080, errorMessage="Duplication protection"))
    final = await client.sync.wait_for_sync(COMPANY, SYNC)
    assert final.failed
    assert final.error_message == "Duplication protection"


@pytest.mark.anyio
async def test_interval_grows_with_equal_jitter_up_to_the_cap(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.then(*[status(1000)] * 8, status(2000))
    await client.sync.wait_for_sync(COMPANY, SYNC, poll_interval=2.0, max_poll_interval=10.0)
    ceilings = [2.0, 3.0, 4.5, 6.75, 10.0, 10.0, 10.0, 10.0]
    assert 2.0 * POLL_BACKOFF == 3.0
    assert len(clock.sleeps) == len(ceilings)
    for slept, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    ratios = {round(s / c, 6) for s, c in zip(clock.sleeps, ceilings, strict=True)}
    assert len(ratios) > 1  # jittered, not a fixed fraction


@pytest.mark.anyio
async def test_the_schedule_comes_from_the_clients_randomness(codat: ScriptedCodat) -> None:
    runs = []
    for _ in range(2):
        codat.requests.clear()
        codat.then(*[status(1000)] * 3, status(2000))
        clock = ManualClock(1000.0, seed=7)
        transport = httpx.MockTransport(codat)
        async with AsyncSyncClient(api_key="k" * 8, transport=transport, clock=clock) as client:
            await client.sync.wait_for_sync(COMPANY, SYNC)
            runs.append(clock.sleeps)
    assert runs[0] == runs[1]


@pytest.mark.anyio
async def test_no_sync_id_polls_the_latest(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(status(1000), status(2000))
    await client.sync.wait_for_sync(COMPANY)
    assert paths(codat) == ["latest/status"] * 2


@pytest.mark.anyio
async def test_404_on_the_id_falls_back_to_latest_for_the_rest_of_the_wait(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.then(
        httpx.Response(404, json=error_body(404, "No sync was found")),
        status(1000, sync_id=str(uuid.uuid4())),
        status(1000),
        status(2000),
    )
    final = await client.sync.wait_for_sync(COMPANY, SYNC)
    assert final.succeeded
    assert paths(codat) == [f"{SYNC}/status"] + ["latest/status"] * 3


@pytest.mark.anyio
async def test_404_on_latest_too_is_raised(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.then(*[httpx.Response(404, json=error_body(404))] * 2)
    with pytest.raises(NotFoundError):
        await client.sync.wait_for_sync(COMPANY, SYNC)
    assert len(codat.requests) == 2


@pytest.mark.anyio
async def test_timeout_carries_the_last_status(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    codat.default = lambda request: status(1000, syncStatus="InProgress")
    started = clock()
    with pytest.raises(SyncWaitTimeoutError) as caught:
        await client.sync.wait_for_sync(COMPANY, SYNC, poll_interval=2, timeout=30)
    err = caught.value
    assert isinstance(err, CodatError)
    assert isinstance(err, TimeoutError)
    assert err.company_id == COMPANY
    assert err.sync_id == SYNC
    assert err.timeout == 30
    assert err.last_status is not None
    assert err.last_status.sync_status_code == 1000
    assert "1000 InProgress" in str(err)
    assert "30 s" in str(err)
    assert clock() - started == pytest.approx(30.0)  # the last sleep is cut to the deadline


@pytest.mark.anyio
async def test_a_summary_in_progress_waits_before_the_first_poll(
    client: AsyncSyncClient, codat: ScriptedCodat, clock: ManualClock
) -> None:
    summary = SyncSummary.model_validate(SUMMARY)
    codat.then(status(2000, sync_id=SUMMARY["commerceSyncId"]))
    final = await client.sync.wait_for_sync(COMPANY, summary, poll_interval=4)
    assert final.succeeded
    assert len(clock.sleeps) == 1
    assert 2 <= clock.sleeps[0] <= 4
    assert paths(codat) == [f"{SUMMARY['commerceSyncId']}/status"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": 0},
        {"poll_interval": -1},
        {"poll_interval": float("nan")},
        {"poll_interval": 10, "max_poll_interval": 5},
        {"timeout": -1},
    ],
)
async def test_bad_settings_fail_before_any_io(
    client: AsyncSyncClient, codat: ScriptedCodat, kwargs: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        await client.sync.wait_for_sync(COMPANY, SYNC, **kwargs)
    with pytest.raises(ValueError, match="sync_id"):
        await client.sync.wait_for_sync(COMPANY, "../x")
    assert codat.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("lookup", [True, False])
async def test_against_the_fake_with_either_kind_of_sync_id(lookup: bool) -> None:
    fake = FakeCodat(sync_duration=0.15, sync_id_lookup=lookup)
    company = str(uuid.uuid4())
    async with AsyncSyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        summary = await client.sync.request_sync(company)
        final = await client.sync.wait_for_sync(
            company, summary, poll_interval=0.04, max_poll_interval=0.08, timeout=5
        )
    assert final.succeeded
    by_id = [r for r in fake.requests if r.operation == "get-sync-by-id"]
    latest = [r for r in fake.requests if r.operation == "get-latest-sync"]
    if lookup:
        assert latest == []
        assert by_id[-1].status == 200
    else:
        assert [r.status for r in by_id] == [404]  # tried once, then remembered
        assert len(latest) >= 1


def test_blocking_facade_waits_too() -> None:
    fake = FakeCodat(sync_duration=0.1)
    company = str(uuid.uuid4())
    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        summary = client.sync.request_sync(company)
        final = client.sync.wait_for_sync(company, summary, poll_interval=0.03, timeout=5)
        assert final.succeeded
        fake.set_outcome(company, 4000, duration=60)
        client.sync.request_sync(company)
        with pytest.raises(SyncWaitTimeoutError) as caught:
            client.sync.wait_for_sync(company, poll_interval=0.02, timeout=0.1)
    assert caught.value.last_status is not None
    assert caught.value.last_status.is_in_progress
