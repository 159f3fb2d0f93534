"""A fleet-wide pause with real processes: Codat's ``client.rateLimit.reached`` webhook,
applied in one process with ``webhooks.apply_rate_limit``, pauses every worker process of
the account (through ``RedisLimits``), a worker restarted while paused starts paused, and
``client.rateLimit.reset`` resumes them all. Counted, never timed: the guards only stop a
hung test; the latencies are printed (``-s``), not asserted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator

import anyio
import pytest

from codat_commerce_async import AsyncSyncClient, RedisLimits, webhooks
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, webhook_body

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

WORKER = """
import asyncio, json, logging, sys, time, uuid
from codat_commerce_async import AsyncSyncClient, RedisLimits

class Say(logging.Handler):
    def emit(self, record):
        print(f"{time.monotonic():.6f} {record.getMessage()}", flush=True)

async def main(redis_url, prefix, base_url, api_key, run_id, companies):
    log = logging.getLogger("codat_commerce_async.limits")
    log.addHandler(Say())
    log.setLevel(logging.INFO)
    limits = RedisLimits(redis_url, egress_key="loopback", prefix=prefix,
                         requests_per_minute=240)
    run = uuid.UUID(run_id)
    async with AsyncSyncClient(api_key=api_key, base_url=base_url, limits=limits) as client:
        ids = json.loads(companies)
        keys = lambda company: str(uuid.uuid5(run, company))
        async with client.sync.request_sync_many(ids, concurrency=1, idempotency_keys=keys) as rs:
            ok = [r.ok async for r in rs]
    await limits.aclose()
    print(f"{time.monotonic():.6f} done {sum(ok)}/{len(ok)}", flush=True)
asyncio.run(main(*sys.argv[1:]))
"""


class Worker:
    """One worker process; its output lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def said(self, words: str) -> float | None:
        """The monotonic instant of the first line saying ``words``."""
        for line in list(self.lines):
            instant, _, message = line.partition(" ")
            if words in message:
                return float(instant)
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()
        self._reader.join(timeout=10)


def wait_for(condition, what: str, guard: float = 120.0) -> None:
    """Poll ``condition`` until true; the guard only stops a hung test."""
    deadline = time.monotonic() + guard
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[FakeCodatServer]:
    with FakeCodatServer(FakeCodat(sync_duration=0)) as running:
        yield running


def triggers(server: FakeCodatServer) -> int:
    return sum(1 for r in server.fake.requests if r.method == "POST")


async def test_a_rate_limit_webhook_pauses_and_resumes_every_worker(server, redis_url, prefix):
    run_id = str(uuid.uuid4())
    shares = [[str(uuid.uuid4()) for _ in range(20)] for _ in range(3)]

    def start(share: list[str]) -> Worker:
        return Worker(
            redis_url, prefix, server.base_url, server.fake.api_key, run_id, json.dumps(share)
        )

    workers = [start(share) for share in shares]
    try:
        # Every worker is under way.
        wait_for(
            lambda: all(any(server.fake.syncs_started(c) for c in s) for s in shares),
            "every worker triggered a company",
        )
        # The webhook arrives at another process (a web service with a client of its own).
        receiver_limits = RedisLimits(redis_url, egress_key="loopback", prefix=prefix)
        async with AsyncSyncClient(
            api_key=server.fake.api_key, base_url=server.base_url, limits=receiver_limits
        ) as receiver:
            reached = webhooks.parse(
                webhook_body(
                    "client.rateLimit.reached",
                    {
                        "dailyQuota": 12000,
                        "quotaRemaining": 0,
                        "expiryDate": "2099-01-01T00:00:00Z",
                    },
                )
            )
            sent_at = time.monotonic()
            assert webhooks.apply_rate_limit(receiver, reached)
            await anyio.to_thread.run_sync(
                wait_for,
                lambda: all(w.said("paused fleet-wide") for w in workers),
                "every worker paused",
            )
            paused = max(w.said("paused fleet-wide") or 0 for w in workers)
            before = triggers(server)
            # A worker killed and replaced while paused: the replacement starts paused.
            workers[0].process.send_signal(signal.SIGKILL)
            workers[0].stop()
            workers[0] = start(shares[0])
            await anyio.to_thread.run_sync(
                wait_for, lambda: workers[0].said("paused fleet-wide"), "the replacement paused"
            )
            await anyio.sleep(3 * RedisLimits.PAUSE_POLL)  # a window to catch a stray trigger
            assert triggers(server) == before  # no worker sent a trigger while paused
            assert not all(w.said("done") for w in workers)  # work was left for after
            reset = webhooks.parse(webhook_body("client.rateLimit.reset", {}))
            resumed_at = time.monotonic()
            assert webhooks.apply_rate_limit(receiver, reset)
            await anyio.to_thread.run_sync(
                wait_for, lambda: all(w.said("done") for w in workers), "every worker done"
            )
        await receiver_limits.aclose()
        resumed = max(w.said("resumed fleet-wide") or 0 for w in workers)
        print(
            f"\nwebhook -> last worker paused: {paused - sent_at:.3f} s; "
            f"reset -> last worker resumed: {resumed - resumed_at:.3f} s"
        )
        for worker in workers:
            assert worker.said("done 20/20")
        assert triggers(server) > before
        assert all(server.fake.syncs_started(c) == 1 for s in shares for c in s)
    finally:
        for worker in workers:
            worker.stop()


async def test_a_pause_without_an_end_lasts_a_day_at_most_and_a_resume_ends_it(redis_url, prefix):
    shared = RedisLimits(redis_url, egress_key="loopback", prefix=prefix)
    other = RedisLimits(redis_url, egress_key="elsewhere", prefix=prefix)
    assert not await other.wait_unpaused()  # not paused: returns at once
    await shared.pause_bulk_runs(None)  # a reached webhook without an expiryDate
    left = await other.bulk_pause_left()  # every egress key of the account
    assert 24 * 3600 < left <= RedisLimits.PAUSE_AT_MOST
    assert other.bulk_runs_paused
    await shared.resume_bulk_runs()
    assert await other.bulk_pause_left() == 0
    assert not await other.wait_unpaused()
    await shared.aclose()
    await other.aclose()
