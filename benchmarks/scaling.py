"""Scaling benchmark: worker processes sharing Codat's per-IP limit through one Redis.

    python benchmarks/scaling.py                     # redis, redis-kill, local (~4 minutes)
    python benchmarks/scaling.py --scenarios celery,celery-kill   # the Celery example
    python benchmarks/scaling.py --companies 400 --limit 200 --window 10   # quicker

The fake Codat runs on a loopback port in this process with a per-IP limit scaled down
for test time (default 400 requests in any 10 s window, i.e. 2,400 a minute: Codat's is
1,000 a minute), so its record of every request gives the measures:

- ``redis``: 4 arq workers (``examples/arq_fleet.py``) bulk-trigger the companies, all
  through one :class:`RedisLimits` (rate: 95% of the limit);
- ``redis-kill``: the same, one worker SIGKILLed a third of the way in; arq hands its
  chunks to the others once they time out, its leases expire, and the idempotency keys
  make the retried triggers replays;
- ``celery`` / ``celery-kill``: the same with Celery (``examples/celery_fleet.py``: 2
  workers of 2 prefork processes, Redis broker, ``acks_late``); the kill takes a whole
  worker (its process group) and its chunks come back after the visibility timeout (15 s);
- ``local``: no Redis: 4 processes, each with a quarter of the companies and its own
  in-process limit at the same 95% (each believes it owns the IP address).

Printed: 429s, the achieved rate of accepted requests against the limit, the most
requests received in any window of the limit's length, syncs per company, failures. A
benchmark, not a test: it measures and prints, and asserts nothing about time.
Needs Debian's ``redis-server`` (it starts its own on a free port unless ``--redis-url``)
and the ``redis``, ``arq`` and ``fake-server`` extras (``celery`` for its scenarios).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "arq_fleet.py"

from codat_commerce_async.testing import FakeCodat, FakeCodatServer, RateLimits  # noqa: E402

WORKERS = 4
HEADROOM = 0.95  # the clients' rate as a share of the limit: room for network jitter


@dataclass
class Outcome:
    scenario: str
    companies: int
    workers: int
    requests: int
    accepted: int
    rejected_429: int
    achieved_per_min: float
    limit_per_min: float
    achieved_vs_limit: float
    max_in_window: int
    window_limit: int
    syncs: int
    replays: int
    companies_not_once: int
    failed_results: int
    seconds: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server (or pass --redis-url)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="codat-scaling-redis-")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("arq_fleet", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["arq_fleet"] = module
    spec.loader.exec_module(module)
    return module


def measure(
    scenario: str,
    fake: FakeCodat,
    ids: Sequence[str],
    workers: int,
    limit: int,
    window: float,
    failed: int,
    seconds: float,
) -> Outcome:
    records = fake.requests
    times = sorted(r.received_at for r in records)
    accepted = sorted(r.received_at for r in records if r.status != 429)
    most, start = 0, 0
    for end, moment in enumerate(times):  # every request received, accepted or not
        while times[start] <= moment - window:
            start += 1
        most = max(most, end - start + 1)
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    achieved = (len(accepted) - 1) / span * 60 if span > 0 else 0.0
    limit_per_min = limit / window * 60
    return Outcome(
        scenario=scenario,
        companies=len(ids),
        workers=workers,
        requests=len(records),
        accepted=len(accepted),
        rejected_429=sum(r.status == 429 for r in records),
        achieved_per_min=round(achieved, 1),
        limit_per_min=round(limit_per_min, 1),
        achieved_vs_limit=round(achieved / limit_per_min, 3),
        max_in_window=most,
        window_limit=limit,
        syncs=len(fake.syncs),
        replays=sum(r.replayed for r in records),
        companies_not_once=sum(fake.syncs_started(c) != 1 for c in ids),
        failed_results=failed,
        seconds=round(seconds, 1),
    )


def spawn_workers(count: int, env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as sink:  # each child keeps its own handle
        return [
            subprocess.Popen(
                [sys.executable, str(EXAMPLE), "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
            for _ in range(count)
        ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def run_fleet(
    example: ModuleType,
    redis_url: str,
    server: FakeCodatServer,
    ids: Sequence[str],
    env: dict[str, str],
    kill_after: int | None,
) -> int:
    from arq import create_pool
    from arq.connections import RedisSettings

    log = Path(tempfile.mkstemp(prefix="codat-scaling-workers-", suffix=".log")[1])
    workers = spawn_workers(WORKERS, env, log)
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        _, jobs = await example.enqueue_run(pool, ids, chunk_size=10)
        if kill_after is not None:
            # The fake's record lives in the server thread: poll it.
            while len(server.fake.requests) < kill_after:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            print(f"   SIGKILLed worker pid {workers[0].pid}", flush=True)
        outcome = []
        for job in jobs:
            try:
                outcome.extend(await job.result(timeout=None, poll_delay=0.2))
            except Exception as exc:  # a chunk that failed as a whole (e.g. its job timed out)
                print(f"   job {job.job_id} failed: {type(exc).__name__}: {exc}", flush=True)
                outcome.append({"ok": False})
        durations = []
        for job in jobs:
            info = await job.result_info()
            if info is not None:
                durations.append((info.finish_time - info.start_time).total_seconds())
        durations.sort()
        redone = {row["company_id"] for row in outcome if row.get("job_try", 1) > 1}
        print(
            f"   chunk seconds: median {durations[len(durations) // 2]:.1f}, "
            f"max {durations[-1]:.1f}; companies in chunks arq ran again: {len(redone)}",
            flush=True,
        )
    finally:
        await pool.aclose()
        stop(workers)
        fallbacks = log.read_bytes().count(b"using in-process limits")  # noqa: ASYNC240
        print(f"   fallbacks to in-process limits (worker logs, {log}): {fallbacks}", flush=True)
    return sum(not row["ok"] for row in outcome)


CELERY_EXAMPLE = REPO / "examples" / "celery_fleet.py"


def run_celery(
    server: FakeCodatServer, ids: Sequence[str], env: dict[str, str], kill_after: int | None
) -> int:
    """Celery workers (examples/celery_fleet.py, prefork): WORKERS // 2 workers of two pool
    processes each. Returns the companies never synced (no result backend: the fake's
    record is the outcome)."""
    os.environ.update({k: env[k] for k in ("REDIS_URL", "CODAT_QUEUE")})
    spec = importlib.util.spec_from_file_location("celery_fleet", CELERY_EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    log = Path(tempfile.mkstemp(prefix="codat-scaling-celery-", suffix=".log")[1])
    with log.open("ab") as sink:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(CELERY_EXAMPLE),
                    "worker",
                    "--concurrency=2",
                    f"--hostname=bench{n}@%h",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,  # SIGKILL reaches the pool children too
            )
            for n in range(WORKERS // 2)
        ]
    fake = server.fake
    try:
        example.enqueue(list(ids))
        if kill_after is not None:
            while len(fake.requests) < kill_after:
                time.sleep(0.2)
            os.killpg(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            print(f"   SIGKILLed celery worker pid {workers[0].pid} and its pool", flush=True)
        last, quiet = -1, 0.0
        while fake.syncs_started() < len(ids) and quiet < 120:  # give up after 2 idle min
            time.sleep(1.0)
            done = fake.syncs_started()
            quiet = 0.0 if done != last else quiet + 1.0
            last = done
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        fallbacks = log.read_bytes().count(b"using in-process limits")
        print(f"   fallbacks to in-process limits (worker logs, {log}): {fallbacks}", flush=True)
    return sum(fake.syncs_started(c) == 0 for c in ids)


SOLO = """
import asyncio, json, sys
from codat_commerce_async import AsyncSyncClient

async def main(rpm, ids):
    async with AsyncSyncClient(requests_per_minute=rpm) as client:
        run = client.sync.request_sync_many(ids, requests_per_minute=rpm)
        async with run as results:
            failed = sum([not r.ok async for r in results])
    print(failed)

asyncio.run(main(float(sys.argv[1]), json.load(sys.stdin)))
"""


def run_local(ids: Sequence[str], env: dict[str, str], rpm: float) -> int:
    shards = [list(ids[i::WORKERS]) for i in range(WORKERS)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SOLO, str(rpm)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in shards
    ]
    for process, shard in zip(processes, shards, strict=True):
        assert process.stdin is not None
        process.stdin.write(json.dumps(shard))
        process.stdin.close()
    failed = 0
    for process in processes:
        assert process.stdout is not None
        failed += int(process.stdout.read().strip() or 0)
        process.wait()
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=400, help="requests per window per IP")
    parser.add_argument("--window", type=float, default=10.0, help="seconds")
    parser.add_argument("--scenarios", default="redis,redis-kill,local")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    rpm = args.limit / args.window * 60 * HEADROOM
    fake = FakeCodat(
        sync_duration=0,
        rate_limits=RateLimits(requests_per_ip=args.limit, ip_window=args.window),
    )
    example = load_example()
    rows: list[Outcome] = []
    with redis_server(args.redis_url) as redis_url, FakeCodatServer(fake) as server:
        base_env = {
            **os.environ,
            "CODAT_BASE_URL": server.base_url,
            "CODAT_API_KEY": fake.api_key,
        }
        for scenario in args.scenarios.split(","):
            fake.reset()
            ids = [str(uuid.uuid4()) for _ in range(args.companies)]
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            env = {
                **base_env,
                "REDIS_URL": redis_url,
                "CODAT_QUEUE": f"{prefix}:queue",
                "CODAT_LIMITS_PREFIX": prefix,
                "CODAT_EGRESS_KEY": "loopback",
                "CODAT_REQUESTS_PER_MINUTE": f"{rpm:.3f}",
                "CODAT_JOB_TIMEOUT": "15",
                "CODAT_LEASE_TTL": "5",
                "CODAT_VISIBILITY_TIMEOUT": "15",
            }
            example.QUEUE = env["CODAT_QUEUE"]
            print(f"== {scenario}: {len(ids)} companies, {WORKERS} workers", flush=True)
            started = time.monotonic()
            if scenario == "local":
                failed = run_local(ids, env, rpm)
            elif scenario.startswith("celery"):
                kill = len(ids) // 3 if scenario == "celery-kill" else None
                failed = run_celery(server, ids, env, kill)
            else:
                kill = len(ids) // 3 if scenario == "redis-kill" else None
                failed = asyncio.run(run_fleet(example, redis_url, server, ids, env, kill))
            elapsed = time.monotonic() - started
            row = measure(scenario, fake, ids, WORKERS, args.limit, args.window, failed, elapsed)
            rows.append(row)
            print("   " + json.dumps(asdict(row)), flush=True)

    print()
    print(
        "| scenario | companies | requests | 429s | achieved / limit (per min) | ratio "
        f"| most in any {args.window:g} s (limit) | syncs (companies not exactly 1) "
        "| replays | failed | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.companies} | {r.requests} | {r.rejected_429} "
            f"| {r.achieved_per_min:g} / {r.limit_per_min:g} | {r.achieved_vs_limit:.3f} "
            f"| {r.max_in_window} ({r.window_limit}) | {r.syncs} ({r.companies_not_once}) "
            f"| {r.replays} | {r.failed_results} | {r.seconds:g} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
