"""The client-side token bucket and its place in the call path."""

from __future__ import annotations

import itertools
import math

import anyio
import pytest

from codat_commerce_async import (
    APITimeoutError,
    AsyncSyncClient,
    ConfigurationError,
    SyncClient,
)
from codat_commerce_async._ratelimit import RateLimiter

from ._http import httpx
from .conftest import CANARY_KEY, COMPANY, ScriptedCodat, virtual_clock


def test_burst_then_one_token_per_interval() -> None:
    clock = virtual_clock()
    limiter = RateLimiter(60, burst=3, clock=clock.now, sleep=clock.sleep)

    async def main() -> list[float]:
        times = []
        for _ in range(6):
            assert await limiter.acquire()
            times.append(clock())
        return times

    times = anyio.run(main)
    assert times[:3] == [1000.0] * 3  # the burst
    assert [round(b - a, 6) for a, b in itertools.pairwise(times[2:])] == [1.0, 1.0, 1.0]


@pytest.mark.anyio
async def test_concurrent_waiters_are_spread_at_the_rate() -> None:
    clock = virtual_clock()
    limiter = RateLimiter(600, clock=clock.now, sleep=clock.sleep)  # 10/s, burst 10
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock())

    async with clock.autojump():
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(one)
    times.sort()
    assert times.count(1000.0) == 10
    # Then one every 0.1 s: 20 more take 2 s, never faster.
    assert times[-1] == pytest.approx(1002.0)
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= 10 + 10 * (times[j] - times[i]) + 1e-6


@pytest.mark.anyio
async def test_max_wait_refuses_without_taking_a_token() -> None:
    clock = virtual_clock()
    limiter = RateLimiter(60, burst=1, clock=clock.now, sleep=clock.sleep)
    assert await limiter.acquire()
    assert not await limiter.acquire(max_wait=0.5)  # the next token is 1 s away
    assert clock.sleeps == []
    assert await limiter.acquire(max_wait=1.0)
    assert clock.sleeps == [pytest.approx(1.0)]


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    clock = virtual_clock()
    sleep = {"with": anyio.sleep}
    limiter = RateLimiter(60, burst=1, clock=clock.now, sleep=lambda s: sleep["with"](s))
    await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()  # would wait 1 s (real sleep): cancelled
    # The token it reserved is back: the next waiter waits 1 s, not 2.
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    sleep["with"] = record
    await limiter.acquire()
    assert waits == [pytest.approx(1.0)]


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "900"])
def test_rates_are_validated(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        AsyncSyncClient(api_key=CANARY_KEY, requests_per_minute=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        SyncClient(api_key=CANARY_KEY, requests_per_minute=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_no_limiter_by_default_and_none_consulted(
    client: AsyncSyncClient, codat: ScriptedCodat, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.limits.current_rate is None

    async def boom(*args: object, **kwargs: object) -> bool:
        raise AssertionError("the throttle must not run without a limiter")

    monkeypatch.setattr(RateLimiter, "acquire", boom)
    await client.sync.request_sync(COMPANY)
    assert len(codat.requests) == 1


@pytest.mark.anyio
async def test_client_option_limits_single_calls(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(codat),
        requests_per_minute=120,
        clock=clock,
    ) as client:  # 2/s, burst 2
        for _ in range(5):
            await client.sync.get_latest_sync(COMPANY)
    assert len(codat.requests) == 5
    assert clock.sleeps == [pytest.approx(0.5)] * 3


@pytest.mark.anyio
async def test_a_wait_past_the_deadline_fails_at_once_with_nothing_sent(
    codat: ScriptedCodat,
) -> None:
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(codat),
        requests_per_minute=1,
        deadline=5.0,
        clock=clock,
    ) as client:
        await client.sync.request_sync(COMPANY)
        with pytest.raises(APITimeoutError, match="rate limit") as caught:
            await client.sync.request_sync(COMPANY)
    assert caught.value.phase == "deadline"
    assert caught.value.attempts == 0
    assert len(codat.requests) == 1
    assert clock.sleeps == []


def test_run_limiters_stack_and_unstack_in_any_order() -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY, requests_per_minute=100)
    limits = client.limits
    base = limits.current_rate
    assert base is not None
    first, second = limits.run_rate(1), limits.run_rate(2)
    first.__enter__()
    second_bucket = second.__enter__()
    assert limits.current_rate is second_bucket
    first.__exit__(None, None, None)
    assert limits.current_rate is second_bucket
    second.__exit__(None, None, None)
    assert limits.current_rate is base
    anyio.run(client.aclose)


@pytest.mark.anyio
async def test_the_limiter_runs_on_the_clients_clock(codat: ScriptedCodat) -> None:
    clock = virtual_clock()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(codat),
        requests_per_minute=60,
        clock=clock,
    ) as client:
        async with clock.autojump():
            for _ in range(3):
                await client.sync.get_latest_sync(COMPANY)
    assert clock.now() == pytest.approx(1002.0)
