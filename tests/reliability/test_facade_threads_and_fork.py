"""Matrix rows 32 and 33: the blocking facade (inside a running loop, after close, after
fork), one client per event loop (the answer for threads), and concurrent triggers for
the same company: single calls versus the bulk engine's per-company guard."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.from_thread import start_blocking_portal

from codat_commerce_async import (
    AsyncSyncClient,
    ConflictError,
    SyncClient,
    SyncSummary,
)
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault, RateLimits

from .._http import httpx
from .._sockets import MisbehavingServer
from ..conftest import CANARY_KEY, in_child, new_company
from ._harness import FAST, eventually, fake_records, open_api, raises

pytestmark = pytest.mark.asyncio_only

LOOP_THREAD = "codat-commerce-async-loop"


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == LOOP_THREAD]


# -- row 32: the facade and threads --------------------------------------------------------


@pytest.mark.anyio
async def test_row32_facade_works_inside_a_running_loop(server: MisbehavingServer) -> None:
    # Deliberate difference from the note (which asks for an error): the facade runs its
    # own loop in a thread, so it works here, e.g. in a Jupyter cell (it blocks this loop
    # while it waits, which is why async code should use AsyncSyncClient).
    with SyncClient(api_key=CANARY_KEY, base_url=server.url) as client:
        assert isinstance(client.sync.request_sync(new_company()), SyncSummary)


def test_row32_close_leaves_no_thread_loop_or_portal(server: MisbehavingServer) -> None:
    before = len(_loop_threads())
    clients = [SyncClient(api_key=CANARY_KEY, base_url=server.url) for _ in range(5)]
    for client in clients:
        client.sync.request_sync(new_company())
    assert len(_loop_threads()) == before + 5
    for client in clients:
        client.close()
        client.close()  # idempotent
    assert len(_loop_threads()) == before
    with pytest.raises(RuntimeError):
        clients[0].sync.request_sync(new_company())
    assert server.wait_idle()


def test_row32_an_async_client_belongs_to_one_event_loop(server: MisbehavingServer) -> None:
    """The documented answer for threads: one AsyncSyncClient per loop (per thread), or
    one SyncClient shared by any number of threads."""
    with start_blocking_portal() as home:  # the loop the client is first used on
        client = home.call(_build, server.url)
        home.call(client.sync.request_sync, new_company())
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                asyncio.run(client.sync.request_sync(new_company()))
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "event loop" in str(errors[0])
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(client.sync.request_sync(new_company()))
        assert server.requests == 1
        home.call(client.aclose)


async def _build(url: str) -> AsyncSyncClient:
    return AsyncSyncClient(api_key=CANARY_KEY, base_url=url)


def test_row32_fork_rebuilds_an_owned_pool_over_real_sockets(server: MisbehavingServer) -> None:
    with start_blocking_portal() as home:
        client = home.call(_build, server.url)
        home.call(client.sync.request_sync, new_company())

        def child() -> int:
            asyncio.run(client.sync.request_sync(new_company()))  # fresh loop, fresh pool
            return 0

        assert in_child(child) == 0
        assert server.requests == 2
        assert server.stats.connections_made == 2  # the child never used the parent's socket
        home.call(client.sync.request_sync, new_company())  # the parent's pool is intact
        assert server.stats.connections_made == 2
        home.call(client.aclose)


def test_row32_fork_refuses_borrowed_pools_and_the_facade(server: MisbehavingServer) -> None:
    http = httpx.AsyncClient()
    borrowed = AsyncSyncClient(api_key=CANARY_KEY, base_url=server.url, http_client=http)
    with SyncClient(api_key=CANARY_KEY, base_url=server.url) as facade:
        facade.sync.request_sync(new_company())

        def child() -> int:
            codes = 0
            try:
                asyncio.run(borrowed.sync.request_sync(new_company()))
            except RuntimeError as exc:
                codes += "os.fork()" in str(exc)
            try:
                facade.sync.request_sync(new_company())
            except RuntimeError as exc:
                codes += "os.fork()" in str(exc)
            return 0 if codes == 2 else 6

        assert in_child(child) == 0
        assert server.requests == 1
    asyncio.run(http.aclose())


# -- row 33: the same company twice at once -------------------------------------------------


@pytest.mark.anyio
async def test_row33_single_calls_for_one_company_are_not_serialised(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    # Documented behaviour: single calls are independent (each its own key), so two at
    # once are two POSTs; Codat's per-company concurrency limit answers the second with
    # a 429, which the SDK waits out with the same key. For "at most one per company"
    # use request_sync_many, or the same idempotency_key (next test).
    company = new_company()
    fake.rate_limits = RateLimits(concurrent_per_company=1, retry_after=0.05)
    fake.faults.randomly(Fault.latency(0.3), 1.0)
    try:
        # Retries enough to wait out the first call's 0.3 s at 0.05 s a 429.
        async with open_api(mode, base_url=fake_server.base_url, max_retries=20) as api:
            async with anyio.create_task_group() as tg:
                tg.start_soon(api.request_sync, company)
                # The second while the first is inside Codat, however slow the machine.
                assert await eventually(lambda: fake.in_flight(company) == 1)
                tg.start_soon(api.request_sync, company)
    finally:
        fake.rate_limits = RateLimits()
    statuses = [r.status for r in fake_records(fake, company)]
    assert 429 in statuses and fake.syncs_started(company) == 2


@pytest.mark.anyio
async def test_row33_same_key_at_once_starts_one_sync(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company, key = new_company(), str(uuid.uuid4())
    fake.faults.randomly(Fault.latency(0.3), 1.0)
    results: list[SyncSummary] = []
    async with open_api(mode, base_url=fake_server.base_url) as api:

        async def one() -> None:
            results.append(await api.request_sync(company, idempotency_key=key))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            # The second while the first is inside Codat, however slow the machine.
            assert await eventually(lambda: fake.in_flight(company) == 1)
            tg.start_soon(one)
    # The second waited for the first (one client): the same answer, one request sent.
    assert [r.commerce_sync_id for r in results] == [results[0].commerce_sync_id] * 2
    assert fake.syncs_started(company) == 1
    assert len(fake_records(fake, company)) == 1


@pytest.mark.anyio
async def test_row33_bulk_runs_keep_one_trigger_per_company_in_flight(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company, other = new_company(), new_company()
    fake.rate_limits = RateLimits(concurrent_per_company=1, retry_after=0.05)
    fake.faults.randomly(Fault.latency(0.05), 1.0)
    ids = [company, other, company, company]
    try:
        async with open_api(mode, base_url=fake_server.base_url) as api:
            if api.facade is None:
                async with api.client.sync.request_sync_many(ids) as run:
                    results = [result async for result in run]
            else:
                facade = api.facade

                def run_blocking() -> list[Any]:
                    return list(facade.sync.request_sync_many(ids))

                results = await anyio.to_thread.run_sync(run_blocking)
    finally:
        fake.rate_limits = RateLimits()
    assert len(results) == 4 and all(getattr(r, "ok", False) for r in results)
    assert 429 not in [r.status for r in fake_records(fake)]  # never two at once
    assert fake.syncs_started(company) == 3 and fake.syncs_started(other) == 1


@pytest.mark.anyio
async def test_row33_facade_and_async_same_conflict_classification(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    fake.faults.script(Fault.error(409), company_id=company)
    async with open_api(mode, base_url=fake_server.base_url, retry_policy=FAST) as api:
        exc = await raises(ConflictError, api.request_sync(company))
    assert exc.attempts == 1
