"""The fake's control routes (``/_fake/ledger``, ``/_fake/reset``), ``get-sync-status``,
and the window of a ``syncTo`` earlier than the last successful sync."""

from __future__ import annotations

import uuid

import pytest

from codat_commerce_async.testing import FakeCodat, Fault, ManualClock, RateLimits

from .._http import httpx
from .conftest import latest

pytestmark = pytest.mark.anyio


async def test_sync_to_before_the_last_sync_gives_an_empty_window_never_an_inverted_one(
    fake: FakeCodat, http: httpx.AsyncClient, company: str, clock: ManualClock
) -> None:
    first = (await http.post(latest(company))).json()["syncDateRangeUtc"]
    clock.advance(3600)
    early = await http.post(latest(company), json={"syncTo": "2020-01-01T00:00:00Z"})
    assert early.status_code == 200
    window = early.json()["syncDateRangeUtc"]
    assert window["start"] == first["finish"]
    assert window["finish"] == window["start"]  # nothing new before the last sync
    later = await http.post(latest(company), json={"syncTo": "2099-01-01T00:00:00Z"})
    assert later.json()["syncDateRangeUtc"] == {
        "start": window["finish"],
        "finish": "2099-01-01T00:00:00Z",
    }
    assert fake.syncs_started(company) == 3
    for sync in fake.syncs:
        assert sync.start <= sync.finish


async def test_sync_to_before_the_configured_start_of_a_new_company(
    fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> None:
    response = await http.post(latest(company), json={"syncTo": "2022-10-23T00:00:00Z"})
    window = response.json()["syncDateRangeUtc"]
    assert response.status_code == 200
    assert window["start"] == window["finish"] == "2026-03-16T12:00:00Z"  # START - 30 days


async def test_get_sync_status_describes_the_latest_sync(
    fake: FakeCodat, http: httpx.AsyncClient, company: str, clock: ManualClock
) -> None:
    url = f"/meta/companies/{company}/sync/commerce/status"
    assert (await http.get(url)).status_code == 404
    fake.sync_duration = 10
    first = (await http.post(latest(company))).json()
    clock.advance(20)
    second = (await http.post(latest(company))).json()
    running = (await http.get(url)).json()
    assert running["commerceSyncId"] == running["syncId"] == second["commerceSyncId"]
    assert running["syncStatusCode"] == 1000
    assert running["dataConnections"][0]["lastSync"] == first["syncUtc"]
    clock.advance(20)
    done = (await http.get(url)).json()
    assert (done["syncStatusCode"], done["dataPushed"]) == (2000, True)
    assert (await http.post(url)).status_code == 405


async def test_ledger_and_reset_over_http(
    fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> None:
    key = str(uuid.uuid4())
    other = str(uuid.uuid4())
    await http.post(latest(company), headers={"Idempotency-Key": key})
    await http.post(latest(company), headers={"Idempotency-Key": key})  # replayed
    await http.get(f"/companies/{other}/sync/commerce/syncs/latest/status")  # 404
    await http.get("/nowhere")
    # Control routes are outside the API: no auth, no faults, no rate limits, no record.
    fake.faults.script(Fault.error(500))
    fake.rate_limits = RateLimits(requests_per_minute=1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url="http://localhost"
    ) as anonymous:
        seen = (await anonymous.get("/_fake/ledger")).json()
        assert seen == fake.ledger()
        assert seen == {
            "requests": 4,
            "requests_by_operation": {
                "request-sync": 2,
                "get-latest-sync": 1,
                "unmatched": 1,
            },
            "replayed": 1,
            "syncs_started": 1,
            "duplicate_idempotency_keys": [],
            "companies": {
                company: {
                    "requests": 2,
                    "syncs_started": 1,
                    "sync_ids": [fake.syncs[0].commerce_sync_id],
                    "idempotency_keys": [key],
                },
                other: {"requests": 1, "syncs_started": 0, "sync_ids": [], "idempotency_keys": []},
            },
        }
        assert (await anonymous.post("/_fake/ledger")).status_code == 405
        assert fake.faults.pending == 1  # the scripted 500 is still waiting for an API call
        assert (await anonymous.post("/_fake/reset")).json() == {
            "reset": True,
            "forgot": {
                "requests": 4,
                "syncs": 1,
                "outcomes": 0,
                "idempotency_keys": 1,
                "faults": 1,
            },
            "kept": {"faults": [], "sync_duration": 0, "rate_limits": {"requests_per_minute": 1}},
        }
        assert fake.faults.pending == 0
        assert (await anonymous.get("/_fake/ledger")).json()["requests"] == 0
    assert fake.requests == ()
