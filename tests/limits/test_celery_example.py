"""examples/celery_fleet.py for real: Celery workers (prefork pool, Redis broker), one
Redis for the limits, the fake Codat on a loopback socket. A worker SIGKILLed mid-run
(the whole process group: main process and pool children) leaves its chunks
unacknowledged; another worker takes them back after the visibility timeout, and every
company is synced exactly once. Counted, never timed (the guards only stop a hung test)."""

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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "celery_fleet.py"


@pytest.fixture
def fake_server() -> Iterator[FakeCodatServer]:
    with FakeCodatServer(FakeCodat(sync_duration=0)) as server:
        yield server


@pytest.fixture
def settings(redis_url, prefix, fake_server, monkeypatch) -> dict[str, str]:
    values = {
        "REDIS_URL": redis_url,
        "CODAT_BASE_URL": fake_server.base_url,
        "CODAT_API_KEY": fake_server.fake.api_key,
        "CODAT_QUEUE": f"{prefix}-queue",
        "CODAT_LIMITS_PREFIX": prefix,
        "CODAT_EGRESS_KEY": "loopback",
        "CODAT_REQUESTS_PER_MINUTE": "300",  # 5 a second: the run outlives the kill
        "CODAT_LEASE_TTL": "3",
        "CODAT_VISIBILITY_TIMEOUT": "3",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def example(settings):
    sys.modules.pop("codat_examples.celery_fleet", None)  # settings are read at import
    module = load_example("celery_fleet")
    yield module
    sys.modules.pop("codat_examples.celery_fleet", None)


@pytest.fixture
def start_worker(settings):
    workers: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "worker", "--concurrency=2", f"--hostname={name}@%h"],
            env={**os.environ, **settings},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool too
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


@pytest.mark.slow
async def test_a_sigkilled_worker_s_chunks_are_redelivered_and_synced_once(
    example, start_worker, fake_server
):
    fake = fake_server.fake
    ids = [str(uuid.uuid4()) for _ in range(30)]
    first = start_worker("first")
    example.enqueue(ids)
    with anyio.fail_after(180):  # a guard against a hang, not a speed assertion
        while fake.syncs_started() < 4:  # the first worker is mid-chunk (two chunks)
            await anyio.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)  # the machine is gone: nothing acknowledged
        first.wait()
        assert fake.syncs_started() < len(ids)
        start_worker("second")
        while fake.syncs_started() < len(ids):
            await anyio.sleep(0.1)
        # The chunks the first worker held are done again: the companies it had
        # triggered are replays of Codat's stored answers.
        while not any(r.replayed for r in fake.requests):
            await anyio.sleep(0.1)
    assert all(fake.syncs_started(company) == 1 for company in ids)
    fake.assert_no_duplicate_syncs()
