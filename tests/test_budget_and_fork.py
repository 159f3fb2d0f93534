"""The client-wide retry budget, and safety after os.fork()."""

from __future__ import annotations

import asyncio

import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    ConfigurationError,
    InternalServerError,
    RetryBudget,
    RetryBudgetExhaustedError,
    SyncClient,
)

from ._http import httpx
from .conftest import (
    CANARY_KEY,
    COMPANY,
    SUMMARY,
    ScriptedCodat,
    error_body,
    in_child,
    virtual_clock,
)


def test_budget_arithmetic() -> None:
    budget = RetryBudget(20, retry_cost=5, timeout_cost=10, success_refund=1)
    assert budget.try_acquire(10) and budget.available == 10
    assert budget.try_acquire(10) and budget.available == 0
    assert not budget.try_acquire(5) and budget.available == 0
    budget.release(0)
    assert budget.available == 1
    budget.release(10)
    assert budget.available == 11
    budget.release(100)
    assert budget.available == 20  # never above capacity


def test_budget_costs() -> None:
    from codat_commerce_async import APIConnectionError, APITimeoutError

    budget = RetryBudget()
    assert budget.cost_of(APITimeoutError()) == 10
    assert budget.cost_of(APIConnectionError()) == 10
    assert budget.cost_of(None) == 5
    with pytest.raises(ConfigurationError):
        RetryBudget(-1)


@pytest.mark.anyio
async def test_empty_budget_fails_fast_with_a_clear_error(codat: ScriptedCodat) -> None:
    codat.default = lambda request: httpx.Response(503, json=error_body(503))
    budget = RetryBudget(10, retry_cost=5)
    clock = virtual_clock()
    transport = httpx.MockTransport(codat)
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=transport, retry_budget=budget, clock=clock
    ) as client:
        with pytest.raises(InternalServerError) as first:
            await client.sync.request_sync(COMPANY)
        assert first.value.attempts == 3 and budget.available == 0
        with pytest.raises(RetryBudgetExhaustedError) as second:
            await client.sync.request_sync(COMPANY)
        assert second.value.attempts == 1
        assert isinstance(second.value.__cause__, InternalServerError)
        assert second.value.idempotency_key == codat.keys[-1]
        assert "retry budget" in str(second.value)
        assert len(codat.requests) == 4
        codat.default = lambda request: httpx.Response(200, json=SUMMARY)
        await client.sync.request_sync(COMPANY)
        assert budget.available == 1  # a success refills


@pytest.mark.anyio
async def test_budget_can_be_turned_off(codat: ScriptedCodat) -> None:
    codat.default = lambda request: httpx.Response(503, json=error_body(503))
    clock = virtual_clock()
    transport = httpx.MockTransport(codat)
    async with AsyncSyncClient(
        api_key=CANARY_KEY, transport=transport, retry_budget=None, max_retries=5, clock=clock
    ) as client:
        for _ in range(3):
            with pytest.raises(InternalServerError):
                await client.sync.request_sync(COMPANY)
    assert len(codat.requests) == 18


def test_owned_pool_is_rebuilt_in_a_forked_child() -> None:
    from ._sockets import MisbehavingServer

    with MisbehavingServer() as server:
        client = AsyncSyncClient(api_key=CANARY_KEY, base_url=server.url)
        loop = asyncio.new_event_loop()  # the parent's pooled connection belongs to it
        loop.run_until_complete(client.sync.request_sync(COMPANY))

        def child() -> int:
            asyncio.run(client.sync.request_sync(COMPANY))  # a fresh loop and a fresh pool
            return 0

        assert in_child(child) == 0
        assert server.requests == 2
        assert server.stats.connections_made == 2  # the child never used the parent's socket
        loop.run_until_complete(client.sync.request_sync(COMPANY))
        assert server.stats.connections_made == 2  # the parent's pool is intact
        loop.run_until_complete(client.aclose())
        loop.close()


def _refusedin_child(call) -> int:  # type: ignore[no-untyped-def]
    """Exit code of a forked child making ``call()``: 0 if it got the fork error."""

    def child() -> int:
        try:
            call()
        except RuntimeError as exc:
            return 0 if "os.fork()" in str(exc) else 4
        return 5

    return in_child(child)


def test_a_user_transport_refuses_in_a_forked_child() -> None:
    # The SDK cannot rebuild a transport it did not make, and reusing it would share
    # the parent's sockets.
    client = AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(ScriptedCodat()))
    assert _refusedin_child(lambda: asyncio.run(client.sync.request_sync(COMPANY))) == 0
    asyncio.run(client.aclose())


def test_borrowed_pool_refuses_in_a_forked_child() -> None:
    codat = ScriptedCodat()
    http = httpx.AsyncClient(transport=httpx.MockTransport(codat))
    client = AsyncSyncClient(api_key=CANARY_KEY, http_client=http)
    assert _refusedin_child(lambda: asyncio.run(client.sync.request_sync(COMPANY))) == 0
    asyncio.run(http.aclose())


def test_blocking_facade_refuses_in_a_forked_child() -> None:
    codat = ScriptedCodat()
    with SyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat)) as client:
        assert _refusedin_child(lambda: client.sync.request_sync(COMPANY)) == 0
        assert client.sync.request_sync(COMPANY).company_id == COMPANY
