"""RedisLimits against a real redis-server, across real processes.

No assertion reads a wall clock: rates are checked by counting what a slow limit admits
at once (``max_wait=0``), leases by who holds them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap

import anyio
import httpx
import pytest

from codat_commerce_async import ConfigurationError, LimitsUnavailableError, RedisLimits

from ._redis import exception_chain, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"


def limits(url: str, prefix: str, **kwargs) -> RedisLimits:
    kwargs.setdefault("egress_key", "nat-1")
    return RedisLimits(url, prefix=prefix, **kwargs)


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """A real worker process running ``code`` (RedisLimits imported as in user code)."""
    script = "import asyncio, sys\nfrom codat_commerce_async import RedisLimits\n" + (
        textwrap.dedent(code)
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


ADMIT = """
async def main(url, prefix):
    limits = RedisLimits(url, egress_key="nat-1", prefix=prefix, requests_per_minute=1, burst=4)
    admitted = [await limits.acquire(max_wait=0) for _ in range(5)]
    await limits.aclose()
    print(sum(admitted))
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_processes_share_one_rate(redis_url, prefix):
    # 1 a minute with a burst of 4: whatever the interleaving, 4 requests in all go at once.
    workers = [spawn(ADMIT, redis_url, prefix) for _ in range(3)]
    admitted = [int(finish(w)) for w in workers]
    assert sum(admitted) == 4


SKEWED = (
    """
import time
_real_time, _real_monotonic = time.time, time.monotonic
time.time = lambda: _real_time() + float(sys.argv[3])  # this machine's clock is off
time.monotonic = lambda: _real_monotonic() + float(sys.argv[3])
"""
    + ADMIT
)


async def test_skewed_worker_clocks_change_nothing(redis_url, prefix):
    # Workers a day ahead and an hour behind share the rate exactly as in-sync ones do:
    # every decision is timed by Redis's TIME.
    workers = [spawn(SKEWED, redis_url, prefix, skew) for skew in ("86400", "-3600", "0")]
    admitted = [int(finish(w)) for w in workers]
    assert sum(admitted) == 4


async def test_another_egress_key_has_its_own_rate(redis_url, prefix):
    first = limits(redis_url, prefix, requests_per_minute=1)
    second = limits(redis_url, prefix, requests_per_minute=1, egress_key="nat-2")
    assert await first.acquire(max_wait=0)
    assert not await first.acquire(max_wait=0)
    assert await second.acquire(max_wait=0)
    await first.aclose()
    await second.aclose()


async def test_acquire_waits_for_its_reserved_slot(redis_url, prefix):
    shared = limits(redis_url, prefix, requests_per_minute=6000)  # a slot every 10 ms
    results = [await shared.acquire() for _ in range(5)]
    assert results == [True] * 5
    await shared.aclose()


GATE = """
async def main(url, prefix):
    limits = RedisLimits(url, egress_key="nat-1", prefix=prefix)
    await limits.close_gate(120)
    await limits.aclose()
asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_429_in_one_process_pauses_all(redis_url, prefix):
    finish(spawn(GATE, redis_url, prefix))
    here = limits(redis_url, prefix)
    assert 100 < await here.gate_left() <= 120
    assert not await here.acquire(max_wait=5)  # would wait ~120 s: refused, nothing taken
    other_ip = limits(redis_url, prefix, egress_key="nat-2")
    assert await other_ip.gate_left() == 0
    await here.aclose()
    await other_ip.aclose()


async def test_one_trigger_per_company_across_clients(redis_url, prefix):
    first = limits(redis_url, prefix)
    second = limits(redis_url, prefix)
    order: list[str] = []
    released = anyio.Event()

    async def holder() -> None:
        async with first.trigger_lease(COMPANY):
            order.append("first in")
            await released.wait()
            order.append("first out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        while not order:
            await anyio.sleep(0.01)
        with anyio.move_on_after(0.3):
            async with second.trigger_lease(COMPANY):
                order.append("second in (too early)")
        released.set()
        async with second.trigger_lease(COMPANY):
            order.append("second in")
    assert order == ["first in", "first out", "second in"]
    await first.aclose()
    await second.aclose()


async def test_at_most_n_requests_per_company(redis_url, prefix):
    shared = limits(redis_url, prefix, per_company_concurrency=2)
    inside = 0
    most = 0
    two_inside = anyio.Event()

    async def request() -> None:
        nonlocal inside, most
        async with shared.company_slot(COMPANY):
            inside += 1
            most = max(most, inside)
            if inside == 2:
                two_inside.set()
            await two_inside.wait()  # the first holds its slot until a second is in
            await anyio.sleep(0)
            inside -= 1

    with anyio.fail_after(60):  # a guard against a hang, not a speed assertion
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(request)
    assert most == 2
    await shared.aclose()


HOLD = """
async def main(url, prefix, company):
    limits = RedisLimits(url, egress_key="nat-1", prefix=prefix, lease_ttl=3.0)
    async with limits.trigger_lease(company), limits.company_slot(company):
        print("holding", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_sigkilled_workers_leases_expire(redis_url, prefix, redis):
    worker = spawn(HOLD, redis_url, prefix, COMPANY)
    try:
        assert worker.stdout is not None
        line = await anyio.to_thread.run_sync(worker.stdout.readline)
        assert line.strip() == "holding"
        survivor = limits(redis_url, prefix, lease_ttl=3.0, per_company_concurrency=1)
        assert await redis.exists(f"{{{prefix}}}:trigger:{COMPANY}") == 1  # the worker's lease
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        with anyio.fail_after(60):  # the lease expires within lease_ttl; no speed asserted
            async with survivor.trigger_lease(COMPANY), survivor.company_slot(COMPANY):
                pass
        await survivor.aclose()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for stream in (worker.stdout, worker.stderr):
            if stream is not None:
                stream.close()


async def test_leases_are_refreshed_while_held(redis_url, prefix, redis):
    holder = limits(redis_url, prefix, lease_ttl=30.0)
    lease = f"{{{prefix}}}:trigger:{COMPANY}"
    slots = f"{{{prefix}}}:requests:{COMPANY}"
    async with holder.trigger_lease(COMPANY), holder.company_slot(COMPANY):
        await redis.pexpire(lease, 500)  # as if 29.5 s had passed without a refresh
        await redis.pexpire(slots, 500)
        assert await holder.refresh_leases() == 2
        assert await redis.pttl(lease) > 20_000
        assert await redis.pttl(slots) > 20_000
    assert await redis.exists(lease) == 0
    assert await redis.exists(slots) == 0
    await holder.aclose()


async def test_the_refresh_runs_by_itself(redis_url, prefix, redis):
    holder = limits(redis_url, prefix, lease_ttl=6.0)  # refreshed every 2 s
    lease = f"{{{prefix}}}:trigger:{COMPANY}"
    async with holder.trigger_lease(COMPANY):
        await redis.pexpire(lease, 100_000)  # longer than a refresh sets: it will shrink
        with anyio.fail_after(60):  # a guard, not a speed assertion
            while not 0 < await redis.pttl(lease) <= 6_000:
                await anyio.sleep(0.05)
    await holder.aclose()


async def test_a_lease_taken_over_is_not_refreshed_or_released(redis_url, prefix, redis):
    holder = limits(redis_url, prefix)
    lease = f"{{{prefix}}}:trigger:{COMPANY}"
    async with holder.trigger_lease(COMPANY):
        await redis.set(lease, "someone-else", px=60_000)  # expired and taken meanwhile
        assert await holder.refresh_leases() == 0
    assert await redis.get(lease) == b"someone-else"  # not deleted by the old holder
    await holder.aclose()


async def test_quota_is_shared_and_decided_on_the_servers_clock(redis_url, prefix, redis):
    seconds, micros = await redis.time()
    server_now = seconds + micros / 1e6
    first = limits(redis_url, prefix, quota_reserve=10)
    second = limits(redis_url, prefix, quota_reserve=10)
    assert (await second.quota_decision()).action == "go"
    reset = httpx.Headers(
        {
            "x-rate-limit-limit": "2000",
            "x-rate-limit-remaining": "7",
            "x-rate-limit-reset": str(int(server_now) + 30),  # epoch seconds, server time
        }
    )
    await first.observe(reset)
    # Below the reserve, but the reset is within a minute on Redis's clock: go on.
    assert (await second.quota_decision()).action == "go"
    far = httpx.Headers({**reset, "x-rate-limit-reset": str(int(server_now) + 7200)})
    await first.observe(far)  # a later reset: a new period
    decision = await second.quota_decision()
    assert decision.action == "stop"
    assert decision.snapshot is not None and decision.snapshot.remaining == 7
    await first.aclose()
    await second.aclose()


async def test_unreachable_at_start_fails_before_anything_is_sent(prefix):
    dead = limits(f"redis://127.0.0.1:{free_port()}/0", prefix)
    with pytest.raises(LimitsUnavailableError, match="nothing was sent"):
        await dead.acquire()
    with pytest.raises(LimitsUnavailableError):
        await dead.ping()
    await dead.aclose()


async def test_unreachable_mid_run_falls_back_then_recovers(redis_process, prefix, caplog):
    shared = limits(redis_process.url, prefix, probe_interval=0.05, requests_per_minute=6000)
    assert await shared.acquire()
    redis_process.stop()
    with caplog.at_level(logging.WARNING, logger="codat_commerce_async.limits"):
        assert await shared.acquire()  # served by the in-process fallback
        async with shared.trigger_lease(COMPANY), shared.company_slot(COMPANY):
            pass
        await shared.close_gate(0)
        assert shared.degraded
        redis_process.start()  # same port; its state is gone (no persistence)
        await anyio.sleep(0.1)  # past probe_interval
        assert await shared.acquire()
        assert not shared.degraded
    messages = [r.getMessage() for r in caplog.records]
    assert any("in-process limits" in m for m in messages)
    assert any("shared limits restored" in m for m in messages)
    await shared.aclose()


async def test_redis_restart_loses_state_but_nothing_breaks(redis_process, prefix):
    shared = limits(redis_process.url, prefix, lease_ttl=30.0)
    async with shared.trigger_lease(COMPANY):
        await shared.close_gate(600)
        redis_process.stop()
        redis_process.start()  # scripts and keys are gone
    # The gate died with the server, the lease too; the scripts load again (NOSCRIPT).
    assert await shared.gate_left() == 0
    assert await shared.acquire(max_wait=0)
    async with shared.trigger_lease(COMPANY):
        pass
    assert not shared.degraded
    await shared.aclose()


def test_refused_on_trio():
    import trio

    async def build() -> None:
        RedisLimits("redis://127.0.0.1:1/0", egress_key="nat-1")

    with pytest.raises(ConfigurationError, match=r"asyncio.*not trio"):
        trio.run(build)


async def test_refused_on_trio_at_use_too(redis_url, prefix):
    shared = limits(redis_url, prefix)  # built outside any loop is fine...
    import trio

    async def use() -> None:
        await shared.acquire()

    with pytest.raises(ConfigurationError, match="trio"):
        await asyncio.to_thread(trio.run, use)  # ...but it is never used on trio
    await shared.aclose()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"egress_key": ""}, "egress_key"),
        ({"egress_key": "has space"}, "egress_key"),
        ({"prefix": "x\n"}, "prefix"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"burst": 0}, "burst"),
        ({"per_company_concurrency": 0}, "per_company_concurrency"),
        ({"lease_ttl": -1}, "lease_ttl"),
        ({"quota_reserve": -1}, "quota_reserve"),
    ],
)
def test_settings_are_validated(kwargs, match):
    kwargs.setdefault("egress_key", "nat-1")
    with pytest.raises(ConfigurationError, match=match):
        RedisLimits("redis://127.0.0.1:1/0", **kwargs)


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://:hunter2@[::1", 42])
def test_a_bad_url_is_refused_without_echoing_it(url):
    with pytest.raises(ConfigurationError, match="value not shown") as caught:
        RedisLimits(url, egress_key="nat-1")
    assert "hunter2" not in str(caught.value)


def _frames_outside_this_file(exc: BaseException) -> str:
    """The local variables of every frame the error went through, but the test's own."""
    import traceback

    return "\n".join(
        repr(frame.f_locals)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
        if frame.f_code.co_filename != __file__
    )


@pytest.mark.parametrize("delimiter", ["/", "#", "?"])
def test_a_password_that_breaks_the_url_is_nowhere_in_the_error(delimiter):
    # The parser stops at the delimiter and its message quotes what came before it.
    head, tail = "hunter2head", "tail7"
    with pytest.raises(ConfigurationError, match="percent-encode") as caught:
        RedisLimits(f"redis://:{head}{delimiter}{tail}@cache:6379/0", egress_key="nat-1")
    (only,) = exception_chain(caught.value)  # no __cause__, no __context__
    for text in (str(only), repr(only), _frames_outside_this_file(only)):
        assert head not in text and tail not in text


async def test_a_wrong_password_is_nowhere_in_the_error_or_its_frames(redis_url, prefix):
    secret = "hunter2-wrong-password"
    address = redis_url.split("//", 1)[1]
    shared = limits(f"redis://:{secret}@{address}", prefix)
    with pytest.raises(LimitsUnavailableError) as caught:
        await shared.acquire()
    await shared.aclose()
    (only,) = exception_chain(caught.value)
    for text in (str(only), repr(only), _frames_outside_this_file(only)):
        assert secret not in text


def test_a_sync_redis_client_is_refused():
    import redis

    with pytest.raises(ConfigurationError, match="asyncio"):
        RedisLimits(redis=redis.Redis(), egress_key="nat-1")


def test_url_or_client_not_both():
    with pytest.raises(ConfigurationError, match="exactly one"):
        RedisLimits(egress_key="nat-1")
