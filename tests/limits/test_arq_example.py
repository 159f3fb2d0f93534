"""examples/arq_fleet.py for real: arq worker processes, one Redis, the fake Codat on a
loopback socket. Counted, never timed (the guards only stop a hung test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from codat_commerce_async.testing import FakeCodat, FakeCodatServer

from .._examples import load_example

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arq_fleet.py"


@pytest.fixture
def fake_server() -> Iterator[FakeCodatServer]:
    with FakeCodatServer(FakeCodat(sync_duration=0)) as server:
        yield server


class Fleet:
    """arq worker processes running the example, configured through the environment."""

    def __init__(self, redis_url: str, server: FakeCodatServer, prefix: str, **env: str) -> None:
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "CODAT_BASE_URL": server.base_url,
            "CODAT_API_KEY": server.fake.api_key,
            "CODAT_QUEUE": f"{prefix}:queue",
            "CODAT_LIMITS_PREFIX": prefix,
            "CODAT_EGRESS_KEY": "loopback",
            **env,
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, str(EXAMPLE), "worker"],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)  # arq finishes cleanly on SIGTERM
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@pytest.fixture
def example(monkeypatch, redis_url, prefix):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CODAT_QUEUE", f"{prefix}:queue")
    sys.modules.pop("codat_examples.arq_fleet", None)  # settings are read at import
    module = load_example("arq_fleet")
    yield module
    sys.modules.pop("codat_examples.arq_fleet", None)


@pytest.fixture
async def arq_pool(redis_url):
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
def fleet(redis_url, prefix, fake_server):
    """Start worker processes with ``fleet(count, **env)``; they are stopped afterwards."""
    fleets: list[Fleet] = []

    def start(count: int, **env: str) -> Fleet:
        fleet = Fleet(redis_url, fake_server, prefix, **env)
        fleets.append(fleet)
        fleet.start(count)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()


def companies(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def test_a_run_over_workers_and_a_redelivered_chunk(example, arq_pool, fleet, fake_server):
    fleet(2, CODAT_REQUESTS_PER_MINUTE="6000")
    ids = companies(40)
    with anyio.fail_after(120):
        run_id, jobs = await example.enqueue_run(arq_pool, ids, chunk_size=10)
        first = await example.gather_results(jobs)
        # Enqueueing the same run again adds nothing (job ids come from the run id).
        _, same_jobs = await example.enqueue_run(arq_pool, ids, chunk_size=10, run_id=run_id)
        assert [j.job_id for j in same_jobs] == [j.job_id for j in jobs]
        # A chunk delivered again (as arq does after a worker dies): same run id.
        redelivered = await arq_pool.enqueue_job(
            "trigger_chunk", run_id, ids[:10], _queue_name=example.QUEUE
        )
        replayed = await redelivered.result(timeout=None, poll_delay=0.2)

    fake = fake_server.fake
    assert sorted(row["company_id"] for row in first) == sorted(ids)
    assert all(row["ok"] for row in first + replayed)
    assert all(fake.syncs_started(company) == 1 for company in ids)
    fake.assert_no_duplicate_syncs()
    by_company = {row["company_id"]: row["sync_id"] for row in first}
    assert {row["company_id"]: row["sync_id"] for row in replayed} == {
        c: by_company[c] for c in ids[:10]
    }  # Codat's stored answers, not new syncs
    assert sum(r.replayed for r in fake.requests) == 10


@pytest.mark.slow
async def test_a_worker_killed_mid_run(example, arq_pool, fleet, fake_server):
    workers = fleet(
        1,
        CODAT_REQUESTS_PER_MINUTE="600",  # 10 a second: the run outlives the kill
        CODAT_JOB_TIMEOUT="5",  # arq redelivers a dead worker's job 15 s after it started
        CODAT_LEASE_TTL="3",
    )
    fake = fake_server.fake
    ids = companies(60)
    with anyio.fail_after(180):
        _, jobs = await example.enqueue_run(arq_pool, ids, chunk_size=10)
        while len(fake.requests) < 10:  # the first worker is mid-run
            await anyio.sleep(0.05)
        workers.start(1)
        victim = workers.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        outcome = await example.gather_results(jobs)

    assert sorted(row["company_id"] for row in outcome) == sorted(ids)
    assert all(row["ok"] for row in outcome)
    assert any(row["job_try"] > 1 for row in outcome)  # the dead worker's chunks, redone
    assert all(fake.syncs_started(company) == 1 for company in ids)
    fake.assert_no_duplicate_syncs()


def test_a_worker_says_what_it_does_and_a_missing_key_is_one_clear_line(redis_url, prefix):
    """Without CODAT_API_KEY the worker stops with that error, not a KeyError from its
    shutdown hiding it; and it says which queue and Redis it serves (never a password)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CODAT_API_KEY", "CODAT_AUTH")}
    env.update({"REDIS_URL": redis_url, "CODAT_QUEUE": f"{prefix}:queue"})
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"jobs from queue '{prefix}:queue' on Redis" in done.stderr
    assert "arq_fleet worker: ConfigurationError: " in done.stderr
    assert "CODAT_API_KEY" in done.stderr
    assert "KeyError" not in done.stderr and "Traceback" not in done.stderr
