"""The bulk engine: bounded memory, the per-company guard, the shared 429 gate, the rate
limit on every request, isolation of failures, cancellation, progress, and the blocking
facade's iterator."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    BulkProgress,
    BulkResult,
    InternalServerError,
    NotFoundError,
    SyncClient,
    SyncSummary,
    SyncWaitTimeoutError,
)
from codat_commerce_async.testing import FakeCodat, Fault

from ._http import httpx
from .conftest import CANARY_KEY, SUMMARY, ScriptedCodat, error_body, virtual_clock

_COMPANY_RE = re.compile(r"/companies/([0-9a-f-]{36})/")


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def company_of(request: httpx.Request) -> str:
    match = _COMPANY_RE.search(request.url.path)
    assert match is not None
    return match.group(1)


def summary_for(request: httpx.Request, code: int = 1000) -> httpx.Response:
    company = company_of(request)
    sync_id = str(uuid.uuid5(uuid.NAMESPACE_URL, company))
    body = {**SUMMARY, "companyId": company, "commerceSyncId": sync_id, "syncStatusCode": code}
    return httpx.Response(200, json=body)


class SlowCodat(httpx.AsyncBaseTransport):
    """Answers after a real delay and records in-flight counts, overall and per company."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_in_flight = 0
        self.total_peak = 0
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        company = company_of(request)
        self.requests.append(request)
        self.in_flight[company] += 1
        self.total_in_flight += 1
        self.peak[company] = max(self.peak[company], self.in_flight[company])
        self.total_peak = max(self.total_peak, self.total_in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight[company] -= 1
            self.total_in_flight -= 1
        return summary_for(request)


async def consume(run: Any, fail_at: int | None = None) -> list[BulkResult]:
    """Iterate a run to the end, raising KeyError("mine") at result ``fail_at``."""
    seen: list[BulkResult] = []
    async with run as results:
        async for result in results:
            if len(seen) == fail_at:
                raise KeyError("mine")
            seen.append(result)
    return seen


def blocking_consume(run: Iterable[BulkResult], fail_at: int) -> None:
    for n, _ in enumerate(run):
        if n == fail_at:
            raise LookupError


def fake_client(fake: FakeCodat, **options: Any) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport(), **options
    )


# -- the basics --------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_company_gets_one_result(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.default = summary_for
    companies = ids(25)
    seen: list[BulkResult] = []
    async with client.sync.request_sync_many(companies, sync_to="2024-06-30") as results:
        async for result in results:
            seen.append(result)
    assert sorted(r.company_id for r in seen) == sorted(companies)
    assert all(r.ok and r.error is None and r.attempts == 1 for r in seen)
    assert all(isinstance(r.summary, SyncSummary) for r in seen)
    assert all(r.sync_id == r.summary.commerce_sync_id for r in seen if r.summary)
    keys = {r.idempotency_key for r in seen}
    assert len(keys) == 25
    assert keys == set(codat.keys)
    assert all(codat.body(i) == {"syncTo": "2024-06-30T00:00:00Z"} for i in range(25))


@pytest.mark.anyio
async def test_date_range_twin(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.default = summary_for
    companies = ids(3)
    run = client.sync.request_sync_for_date_range_many(
        companies, start="2024-06-01", finish="2024-06-30"
    )
    async with run as results:
        seen = [r async for r in results]
    assert len(seen) == 3
    assert all(r.ok for r in seen)
    assert {r.url.path for r in codat.requests} == {
        f"/meta/companies/{c}/sync/commerce/historic" for c in companies
    }
    assert codat.body() == {
        "dateRange": {"start": "2024-06-01T00:00:00Z", "finish": "2024-06-30T00:00:00Z"}
    }


@pytest.mark.anyio
async def test_bad_arguments_fail_at_the_call(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    with pytest.raises(ValueError, match="start"):
        client.sync.request_sync_for_date_range_many(
            ids(1), start="2024-07-01", finish="2024-06-01"
        )
    with pytest.raises(ValueError, match="naive"):
        client.sync.request_sync_many(ids(1), sync_to=datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="single string"):
        client.sync.request_sync_many(ids(1)[0])
    with pytest.raises(ValueError, match="concurrency"):
        client.sync.request_sync_many(ids(1), concurrency=0)
    with pytest.raises(ValueError, match="requests_per_minute"):
        client.sync.request_sync_many(ids(1), requests_per_minute=-5)
    run = client.sync.request_sync_many([])
    async with run as results:
        assert [r async for r in results] == []
    with pytest.raises(RuntimeError, match="once"):
        async with run:
            pass
    assert codat.requests == []


# -- bounded memory ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_100k_generator_is_pulled_lazily(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for
    pulled = 0
    concurrency = 5

    def generate() -> Any:
        nonlocal pulled
        for _ in range(100_000):
            pulled += 1
            yield str(uuid.uuid4())

    consumed = 0
    run = client.sync.request_sync_many(
        generate(), concurrency=concurrency, requests_per_minute=None
    )
    async with run as results:
        async for _ in results:
            consumed += 1
            # Workers, the hand-off and the result buffer: nothing grows with the input.
            assert pulled - consumed <= 3 * concurrency + 2
            if consumed == 400:
                break
    assert run.progress.total is None
    assert pulled < 450
    assert len(codat.requests) < 450


# -- one trigger per company ---------------------------------------------------------


@pytest.mark.anyio
async def test_duplicates_wait_for_the_first_and_never_overlap() -> None:
    slow = SlowCodat(delay=0.02)
    a, b = ids(2)
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=slow) as client:
        async with client.sync.request_sync_many(
            [a, a, a, b], concurrency=4, idempotency_keys={a: str(uuid.UUID(int=1))}
        ) as results:
            seen = [r async for r in results]
        assert client.limits.triggers_in_flight == frozenset()
    assert Counter(r.company_id for r in seen) == {a: 3, b: 1}
    assert slow.peak[a] == 1  # serialized
    assert Counter(company_of(r) for r in slow.requests) == {a: 3, b: 1}
    a_keys = {r.headers["idempotency-key"] for r in slow.requests if company_of(r) == a}
    assert a_keys == {str(uuid.UUID(int=1))}  # a mapping reuses the key: Codat replays


@pytest.mark.anyio
async def test_concurrency_never_exceeds_the_clients_in_flight_cap() -> None:
    slow = SlowCodat(delay=0.01)
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=slow, max_concurrency=4) as client:
        run = client.sync.request_sync_many(ids(40), concurrency=50, requests_per_minute=None)
        async with run as results:
            assert len([r async for r in results]) == 40
    assert slow.total_peak == 4


# -- failures stay local ---------------------------------------------------------------


@pytest.mark.anyio
async def test_one_failure_never_stops_the_others(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    good = ids(10)
    missing, broken = ids(2)

    def handler(request: httpx.Request) -> httpx.Response:
        company = company_of(request)
        if company == missing:
            return httpx.Response(404, json=error_body(404, "No company"))
        if company == broken:
            return httpx.Response(500, json=error_body(500))
        return summary_for(request)

    codat.default = handler
    companies = [good[0], missing, "not-a-company", broken, *good[1:]]
    async with client.sync.request_sync_many(companies) as results:
        seen = {r.company_id: r async for r in results}
    assert len(seen) == 13
    assert all(seen[c].ok for c in good)
    assert isinstance(seen[missing].error, NotFoundError)
    assert isinstance(seen[broken].error, InternalServerError)
    assert seen[broken].attempts == 1  # a POST's 500 is not retried
    assert seen[broken].idempotency_key == seen[broken].error.idempotency_key
    invalid = seen["not-a-company"]
    assert isinstance(invalid.error, ValueError)
    assert not invalid.ok
    assert invalid.attempts == 0
    assert invalid.idempotency_key is None
    assert len(codat.requests) == 12  # nothing sent for the invalid id


@pytest.mark.anyio
async def test_idempotency_keys_from_a_function(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for
    companies = ids(4)
    chosen = {c: str(uuid.uuid5(uuid.NAMESPACE_OID, c)) for c in companies[:2]}
    chosen[companies[2]] = "not a guid"
    asked: list[str] = []

    def keys(company: str) -> str | None:
        asked.append(company)
        return chosen.get(company)

    upper = [c.upper() for c in companies]  # keys are looked up by the canonical id
    async with client.sync.request_sync_many(upper, idempotency_keys=keys) as results:
        seen = {r.company_id: r async for r in results}
    assert sorted(asked) == sorted(companies)
    assert seen[companies[0]].idempotency_key == chosen[companies[0]]
    assert seen[companies[1]].idempotency_key == chosen[companies[1]]
    assert isinstance(seen[companies[2]].error, ValueError)
    assert seen[companies[3]].ok  # None: a fresh key
    assert len(codat.requests) == 3


# -- the shared 429 gate ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_429_pauses_every_worker_until_retry_after(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.now())
        if len(times) == 1:
            return httpx.Response(429, json=error_body(429), headers={"Retry-After": "5"})
        return summary_for(request)

    codat.default = handler
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=httpx.MockTransport(codat), clock=clock
    ) as client:
        async with clock.autojump():
            run = client.sync.request_sync_many(ids(40), concurrency=5, requests_per_minute=600)
            async with run as results:
                seen = [r async for r in results]
    assert all(r.ok for r in seen)
    assert sorted(r.attempts for r in seen)[-1] == 2
    start = times[0]
    assert times.count(start) <= 5  # only requests already on their way
    # Without the gate the limiter would send one every 0.1 s from the start.
    assert [t for t in times if start < t < start + 5.0] == []
    assert len(times) == 41


@pytest.mark.anyio
async def test_the_gate_end_to_end_against_the_fake() -> None:
    # Virtual time: on a busy machine a wall clock let a request land inside the window.
    clock = virtual_clock()
    fake = FakeCodat(clock=clock, sleep=clock.sleep)
    fake.faults.randomly(Fault.latency(0.01), 1.0)
    fake.faults.script(Fault.rate_limited(0.3))
    async with fake_client(fake, clock=clock) as client, clock.autojump():
        run = client.sync.request_sync_many(ids(40), concurrency=5, requests_per_minute=None)
        async with run as results:
            seen = [r async for r in results]
    assert all(r.ok for r in seen)
    limited = [r for r in fake.requests if r.status == 429]
    assert len(limited) == 1
    t429 = limited[0].received_at
    arrivals = [r.received_at for r in fake.requests]
    assert [t for t in arrivals if t429 + 0.05 < t < t429 + 0.28] == []
    assert len([t for t in arrivals if t >= t429 + 0.28]) >= 30
    fake.assert_no_duplicate_syncs()
    assert fake.syncs_started() == 40


# -- the rate limit covers every request while a run is active ---------------------------


@pytest.mark.anyio
async def test_rate_limit_covers_triggers_polls_and_other_calls(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    times: list[tuple[float, str]] = []
    polls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        times.append((clock.now(), request.method))
        if request.method == "POST":
            return summary_for(request)
        company = company_of(request)
        polls[company] += 1
        code = 2000 if polls[company] >= 2 else 1000
        return httpx.Response(200, json={"companyId": company, "syncStatusCode": code})

    codat.default = handler
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=httpx.MockTransport(codat), clock=clock
    ) as client:
        other = ids(1)[0]

        async def meanwhile() -> None:
            for _ in range(10):
                await client.sync.get_latest_sync(other)

        async with clock.autojump(), anyio.create_task_group() as tg:
            run = client.sync.request_sync_many(
                ids(30), wait=True, requests_per_minute=600, poll_interval=1.0, max_poll_interval=1.0
            )
            async with run as results:
                tg.start_soon(meanwhile)
                seen = [r async for r in results]
        assert client.limits.current_rate is None  # the run's bucket is gone with it
    assert all(r.ok and r.status is not None and r.status.succeeded for r in seen)
    stamps = sorted(t for t, _ in times)
    assert len(stamps) == 30 + 60 + 10
    assert {m for _, m in times} == {"POST", "GET"}
    # A bucket of 10 a second, burst 10: no window holds more than that.
    for i in range(len(stamps)):
        for j in range(i + 1, len(stamps)):
            assert j - i + 1 <= 10 + 10 * (stamps[j] - stamps[i]) + 1e-6
    assert stamps[-1] - stamps[0] == pytest.approx((100 - 10) / 10, abs=1.5)


@pytest.mark.anyio
async def test_default_run_limit_is_900_unless_the_client_has_one(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    seen_limits: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        limiter = client.limits.current_rate
        seen_limits.append(limiter.requests_per_minute if limiter else None)
        return summary_for(request)

    codat.default = handler
    async with client.sync.request_sync_many(ids(2)) as results:
        [r async for r in results]
    async with client.sync.request_sync_many(ids(2), requests_per_minute=None) as results:
        [r async for r in results]
    async with client.sync.request_sync_many(ids(2), requests_per_minute=120) as results:
        [r async for r in results]
    assert seen_limits == [900.0, 900.0, None, None, 120.0, 120.0]
    assert client.limits.current_rate is None


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_breaking_out_stops_the_run_and_the_client_stays_usable() -> None:
    fake = FakeCodat()
    fake.faults.randomly(Fault.latency(0.05), 1.0)
    async with fake_client(fake) as client:
        got = 0
        # Draining the rest would take 2,000 x 0.05 s / 5 = 20 s: only that reaches 10 s.
        async with client.sync.request_sync_many(ids(2000), concurrency=5) as results:
            async for _ in results:
                got += 1
                if got == 3:
                    left = time.monotonic()
                    break
        assert time.monotonic() - left < 10.0
        sent = len(fake.requests)
        await anyio.sleep(0.15)
        assert len(fake.requests) == sent < 30  # nothing runs behind our back
        assert fake.in_flight() == 0
        assert client.limits.triggers_in_flight == frozenset()
        assert client.limits.current_rate is None
        summary = await client.sync.request_sync(ids(1)[0])  # still usable
        assert summary.commerce_sync_id


@pytest.mark.anyio
async def test_cancelling_from_outside_stops_promptly() -> None:
    fake = FakeCodat()
    fake.faults.randomly(Fault.latency(0.05), 1.0)
    async with fake_client(fake) as client:
        seen = 0
        cancelled_at = float("inf")

        async def cancel_once_running(scope: anyio.CancelScope) -> None:
            # Once syncs have started, not after a fixed delay (a busy machine may not
            # have started any by then).
            nonlocal cancelled_at
            while fake.syncs_started() < 3:
                await anyio.sleep(0.005)
            cancelled_at = time.monotonic()
            scope.cancel()

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_running, scope)
                async with client.sync.request_sync_many(ids(5000), wait=True) as results:
                    async for _ in results:
                        seen += 1
        assert scope.cancelled_caught
        # Promptly: a run that ignored the cancel would take minutes for 5,000 companies.
        assert time.monotonic() - cancelled_at < 10.0
        assert seen < 5000
        assert fake.in_flight() == 0
        assert client.limits.triggers_in_flight == frozenset()
        assert (await client.sync.get_latest_sync(fake.syncs[0].company_id)).sync_id


@pytest.mark.anyio
async def test_your_exception_in_the_block_comes_out_as_is(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for
    with pytest.raises(KeyError, match="mine"):
        await consume(client.sync.request_sync_many(ids(50)), fail_at=0)
    assert client.limits.triggers_in_flight == frozenset()
    await client.sync.request_sync(ids(1)[0])


@pytest.mark.anyio
async def test_a_failing_progress_callback_stops_the_run_and_is_raised(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for

    def progress(p: BulkProgress) -> None:
        if p.done == 5:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await consume(client.sync.request_sync_many(ids(100), on_progress=progress))
    assert len(codat.requests) < 30
    await client.sync.request_sync(ids(1)[0])


# -- progress and input kinds ----------------------------------------------------------


@pytest.mark.anyio
async def test_progress_counts_done_and_failed(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for
    updates: list[BulkProgress] = []
    companies = [*ids(8), "bad-1", "bad-2"]
    async with client.sync.request_sync_many(companies, on_progress=updates.append) as results:
        [r async for r in results]
    assert [u.done for u in updates] == list(range(1, 11))
    assert all(u.total == 10 for u in updates)
    assert updates[-1] == BulkProgress(done=10, failed=2, total=10, triggered=8)
    assert updates[-1].succeeded == 8


@pytest.mark.anyio
async def test_an_async_iterable_input(client: AsyncSyncClient, codat: ScriptedCodat) -> None:
    codat.default = summary_for
    companies = ids(12)

    async def source() -> AsyncIterator[str]:
        for company in companies:
            await anyio.lowlevel.checkpoint()
            yield company

    updates: list[BulkProgress] = []
    async with client.sync.request_sync_many(source(), on_progress=updates.append) as results:
        seen = [r.company_id async for r in results]
    assert sorted(seen) == sorted(companies)
    assert updates[-1] == BulkProgress(12, 0, None, triggered=12)


@pytest.mark.anyio
async def test_a_failing_input_iterator_stops_the_run(
    client: AsyncSyncClient, codat: ScriptedCodat
) -> None:
    codat.default = summary_for

    def source() -> Any:
        yield from ids(3)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte")

    with pytest.raises(UnicodeDecodeError):
        async with client.sync.request_sync_many(source()) as results:
            [r async for r in results]


# -- waiting ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_true_yields_final_statuses() -> None:
    fake = FakeCodat(sync_duration=0.1)
    companies = ids(12)
    fake.set_outcome(companies[0], 4000)
    async with fake_client(fake) as client:
        run = client.sync.request_sync_many(
            companies,
            wait=True,
            poll_interval=0.03,
            max_poll_interval=0.06,
            wait_timeout=5,
            requests_per_minute=None,
        )
        async with run as results:
            seen = {r.company_id: r async for r in results}
    failed = seen[companies[0]]
    assert failed.error is None
    assert failed.status is not None
    assert failed.status.failed
    assert not failed.ok
    assert all(seen[c].ok and seen[c].status.succeeded for c in companies[1:])  # type: ignore[union-attr]
    assert fake.syncs_started() == 12


@pytest.mark.anyio
async def test_wait_for_many_takes_results_summaries_pairs_and_ids() -> None:
    # Virtual time: the 0.4 s timeout cannot run out early on a busy machine.
    clock = virtual_clock()
    fake = FakeCodat(sync_duration=0.1, clock=clock, sleep=clock.sleep)
    companies = ids(4)
    stuck = ids(1)[0]
    fake.set_outcome(stuck, 2000, duration=60)
    async with fake_client(fake, clock=clock) as client:
        async with clock.autojump():
            async with client.sync.request_sync_many(companies[:2]) as results:
                triggered = [r async for r in results]
            summary = await client.sync.request_sync(companies[2])
            pair = (companies[3], (await client.sync.request_sync(companies[3])).commerce_sync_id)
            await client.sync.request_sync(stuck)
            failed = BulkResult(company_id="x", error=ValueError("earlier failure"))
            items: list[Any] = [*triggered, summary, pair, stuck, failed, "junk"]
            run = client.sync.wait_for_many(
                items, poll_interval=0.03, max_poll_interval=0.05, timeout=0.4
            )
            async with run as results:
                seen = {r.company_id: r async for r in results}
    assert all(seen[c].ok and seen[c].status.succeeded for c in companies)  # type: ignore[union-attr]
    assert seen[triggered[0].company_id].summary is triggered[0].summary
    timed_out = seen[stuck]
    assert isinstance(timed_out.error, SyncWaitTimeoutError)
    assert timed_out.status is not None
    assert timed_out.status.is_in_progress
    assert seen["x"] is failed
    assert isinstance(seen["junk"].error, ValueError)


# -- the blocking facade ----------------------------------------------------------------


def _loop_busy(client: SyncClient) -> bool:
    return bool(client.limits.triggers_in_flight)


def test_blocking_iterator_yields_every_result() -> None:
    fake = FakeCodat()
    companies = ids(20)
    progress: list[BulkProgress] = []
    threads: set[int] = set()

    def on_progress(p: BulkProgress) -> None:
        threads.add(threading.get_ident())
        progress.append(p)

    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        seen = [
            r.company_id for r in client.sync.request_sync_many(companies, on_progress=on_progress)
        ]
        with client.sync.request_sync_many(companies[:3]) as results:
            again = [r.ok for r in results]
    assert sorted(seen) == sorted(companies)
    assert again == [True] * 3
    assert progress[-1] == BulkProgress(20, 0, 20, triggered=20)
    assert threading.get_ident() not in threads  # callbacks run on the client's loop


@pytest.mark.parametrize("how", ["break", "raise", "with-break"])
def test_blocking_early_exit_stops_the_run(how: str) -> None:
    fake = FakeCodat()
    fake.faults.randomly(Fault.latency(0.03), 1.0)
    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        # Draining the rest would take 3,000 x 0.03 s / 5 = 18 s: only that reaches 10 s.
        run = client.sync.request_sync_many(ids(3000), concurrency=5)
        if how == "break":
            for n, _ in enumerate(run):
                if n == 2:
                    break
        elif how == "raise":
            with pytest.raises(LookupError):
                blocking_consume(run, fail_at=2)
        else:
            with run as results:
                for n, _ in enumerate(results):
                    if n == 2:
                        break
        stopped = time.monotonic()
        sent = len(fake.requests)
        time.sleep(0.15)
        assert len(fake.requests) == sent < 40
        assert fake.in_flight() == 0
        assert not _loop_busy(client)
        assert client.sync.request_sync(ids(1)[0]).commerce_sync_id
        assert time.monotonic() - stopped < 10.0
