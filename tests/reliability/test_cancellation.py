"""Matrix rows 19-21: cancellation mid-request, under pool contention (40 rounds of
20 calls on a pool of 10; 100 with ``RELIABILITY_REPORT``) and during a backoff sleep, over real sockets, on asyncio and
trio; through the blocking facade with a real Ctrl-C (SIGINT) and with deadlines."""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from codat_commerce_async import APITimeoutError, CallEvent, SyncClient, SyncSummary
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from .._sockets import MisbehavingServer, answer, hang
from ..conftest import CANARY_KEY, new_company
from ._harness import (
    CANARY,
    FAST,
    FULL_SCALE,
    eventually,
    fake_records,
    open_api,
    pool_state,
    record_figures,
    sdk_transport,
    wait_until,
)
from ._interrupt import ctrl_c_when

#: Row 20's rounds of 20 calls; the figures run (``RELIABILITY_REPORT``, also in CI)
#: does the full 100.
ROUNDS = 100 if FULL_SCALE else 40


# -- row 19: cancel mid-request ----------------------------------------------------------


@pytest.mark.anyio  # on asyncio and trio
async def test_row19_cancel_mid_request_propagates_at_once(server: MisbehavingServer) -> None:
    server.then(hang())
    async with open_api("async", base_url=server.url) as api:
        started = float("inf")

        async def cancel_mid_request(scope: anyio.CancelScope) -> None:
            nonlocal started
            assert await eventually(lambda: server.requests == 1)  # however slow the machine
            started = time.monotonic()
            scope.cancel()

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_mid_request, scope)
                await api.request_sync(new_company())
        assert scope.cancelled_caught  # a cancellation, never wrapped in an SDK error
        # At once: an SDK that waited for the hung attempt would sit out its 30 s timeout.
        assert time.monotonic() - started < 5.0
        await anyio.sleep(0.3)
        assert server.requests == 1  # no further attempt
        # Hooks hear of it (a tracer must close its span), as the loop's own cancellation.
        (finished,) = api.kinds("call_finished")
        assert isinstance(finished.error, anyio.get_cancelled_exc_class())
        with anyio.fail_after(30):  # a broken pool hangs or raises
            await api.request_sync(new_company())
        _, active, queued = pool_state(api.transport)
        assert active == 0 and queued == 0


@pytest.mark.anyio
@pytest.mark.asyncio_only
async def test_row19_a_cancelled_trigger_may_have_run_so_keep_your_key(
    fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company, key = new_company(), str(uuid.uuid4())
    fake.faults.script(Fault.latency(0.3, stage="after_sync"), company_id=company)
    async with open_api("async", base_url=fake_server.base_url) as api:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(api.request_sync, company, idempotency_key=key))
            # Cancel once the sync started, while its answer is 0.3 s away (not after a
            # fixed 0.1 s, which on a busy machine may come before the request arrived).
            assert await eventually(lambda: fake.syncs_started(company) == 1)
            tg.cancel_scope.cancel()
        assert fake.syncs_started(company) == 1  # it ran, although we cancelled
        raw = await api.raw_request_sync(company, idempotency_key=key)  # retry, same key
    assert await eventually(lambda: len(fake_records(fake, company)) == 2)
    assert raw.parsed.commerce_sync_id == fake.syncs[0].commerce_sync_id
    assert fake.syncs_started(company) == 1


def test_row19_ctrl_c_in_a_blocking_call(server: MisbehavingServer) -> None:
    server.then(hang())
    reached = threading.Event()
    transport = sdk_transport()
    with SyncClient(
        api_key=CANARY_KEY, base_url=server.url, retry_policy=FAST, transport=transport
    ) as client:
        with ctrl_c_when(reached) as ctrl_c:
            threading.Thread(
                target=lambda: reached.set() if wait_until(lambda: server.requests == 1) else None
            ).start()
            with pytest.raises(KeyboardInterrupt):
                client.sync.request_sync(new_company())
        assert ctrl_c.raised_at is not None and ctrl_c.fired_at is not None
        # At once: a wait Ctrl-C cannot interrupt would sit out the 30 s read timeout.
        assert ctrl_c.raised_at - ctrl_c.fired_at < 5.0
        time.sleep(0.3)
        assert server.requests == 1  # the call was cancelled on the loop too
        # Usable: a broken pool would raise (or hang until this deadline).
        assert isinstance(
            client.with_options(deadline=30).sync.request_sync(new_company()), SyncSummary
        )
        assert pool_state(transport)[1:] == (0, 0)
    assert not any(t.name == "codat-commerce-async-loop" for t in threading.enumerate())


# -- row 20: cancel under pool contention -------------------------------------------------


@pytest.mark.anyio  # on asyncio and trio
@pytest.mark.slow
async def test_row20_cancellation_stress_leaves_the_pool_usable(
    anyio_backend: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    # encode/httpcore#1093: cancelling requests queued inside httpcore for a connection
    # still being opened leaves ghost connections and every later call hits PoolTimeout.
    # The SDK's in-flight cap (= pool size) keeps the queue on our side, where it is safe.
    fake.faults.randomly(Fault.latency(0.002), 0.5)
    rng = random.Random(20)
    sent_after_cancel = 0
    cancelled_calls = 0
    cancelled = False

    def on_event(event: CallEvent) -> None:
        nonlocal sent_after_cancel
        if event.kind == "request_sent" and cancelled:
            sent_after_cancel += 1

    async with open_api(
        "async",
        base_url=fake_server.base_url,
        max_concurrency=10,
        event_hooks=[on_event],
        record_events=False,
    ) as api:
        started = time.monotonic()
        for round_number in range(ROUNDS):
            done = 0

            async def one() -> None:
                nonlocal done
                await api.request_sync(new_company())
                done += 1

            cancelled = False
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
                # Rounds alternate: cancel before anything is sent, or mid-flight.
                await anyio.sleep(0 if round_number % 2 == 0 else rng.uniform(0.0, 0.004))
                cancelled = True
                tg.cancel_scope.cancel()
            cancelled = False
            cancelled_calls += 20 - done
        stress_time = time.monotonic() - started
        connections, active, queued = pool_state(api.transport)
        assert active == 0 and queued == 0
        next_started = time.monotonic()
        with anyio.fail_after(30):  # a broken pool hangs or raises
            await api.request_sync(new_company())
        next_call = time.monotonic() - next_started
    assert sent_after_cancel == 0
    assert cancelled_calls > ROUNDS * 10  # the rounds really did cancel work in flight
    record_figures(
        f"cancellation_{anyio_backend}",
        rounds=ROUNDS,
        calls_per_round=20,
        pool=10,
        calls_cancelled=cancelled_calls,
        attempts_after_cancel=sent_after_cancel,
        active_connections_after=active,
        queued_in_httpcore_after=queued,
        idle_connections_after=connections,
        next_call_ms=round(next_call * 1000, 1),
        stress_s=round(stress_time, 2),
    )


def test_row20_blocking_calls_cut_by_deadlines_under_contention(
    server: MisbehavingServer,
) -> None:
    # Threads cannot be cancelled; the facade's representative case is many calls cut
    # short by their deadline (a cancel scope on the loop) while the pool is contended.
    # Nothing is ever answered: with an answer merely later than the deadline, a loop
    # starved on a busy machine could see both at once and keep the answer.
    server.always(hang())
    transport = sdk_transport(10)
    with (
        SyncClient(
            api_key=CANARY_KEY,
            base_url=server.url,
            max_concurrency=10,
            deadline=0.02,
            retry_policy=FAST,
            transport=transport,
        ) as client,
        ThreadPoolExecutor(20) as pool,
    ):
        for _ in range(5):
            futures = [pool.submit(client.sync.request_sync, new_company()) for _ in range(20)]
            for future in futures:
                error = future.exception()
                assert isinstance(error, APITimeoutError) and error.phase == "deadline"
                CANARY.scan_exception(error, "blocking deadline")
        server.always(answer())
        # Usable: a broken pool would raise (or hang until this deadline).
        client.with_options(deadline=30).sync.request_sync(new_company())
        assert pool_state(transport)[1:] == (0, 0)


# -- row 21: cancel during a backoff sleep ------------------------------------------------


@pytest.mark.anyio  # on asyncio and trio
async def test_row21_cancel_during_backoff_stops_at_once(server: MisbehavingServer) -> None:
    server.always(answer(503, b"", {"Retry-After": "3"}))
    sleeping = anyio.Event()

    def on_event(event: CallEvent) -> None:
        if event.kind == "retry_scheduled":
            sleeping.set()

    async with open_api("async", base_url=server.url, event_hooks=[on_event]) as api:
        async with anyio.create_task_group() as tg:
            tg.start_soon(api.request_sync, new_company())
            await sleeping.wait()
            cancelled = time.monotonic()
            tg.cancel_scope.cancel()
        # At once: a sleep the cancel did not reach would last Retry-After's 3 s.
        assert time.monotonic() - cancelled < 2.0
        await anyio.sleep(0.3)
    assert server.requests == 1  # the attempt count did not move


def test_row21_ctrl_c_during_a_blocking_backoff(server: MisbehavingServer) -> None:
    server.always(answer(503, b"", {"Retry-After": "3"}))
    sleeping = threading.Event()
    with SyncClient(
        api_key=CANARY_KEY,
        base_url=server.url,
        retry_policy=FAST,
        event_hooks=[lambda e: sleeping.set() if e.kind == "retry_scheduled" else None],
    ) as client:
        with ctrl_c_when(sleeping) as ctrl_c, pytest.raises(KeyboardInterrupt):
            client.sync.request_sync(new_company())
        assert ctrl_c.raised_at is not None
        time.sleep(0.3)
        assert server.requests == 1
