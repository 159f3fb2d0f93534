"""Waiting runs poll from one schedule (issue 18): triggers flow at the run's pace and go
before polls; polls are placed from what the run learns about durations; every company is
confirmed once, never before its sync ended. Virtual time and event order only."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from typing import Any

import anyio
import pytest

from codat_commerce_async import AsyncSyncClient, BulkProgress, BulkResult
from codat_commerce_async._estimate import PRIOR_MEDIAN, DurationEstimate
from codat_commerce_async._ratelimit import RateLimiter
from codat_commerce_async.testing import FakeCodat, ManualClock

from .conftest import virtual_clock


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def fake_client(fake: FakeCodat, clock: ManualClock, **options: Any) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        clock=clock,
        **options,
    )


async def run_and_time(
    client: AsyncSyncClient, clock: ManualClock, run: Any
) -> list[tuple[float, BulkResult]]:
    """Every result with the clock reading when it came out."""
    seen: list[tuple[float, BulkResult]] = []
    async with clock.autojump():
        async with run as results:
            async for result in results:
                seen.append((clock.now(), result))
    return seen


def requests_by_company(fake: FakeCodat) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for record in fake.requests:
        assert record.company_id is not None
        out[record.company_id].append((record.received_at, record.method))
    return out


# -- triggers flow at the run's pace, and first ------------------------------------------


@pytest.mark.anyio
async def test_triggers_are_not_delayed_by_waits() -> None:
    # 150 companies (more than the old 100 waits at once) whose syncs take 10 minutes:
    # every trigger still goes out at the run's pace, one every 0.1 s.
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=600)
    companies = ids(150)
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(companies, wait=True, requests_per_minute=600)
        seen = await run_and_time(client, clock, run)
    triggers = sorted(r.received_at for r in fake.requests if r.method == "POST")
    assert len(triggers) == 150
    assert triggers[-1] - triggers[0] <= 150 / 10 + 1e-6
    assert {r.company_id for _, r in seen} == set(companies)
    assert all(r.ok for _, r in seen)


@pytest.mark.anyio
async def test_no_poll_goes_out_while_triggers_wait_for_the_rate() -> None:
    # Syncs of 1 s are due long before the 60 triggers are through (6 s at 10 a
    # second): a poll that went first would be sent between two triggers.
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=1)
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(
            ids(60), wait=True, requests_per_minute=600, poll_interval=0.5, max_poll_interval=1
        )
        await run_and_time(client, clock, run)
    order = [r.method for r in sorted(fake.requests, key=lambda r: r.received_at)]
    assert order[:60] == ["POST"] * 60
    assert set(order[60:]) == {"GET"}


@pytest.mark.anyio
async def test_a_foreground_waiter_always_gets_the_next_token_before_a_background_one() -> None:
    clock = ManualClock()
    limiter = RateLimiter(60, burst=1, clock=clock.now, sleep=clock.sleep)
    order: list[str] = []

    async def take(name: str, background: bool) -> None:
        await limiter.acquire(background=background)
        order.append(name)

    async with clock.autojump(), anyio.create_task_group() as tg:
        await limiter.acquire()  # the bucket is empty now: everyone waits
        # The polls queue first; the triggers come while they wait.
        tg.start_soon(take, "poll-1", True)
        tg.start_soon(take, "poll-2", True)
        for n in range(3):
            tg.start_soon(take, f"trigger-{n}", False)
    # (trio starts tasks in any order: the triggers among themselves, and the polls.)
    assert sorted(order[:3]) == ["trigger-0", "trigger-1", "trigger-2"]
    assert sorted(order[3:]) == ["poll-1", "poll-2"]
    assert clock.now() == pytest.approx(5.0)  # one a second: no token was lost


# -- confirmed once, never early ----------------------------------------------------------


@pytest.mark.anyio
async def test_every_company_is_confirmed_once_and_never_before_its_sync_ended() -> None:
    clock = virtual_clock()
    draw = random.Random(7)
    fake = FakeCodat(
        clock=clock, sleep=clock.sleep, sync_durations=lambda company: draw.uniform(30, 400)
    )
    companies = ids(120)
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(companies, wait=True, requests_per_minute=600)
        seen = await run_and_time(client, clock, run)
    assert sorted(r.company_id for _, r in seen) == sorted(companies)
    ended = {s.company_id: s.started_at + s.duration for s in fake.syncs}
    for at, result in seen:
        assert result.status is not None and result.status.succeeded
        assert at >= ended[result.company_id]
    # A poll that finds a sync finished ends its schedule: one poll at or after the end.
    for company, requests in requests_by_company(fake).items():
        after_end = [t for t, method in requests if method == "GET" and t >= ended[company]]
        assert len(after_end) == 1
    fake.assert_no_duplicate_syncs()


@pytest.mark.anyio
async def test_syncs_of_one_length_are_mostly_confirmed_by_their_first_poll() -> None:
    # What the schedule learns: with 4-minute syncs it polls near the end, not on a
    # ladder from 5 s (which took about ten polls a sync).
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=240)
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(ids(300), wait=True)
        await run_and_time(client, clock, run)
    assert len(fake.requests) <= 2.5 * 300


@pytest.mark.anyio
async def test_a_run_over_the_old_wait_cap_uses_one_poller_per_concurrency_slot() -> None:
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=30)
    async with fake_client(fake, clock) as client:
        with pytest.warns(DeprecationWarning, match="wait_concurrency"):
            run = client.sync.request_sync_many(ids(20), wait=True, wait_concurrency=3)
        seen = await run_and_time(client, clock, run)
    assert len(seen) == 20 and all(r.ok for _, r in seen)


# -- progress -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_progress_shows_triggered_waiting_confirmed_and_the_time_left() -> None:
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=120)
    updates: list[BulkProgress] = []
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(ids(30), wait=True, on_progress=updates.append)
        await run_and_time(client, clock, run)
    assert max(u.triggered for u in updates) == 30
    assert max(u.waiting for u in updates) >= 10
    assert updates[-1].confirmed == 30 and updates[-1].done == 30 and updates[-1].waiting == 0
    assert any(u.expected_seconds_left and u.expected_seconds_left > 60 for u in updates)
    for u in updates:  # every company is in exactly one state
        assert u.done + u.waiting <= 30
        assert u.triggered >= u.waiting + u.confirmed


# -- stopping mid-run keeps the guarantees ------------------------------------------------


@pytest.mark.anyio
async def test_breaking_out_of_a_waiting_run_keeps_one_sync_per_company() -> None:
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=60)
    companies = ids(40)
    keys = {c: str(uuid.uuid4()) for c in companies}
    async with fake_client(fake, clock) as client:
        async with clock.autojump():
            async with client.sync.request_sync_many(
                companies, wait=True, idempotency_keys=keys
            ) as results:
                async for _ in results:
                    break
            assert not client.limits.triggers_in_flight
            # The same keys again: the syncs already started are replayed, not restarted.
            async with client.sync.request_sync_many(
                companies, wait=True, idempotency_keys=keys
            ) as results:
                again = [r async for r in results]
    assert all(r.ok for r in again)
    assert fake.syncs_started() == 40
    fake.assert_no_duplicate_syncs()


@pytest.mark.anyio
async def test_wait_for_many_shares_the_schedule() -> None:
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep, sync_duration=90)
    async with fake_client(fake, clock) as client:
        async with clock.autojump():
            async with client.sync.request_sync_many(ids(100)) as results:
                triggered = [r async for r in results]
            async with client.sync.wait_for_many(triggered) as results:
                seen = [r async for r in results]
    assert all(r.ok and r.status is not None for r in seen)
    assert len(fake.requests) <= 100 * 3.5


# -- the estimate -------------------------------------------------------------------------


def test_the_plan_starts_from_the_documented_prior() -> None:
    plan = DurationEstimate().plan()
    assert PRIOR_MEDIAN / 3 < plan.after(0) < PRIOR_MEDIAN * 3


def test_one_duration_for_all_is_polled_once_just_after_it() -> None:
    estimate = DurationEstimate()
    for _ in range(40):
        estimate.add(236, 244)  # seen running at 236 s, finished by 244 s
    for _ in range(200):
        estimate.add(120, None)  # still running at 2 minutes
    plan = estimate.plan()
    assert 244 <= plan.after(0) <= 244 * 1.1
    assert 244 <= plan.after(120) <= 244 * 1.1


def test_syncs_still_running_push_the_plan_later() -> None:
    early = DurationEstimate()
    late = DurationEstimate()
    for _ in range(50):
        late.add(1200, None)  # running after 20 minutes: right-censored
    assert late.plan().after(0) > early.plan().after(0)
    assert late.plan().after(0) > 1200


def test_spread_durations_get_more_than_one_poll_but_few() -> None:
    estimate = DurationEstimate()
    draw = random.Random(3)
    for _ in range(500):
        duration = draw.uniform(60, 900)
        low = max(0.0, duration - draw.uniform(1, 30))
        estimate.add(low, low + 30)
    plan = estimate.plan()
    ages, age = [], 0.0
    while age < 900:
        age = plan.after(age)
        ages.append(age)
    assert 2 <= len(ages) <= 8


def test_fake_durations_are_drawn_per_company() -> None:
    table = {c: float(n) for n, c in enumerate(ids(3), start=1)}
    fake = FakeCodat(sync_durations=table.__getitem__)

    async def main() -> None:
        async with fake.client() as http:
            for company in table:
                url = f"/companies/{company}/sync/commerce/latest"
                response = await http.post(url, headers={"Authorization": fake.auth_header})
                assert response.status_code == 200

    anyio.run(main)
    assert {s.company_id: s.duration for s in fake.syncs} == table


@pytest.mark.anyio
async def test_the_longest_syncs_are_confirmed_within_a_ladder_step_of_their_end() -> None:
    # Every sync seen running at the oldest age the run knows used to be polled next
    # where the prior guessed (840 s -> 1,182 s for syncs that all end by 900 s); a few
    # probes one 20% rung past that age find where the durations end.
    clock = virtual_clock()
    draw = random.Random(3)
    fake = FakeCodat(
        clock=clock, sleep=clock.sleep, sync_durations=lambda company: draw.uniform(60, 900)
    )
    async with fake_client(fake, clock) as client:
        run = client.sync.request_sync_many(ids(600), wait=True)
        seen = await run_and_time(client, clock, run)
    last_end = max(s.started_at + s.duration for s in fake.syncs)
    longest = max(s.duration for s in fake.syncs)
    assert max(at for at, _ in seen) - last_end <= 0.2 * longest
