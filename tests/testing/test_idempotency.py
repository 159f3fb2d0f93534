"""The ``Idempotency-Key`` ledger: replay, 409, 422, 429 not cached, 90-minute expiry."""

from __future__ import annotations

import uuid

import anyio
import pytest

from codat_commerce_async.testing import FakeCodat, Fault, RateLimits

from .conftest import RANGE, client_for, historic, in_background, latest

pytestmark = pytest.mark.anyio


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_same_key_and_body_replays_the_first_response(fake, http, company):
    key = str(uuid.uuid4())
    first = await http.post(historic(company), json=RANGE, headers=keyed(key))
    second = await http.post(historic(company), json=RANGE, headers=keyed(key))

    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert fake.syncs_started(company) == 1
    assert [r.replayed for r in fake.requests] == [False, True]
    (sync,) = fake.syncs
    assert sync.idempotency_key == key


async def test_json_bodies_are_compared_by_meaning(fake, http, company):
    key = str(uuid.uuid4())
    compact = b'{"dateRange":{"start":"2026-01-01","finish":"2026-02-01"}}'
    spaced = b'{ "dateRange" : { "finish" : "2026-02-01", "start" : "2026-01-01" } }'
    first = await http.post(historic(company), content=compact, headers=keyed(key))
    second = await http.post(historic(company), content=spaced, headers=keyed(key))

    assert second.content == first.content
    assert fake.syncs_started() == 1


@pytest.mark.parametrize("change", ["body", "company", "endpoint", "no body"])
async def test_same_key_for_a_different_request_gets_422(fake, http, company, change):
    key = str(uuid.uuid4())
    assert (
        await http.post(latest(company), json={"syncTo": None}, headers=keyed(key))
    ).status_code == 200
    other = {
        "body": (latest(company), {"syncTo": "2026-01-01T00:00:00Z"}),
        "company": (latest(str(uuid.uuid4())), {"syncTo": None}),
        "endpoint": (historic(company), RANGE),
        "no body": (latest(company), None),
    }[change]

    response = await http.post(other[0], json=other[1], headers=keyed(key))

    assert response.status_code == 422
    assert response.json()["statusCode"] == 422
    assert fake.syncs_started() == 1
    # The 422 belongs to the second request and is not stored under the key.
    again = await http.post(latest(company), json={"syncTo": None}, headers=keyed(key))
    assert again.status_code == 200
    assert fake.requests[-1].replayed


async def test_same_key_while_in_flight_gets_409(gated_fake, gate, company):
    gate.arm()
    gated_fake.faults.script(Fault.latency(5))
    key = str(uuid.uuid4())
    async with client_for(gated_fake) as http, anyio.create_task_group() as tg:
        first = await in_background(tg, lambda: http.post(latest(company), headers=keyed(key)))
        await gate.entered.wait()

        conflict = await http.post(latest(company), headers=keyed(key))
        assert conflict.status_code == 409
        assert conflict.json()["statusCode"] == 409
        assert gated_fake.syncs_started() == 0  # the first is still before its sync

        gate.open()
    assert first[0].status_code == 200
    async with client_for(gated_fake) as http:
        replay = await http.post(latest(company), headers=keyed(key))
    assert replay.content == first[0].content
    assert gated_fake.syncs_started() == 1
    assert gate.calls == [5]


async def test_429_from_a_fault_releases_the_key(fake, http, company):
    fake.faults.script(Fault.rate_limited(retry_after=2))
    key = str(uuid.uuid4())

    limited = await http.post(latest(company), headers=keyed(key))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert fake.syncs_started() == 0

    retried = await http.post(latest(company), headers=keyed(key))
    assert retried.status_code == 200
    assert not fake.requests[-1].replayed
    replayed = await http.post(latest(company), headers=keyed(key))
    assert replayed.content == retried.content
    assert fake.syncs_started() == 1


async def test_429_from_the_quota_does_not_consume_the_key(fake, http, clock, company):
    fake.rate_limits = RateLimits(requests_per_minute=1)
    await http.get(f"/companies/{company}/sync/commerce/syncs/list/status")
    key = str(uuid.uuid4())

    assert (await http.post(latest(company), headers=keyed(key))).status_code == 429
    clock.advance(60)
    assert (await http.post(latest(company), headers=keyed(key))).status_code == 200
    assert fake.syncs_started() == 1


async def test_errors_are_cached_and_replayed(fake, http, company):
    # A 400 ...
    bad = await http.post(historic(company), json={}, headers=keyed("k400"))
    assert bad.status_code == 400
    assert (
        await http.post(historic(company), json={}, headers=keyed("k400"))
    ).content == bad.content

    # ... a 500 (the fault is used once; the replay does not need it) ...
    fake.faults.script(Fault.error(500))
    crash = await http.post(latest(company), headers=keyed("k500"))
    assert crash.status_code == 500
    assert fake.faults.pending == 0
    replay = await http.post(latest(company), headers=keyed("k500"))
    assert (replay.status_code, replay.content) == (500, crash.content)

    # ... and a 404, even after the company appeared.
    strict = FakeCodat(companies=[])
    async with client_for(strict) as strict_http:
        missing = await strict_http.post(latest(company), headers=keyed("k404"))
        strict.add_company(company)
        again = await strict_http.post(latest(company), headers=keyed("k404"))
        fresh = await strict_http.post(latest(company), headers=keyed("k404-new"))
    assert (missing.status_code, again.content) == (404, missing.content)
    assert fresh.status_code == 200
    assert fake.syncs_started() == 0


async def test_stored_responses_expire_after_90_minutes(fake, http, clock, company):
    key = str(uuid.uuid4())
    first = await http.post(latest(company), headers=keyed(key))

    clock.advance(90 * 60 - 0.001)
    assert (await http.post(latest(company), headers=keyed(key))).content == first.content
    assert fake.syncs_started() == 1

    clock.advance(0.001)
    fresh = await http.post(latest(company), headers=keyed(key))
    assert fresh.status_code == 200
    assert fresh.json()["commerceSyncId"] != first.json()["commerceSyncId"]
    assert fake.syncs_started() == 2
    with pytest.raises(AssertionError, match=key):
        fake.assert_no_duplicate_syncs()


async def test_custom_ttl(clock, company):
    fake = FakeCodat(clock=clock, idempotency_ttl=1)
    async with client_for(fake) as http:
        await http.post(latest(company), headers=keyed("k"))
        clock.advance(1)
        await http.post(latest(company), headers=keyed("k"))
    assert fake.syncs_started() == 2


async def test_requests_without_a_key_always_run(fake, http, company):
    for _ in range(3):
        assert (await http.post(latest(company))).status_code == 200
    assert fake.syncs_started() == 3


async def test_keys_are_ignored_on_status_reads(fake, http, company):
    url = f"/companies/{company}/sync/commerce/syncs/list/status"
    assert (await http.get(url, headers=keyed("k"))).json() == []
    await http.post(latest(company))
    assert len((await http.get(url, headers=keyed("k"))).json()) == 1


@pytest.mark.parametrize(
    "headers",
    [[("Idempotency-Key", "a"), ("Idempotency-Key", "b")], [("Idempotency-Key", " ")]],
)
async def test_malformed_key_headers_get_400(fake, http, company, headers):
    response = await http.post(latest(company), headers=headers)

    assert response.status_code == 400
    assert response.json()["validation"]["errors"][0]["itemId"] == "Idempotency-Key"
    assert fake.syncs_started() == 0


async def test_cancelled_before_the_sync_releases_the_key(gated_fake, gate, company):
    gate.arm()
    gated_fake.faults.script(Fault.latency(5))
    key = str(uuid.uuid4())
    async with client_for(gated_fake) as http:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await in_background(tg, lambda: http.post(latest(company), headers=keyed(key)))
                await gate.entered.wait()
                scope.cancel()
        assert gated_fake.syncs_started() == 0
        assert gated_fake.requests[-1].status is None

        retry = await http.post(latest(company), headers=keyed(key))
    assert retry.status_code == 200
    assert gated_fake.syncs_started() == 1


async def test_cancelled_after_the_sync_keeps_the_response(gated_fake, gate, company):
    gate.arm()
    gated_fake.faults.script(Fault.latency(5, stage="after_sync"))
    key = str(uuid.uuid4())
    async with client_for(gated_fake) as http:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await in_background(tg, lambda: http.post(latest(company), headers=keyed(key)))
                await gate.entered.wait()
                scope.cancel()
        assert gated_fake.syncs_started() == 1

        retry = await http.post(latest(company), headers=keyed(key))
    assert retry.status_code == 200
    assert retry.json()["commerceSyncId"] == gated_fake.syncs[0].commerce_sync_id
    assert gated_fake.syncs_started() == 1
    gated_fake.assert_no_duplicate_syncs()


async def test_replays_keep_the_body_but_refresh_rate_limit_headers(fake, http, clock, company):
    first = await http.post(latest(company), headers=keyed("k"))
    clock.advance(30)
    replay = await http.post(latest(company), headers=keyed("k"))

    assert replay.json()["syncUtc"] == first.json()["syncUtc"] == "2026-04-15T12:00:00Z"
    assert first.headers["x-rate-limit-remaining"] == "999"
    assert replay.headers["x-rate-limit-remaining"] == "998"
