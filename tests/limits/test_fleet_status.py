"""``codat-commerce fleet status`` against a real Redis during a real bulk run: the shared
rate, the 429 gate, leases, the daily quota and the pause, read without touching Redis.
Counted, never timed (the guards only stop a hung test)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from codat_commerce_async import AsyncSyncClient, RedisLimits
from codat_commerce_async.cli import main
from codat_commerce_async.testing import FakeCodat, RateLimits

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"


async def status(capsys, redis_url: str, prefix: str) -> dict:
    code = await anyio.to_thread.run_sync(
        main, ["fleet", "status", "--redis-url", redis_url, "--prefix", prefix, "--json"]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1, out
    return json.loads(out[0])


async def snapshot(redis, prefix: str) -> dict:
    """Every key of the account with its value (TTLs left out: they run down)."""
    state = {}
    async for key in redis.scan_iter(match=f"{{{prefix}}}:*"):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            state[key] = await redis.get(key)
        elif kind == "hash":
            state[key] = await redis.hgetall(key)
        else:
            state[key] = await redis.zrange(key, 0, -1, withscores=True)
    return state


async def test_status_during_a_run_shows_the_fleet_and_changes_nothing(
    redis_url, prefix, redis, capsys
):
    fake = FakeCodat(sync_duration=0, rate_limits=RateLimits(daily_quota=5000))
    shared = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, requests_per_minute=600)
    other = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    async with AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        limits=shared,
    ) as client:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with client.sync.request_sync_many(ids, concurrency=2) as results:
                    assert all([r.ok async for r in results])

            tg.start_soon(run)
            with anyio.fail_after(60):  # a guard, not a speed assertion
                while len(fake.requests) < 10:
                    await anyio.sleep(0.02)
            async with other.trigger_lease(COMPANY):  # a lease held somewhere in the fleet
                seen = await status(capsys, redis_url, prefix)
            (rate,) = seen["rates"]
            assert rate["egress_key"] == "nat-1" and rate["limit_per_minute"] == 600
            assert rate["used_last_minute"] >= 9  # counted as answers come back
            assert rate["gate"] == "open"
            assert seen["leases"]["triggers"] >= 1
            assert seen["leases"]["oldest_seconds"] is not None
            assert seen["daily_quota"]["remaining"] is not None
            assert seen["daily_quota"]["limit"] == 5000
            assert seen["bulk_runs_paused"] is False
            client.pause_bulk_runs(until=datetime.now(timezone.utc) + timedelta(minutes=5))
            with anyio.fail_after(60):
                while not (await status(capsys, redis_url, prefix))["bulk_runs_paused"]:
                    await anyio.sleep(0.05)
            client.resume_bulk_runs()
    await shared.close_gate(60)
    seen = await status(capsys, redis_url, prefix)
    assert seen["rates"][0]["gate"] == "closed" and seen["rates"][0]["gate_until"]
    assert seen["bulk_runs_paused"] is False
    # Reads only: the fleet's keys are as they were.
    before = await snapshot(redis, prefix)
    await status(capsys, redis_url, prefix)
    assert await snapshot(redis, prefix) == before
    await shared.aclose()
    await other.aclose()


def test_the_table_says_it_in_words(redis_url, prefix, capsys):
    assert main(["fleet", "status", "--redis-url", redis_url, "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    for words in ("Codat fleet", "not learnt yet", "running", "trigger leases"):
        assert words in out


@pytest.mark.parametrize("extra", [["--json"], []])
def test_watch_refreshes_until_ctrl_c(redis_url, prefix, extra):
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codat_commerce_async.cli",
            "fleet",
            "status",
            "--watch",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    marker = '"prefix"' if extra else "Codat fleet"
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a speed assertion
        while sum(marker in line for line in lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(marker in line for line in lines) >= 2  # it refreshed
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=30)
        assert watch.returncode == 130
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.communicate()
        reader.join(timeout=10)
    if extra:
        assert all(json.loads(line)["prefix"] == prefix for line in lines if line.strip())


def test_a_wrong_password_is_not_in_the_error(redis_url, capsys):
    secret = "fleet-hunter5"
    address = redis_url.split("//", 1)[1]
    assert main(["fleet", "status", "--redis-url", f"redis://:{secret}@{address}"]) == 1
    captured = capsys.readouterr()
    assert "cannot read the fleet's state" in captured.err
    assert secret not in captured.err + captured.out
