"""Fault injection: kinds, stages, scripts with filters, and seeded random rules."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from codat_commerce_async.testing import ConnectionDropped, FakeCodat, Fault, FaultPlan

from .._http import httpx
from .conftest import RANGE, client_for, historic, latest, status

pytestmark = pytest.mark.anyio


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


# ------------------------------------------------------------------------ the value type


def test_fault_constructors():
    assert Fault.edge() == Fault("error", "edge", 503, "html")
    assert Fault.fail_after_sync(502) == Fault("error", "after_sync", 502, "json")
    assert Fault.rate_limited(3) == Fault("error", "before_sync", 429, retry_after=3)
    assert Fault.latency(0.5) == Fault("latency", "before_sync", delay=0.5)
    assert Fault.drop() == Fault("drop", "after_sync")
    assert Fault.drop().terminal
    assert not Fault.latency(1).terminal
    assert hash(Fault.edge()) == hash(Fault.edge())
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fault.edge().status = 500  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "error"}, "4xx or 5xx"),
        ({"kind": "error", "status": 302}, "4xx or 5xx"),
        ({"kind": "latency", "status": 500}, "no status"),
        ({"kind": "drop", "status": 500}, "no status"),
        ({"kind": "explode"}, "kind"),
        ({"kind": "latency", "stage": "later"}, "stage"),
        ({"kind": "latency", "delay": -1}, "delay"),
        ({"kind": "latency", "delay": float("nan")}, "delay"),
    ],
)
def test_invalid_faults_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)


def test_plan_arguments_are_validated():
    plan = FaultPlan()
    with pytest.raises(ValueError, match="probability"):
        plan.randomly(Fault.edge(), 1.5)
    with pytest.raises(ValueError, match="times"):
        plan.script(Fault.edge(), times=-1)


# -------------------------------------------------------------------------------- errors


async def test_edge_error_never_reaches_the_app(fake, company):
    fake.faults.script(Fault.edge(503))
    async with client_for(fake, auth=False) as anonymous:  # not even authenticated
        response = await anonymous.post(latest(company), headers=keyed("k"))

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "503 Service Unavailable" in response.text
    assert "x-rate-limit-limit" in response.headers
    assert fake.syncs_started() == 0
    (record,) = fake.requests
    assert (record.status, record.faults) == (503, (Fault.edge(503),))

    async with client_for(fake) as http:  # the key was never seen by the ledger
        assert (await http.post(latest(company), headers=keyed("k"))).status_code == 200
    assert not fake.requests[-1].replayed


@pytest.mark.parametrize("status_code", [500, 502, 503, 504])
async def test_empty_and_json_bodies(fake, http, company, status_code):
    fake.faults.script(Fault.edge(status_code, body="empty"), Fault.error(status_code))

    empty = await http.post(latest(company))
    assert (empty.status_code, empty.content) == (status_code, b"")
    assert "content-type" not in empty.headers

    as_json = await http.post(latest(company))
    assert as_json.status_code == status_code
    assert as_json.json()["statusCode"] == status_code
    assert fake.syncs_started() == 0


async def test_error_message_and_can_be_retried_are_configurable(fake, http, company):
    fake.faults.script(Fault.error(503, message="Down for maintenance", can_be_retried="True"))
    body = (await http.get(status(company, "list"))).json()
    assert (body["error"], body["canBeRetried"]) == ("Down for maintenance", "True")


async def test_failure_after_the_sync_started(fake, http, company):
    fake.faults.script(Fault.fail_after_sync(500))
    key = str(uuid.uuid4())

    failed = await http.post(latest(company), headers=keyed(key))
    assert failed.status_code == 500
    assert fake.syncs_started(company) == 1  # the request reached the app and did its work
    (sync,) = fake.syncs
    assert sync.idempotency_key == key

    # Codat caches the 5xx: the same key replays it and starts nothing new.
    replay = await http.post(latest(company), headers=keyed(key))
    assert (replay.status_code, replay.content) == (500, failed.content)
    assert fake.syncs_started(company) == 1
    assert (await http.get(status(company, sync.sync_id))).status_code == 200


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (2, "2"),
        (0.05, "0.05"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("inf", "inf"),
        (None, None),
    ],
)
async def test_rate_limited_fault_retry_after(fake, http, company, retry_after, header):
    fake.faults.script(Fault.rate_limited(retry_after))

    response = await http.get(status(company, "list"))

    assert response.status_code == 429
    assert response.headers.get("retry-after") == header


async def test_rate_limited_fault_at_the_edge(fake, http, company):
    fake.faults.script(Fault.rate_limited(1, stage="edge"))
    assert (await http.post(latest(company))).status_code == 429
    assert fake.syncs_started() == 0


# ------------------------------------------------------------------------------- latency


@pytest.mark.parametrize("stage", ["edge", "before_sync", "after_sync"])
async def test_latency_uses_the_injected_sleep(company, stage):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = FakeCodat(sleep=sleep)
    fake.faults.script(Fault.latency(3, stage=stage), Fault.latency(4, stage=stage))
    async with client_for(fake) as http:
        assert (await http.post(latest(company))).status_code == 200
        assert (await http.post(latest(company))).status_code == 200
        assert (await http.post(latest(company))).status_code == 200
    assert slept == [3, 4]


async def test_latency_really_waits_by_default(fake, http, company):
    fake.faults.script(Fault.latency(0.01))
    started = time.perf_counter()
    assert (await http.post(latest(company))).status_code == 200
    assert time.perf_counter() - started >= 0.01


async def test_delays_add_up_and_the_first_terminal_fault_wins(company):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = FakeCodat(sleep=sleep, seed=1)
    fake.faults.script(Fault.latency(1))
    fake.faults.randomly(Fault.error(502, delay=2), 1.0)
    fake.faults.randomly(Fault.error(504), 1.0)
    async with client_for(fake) as http:
        response = await http.post(latest(company))
    assert response.status_code == 502
    assert slept == [3]
    assert [f.status for f in fake.requests[0].faults] == [None, 502, 504]


# --------------------------------------------------------------------------------- drops


async def test_drop_after_the_sync_in_process(fake, company):
    fake.faults.script(Fault.drop())
    key = str(uuid.uuid4())
    async with fake.client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post(historic(company), json=RANGE, headers=keyed(key))
        assert fake.syncs_started(company) == 1
        dropped = fake.requests[-1]
        assert (dropped.status, dropped.dropped) == (None, True)

        retry = await http.post(historic(company), json=RANGE, headers=keyed(key))
    assert retry.status_code == 200
    assert retry.json()["commerceSyncId"] == fake.syncs[0].commerce_sync_id
    assert fake.requests[-1].replayed
    assert fake.syncs_started(company) == 1


async def test_plain_asgi_transport_sees_the_drop_as_an_exception(fake, http, company):
    fake.faults.script(Fault.drop())
    with pytest.raises(ConnectionDropped):
        await http.post(latest(company))
    assert fake.syncs_started() == 1


@pytest.mark.parametrize("stage", ["edge", "before_sync"])
async def test_drop_before_the_sync_starts_nothing_and_frees_the_key(fake, company, stage):
    fake.faults.script(Fault.drop(stage=stage))
    async with fake.client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(latest(company), headers=keyed("k"))
        assert fake.syncs_started() == 0
        assert (await http.post(latest(company), headers=keyed("k"))).status_code == 200
    assert not fake.requests[-1].replayed
    assert fake.syncs_started() == 1


# ------------------------------------------------------------------------------- scripts


async def test_script_filters(fake, http, company):
    other = str(uuid.uuid4())
    plan = fake.faults
    plan.script(Fault.error(500), method="get")
    plan.script(Fault.error(502), path=r"/historic$")
    plan.script(Fault.error(503), company_id=other.upper())
    plan.script(Fault.error(504), operation="get-latest-sync")
    assert plan.pending == 4

    assert (await http.post(latest(company))).status_code == 200
    assert (await http.get(status(company, "latest"))).status_code == 500
    assert (await http.get(status(company, "latest"))).status_code == 504
    assert (await http.post(historic(company), json=RANGE)).status_code == 502
    assert (await http.post(latest(other))).status_code == 503
    assert plan.pending == 0
    assert (await http.post(latest(other))).status_code == 200


async def test_script_order_and_times(fake, http, company):
    fake.faults.script(Fault.error(500), Fault.error(503), times=2)
    codes = [(await http.post(latest(company))).status_code for _ in range(5)]
    assert codes == [500, 503, 500, 503, 200]


async def test_scripted_faults_wait_for_their_stage(fake, http, company):
    fake.faults.script(Fault.fail_after_sync(500))
    # Rejected before the handler: these requests do not use the fault up.
    async with client_for(fake, auth=False) as anonymous:
        assert (await anonymous.post(latest(company))).status_code == 401
    assert (await http.get("/nowhere")).status_code == 404
    assert fake.faults.pending == 1
    assert (await http.post(latest(company))).status_code == 500


async def test_replays_do_not_use_up_later_faults(fake, http, company):
    await http.post(latest(company), headers=keyed("k"))
    fake.faults.script(Fault.fail_after_sync(500))
    assert (await http.post(latest(company), headers=keyed("k"))).status_code == 200
    assert fake.faults.pending == 1


async def test_clear(fake, http, company):
    fake.faults.script(Fault.error(500)).randomly(Fault.error(503), 1.0)
    fake.faults.clear()
    assert fake.faults.pending == 0
    assert (await http.post(latest(company))).status_code == 200


async def test_reset_restores_the_baseline_and_says_what_it_forgot(fake, http, company):
    fake.faults.randomly(Fault.error(503), 1.0, operation="request-sync")
    fake.faults.set_baseline()
    fake.faults.script(Fault.error(500), times=2).randomly(Fault.latency(1), 0.5)

    report = fake.reset()

    assert report["forgot"]["faults"] == 3  # the two scripted 500s and the latency rule
    assert report["kept"]["faults"] == [
        {"kind": "error", "stage": "before_sync", "status": 503, "probability": 1.0}
    ]
    assert fake.faults.pending == 0
    assert (await http.post(latest(company))).status_code == 503  # the baseline rule
    fake.faults.clear()  # clear() forgets the baseline too
    assert fake.reset()["kept"]["faults"] == []
    assert (await http.post(latest(company))).status_code == 200


# -------------------------------------------------------------------------------- random


async def run_random(seed: int, company: str, probability: float = 0.3) -> list[int]:
    fake = FakeCodat(seed=seed)
    fake.faults.randomly(Fault.error(503), probability, operation="request-sync")
    async with client_for(fake) as http:
        return [(await http.post(latest(company))).status_code for _ in range(200)]


async def test_random_faults_are_reproducible_with_a_seed(company):
    first = await run_random(7, company)
    assert first == await run_random(7, company)
    assert first != await run_random(8, company)
    assert 30 <= first.count(503) <= 90
    assert set(first) == {200, 503}


@pytest.mark.parametrize(("probability", "expected"), [(0.0, {200}), (1.0, {503})])
async def test_random_probability_bounds(company, probability, expected):
    assert set(await run_random(1, company, probability)) == expected


async def test_random_rules_honour_filters(fake, http, company):
    fake.faults.randomly(Fault.error(500), 1.0, operation="list-syncs")
    assert (await http.post(latest(company))).status_code == 200
    assert (await http.get(status(company, "list"))).status_code == 500


async def test_plan_passed_in_is_used(company):
    plan = FaultPlan(seed=3).script(Fault.error(500))
    fake = FakeCodat(faults=plan)
    assert fake.faults is plan
    async with client_for(fake) as http:
        assert (await http.post(latest(company))).status_code == 500
