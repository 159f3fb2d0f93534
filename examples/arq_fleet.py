"""Fan one bulk run out over arq workers that share Codat's limits through Redis.

Install: ``pip install 'codat-commerce-async[redis,arq]'``; a Redis (``scripts/redis-dev.sh
start`` gives one on 127.0.0.1:6390). Then, with ``CODAT_API_KEY`` set::

    REDIS_URL=redis://127.0.0.1:6390/0 python examples/arq_fleet.py worker      # per machine
    REDIS_URL=redis://127.0.0.1:6390/0 python examples/arq_fleet.py enqueue companies.txt

Why arq: its jobs are coroutines on asyncio, like this SDK, so one worker runs many
chunks concurrently in one process, and it keeps its queue in the Redis that already
holds the shared limits. (Celery and Dramatiq run sync functions; their rate limits are
per worker or on the workers' clocks.)

How a run survives a worker dying: the run is split into chunks (one arq job each, with a
job id derived from the run id, so enqueueing twice adds nothing). Each company's
``Idempotency-Key`` is ``uuid5(run_id, company_id)``: when arq hands the job of a worker
killed mid-chunk to another worker, the triggers already sent get Codat's stored answer
back instead of starting a second sync. The dead worker's leases in Redis expire after
``lease_ttl``, so the others are never blocked for longer than that.

Settings (environment): ``REDIS_URL``; ``CODAT_EGRESS_KEY`` (the IP address your
workers share, default ``default``); ``CODAT_REQUESTS_PER_MINUTE`` (900);
``CODAT_QUEUE`` (``codat:bulk``); ``CODAT_LIMITS_PREFIX`` (``codat``);
``CODAT_LEASE_TTL`` (30 s); ``CODAT_JOB_TIMEOUT`` (300 s: arq gives a dead worker's job
to another worker this long, plus 10 s, after it started).
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from arq import create_pool, func, run_worker
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.logs import default_log_config

from codat_commerce_async import AsyncSyncClient, CodatError, RedisLimits

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0")
QUEUE = os.environ.get("CODAT_QUEUE", "codat:bulk")
JOB_TIMEOUT = float(os.environ.get("CODAT_JOB_TIMEOUT", "300"))


def run_keys(run_id: str) -> Callable[[str], str]:
    """Idempotency keys that are the same on every worker: uuid5(run id, company id)."""
    namespace = uuid.UUID(run_id)
    return lambda company_id: str(uuid.uuid5(namespace, company_id))


async def startup(ctx: dict[str, Any]) -> None:
    """One client per worker process, with the limits every worker shares."""
    ctx["limits"] = RedisLimits(
        REDIS_URL,
        egress_key=os.environ.get("CODAT_EGRESS_KEY", "default"),
        prefix=os.environ.get("CODAT_LIMITS_PREFIX", "codat"),
        requests_per_minute=float(os.environ.get("CODAT_REQUESTS_PER_MINUTE", "900")),
        lease_ttl=float(os.environ.get("CODAT_LEASE_TTL", "30")),
    )
    await ctx["limits"].ping()  # fail the worker at start, not mid-run, if Redis is wrong
    ctx["codat"] = AsyncSyncClient(limits=ctx["limits"])  # CODAT_API_KEY, CODAT_BASE_URL


async def shutdown(ctx: dict[str, Any]) -> None:
    # arq calls this after a failed startup too: close only what startup made, so the
    # startup's own error (e.g. no CODAT_API_KEY) is the one reported.
    if "codat" in ctx:
        await ctx["codat"].aclose()
    if "limits" in ctx:
        await ctx["limits"].aclose()


async def trigger_chunk(
    ctx: dict[str, Any], run_id: str, company_ids: list[str]
) -> list[dict[str, Any]]:
    """The arq job: trigger one chunk of a run (the client's bulk engine, shared limits)."""
    client: AsyncSyncClient = ctx["codat"]
    outcome: list[dict[str, Any]] = []
    run = client.sync.request_sync_many(company_ids, idempotency_keys=run_keys(run_id))
    async with run as results:
        async for result in results:
            error = result.error
            outcome.append(
                {
                    "company_id": result.company_id,
                    "ok": result.ok,
                    "sync_id": result.sync_id,
                    "idempotency_key": result.idempotency_key,
                    "error": None if error is None else f"{type(error).__name__}: {error}",
                    "job_try": ctx.get("job_try", 1),
                }
            )
    return outcome


class WorkerSettings:
    """``arq examples.arq_fleet.WorkerSettings`` works too (from the repository root)."""

    functions = [func(trigger_chunk, max_tries=5)]  # type: ignore[arg-type]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    queue_name = QUEUE
    max_jobs = 4  # chunks at once per worker; each runs up to 10 triggers
    job_timeout = JOB_TIMEOUT


async def enqueue_run(
    pool: ArqRedis, company_ids: Sequence[str], *, chunk_size: int = 50, run_id: str | None = None
) -> tuple[str, list[Job]]:
    """Split a run into chunks and enqueue them; enqueueing the same run again is a no-op."""
    run_id = run_id or str(uuid.uuid4())
    jobs: list[Job] = []
    for index, start in enumerate(range(0, len(company_ids), chunk_size)):
        chunk = list(company_ids[start : start + chunk_size])
        job = await pool.enqueue_job(
            "trigger_chunk", run_id, chunk, _job_id=f"{run_id}:{index}", _queue_name=QUEUE
        )
        jobs.append(job or Job(f"{run_id}:{index}", pool, _queue_name=QUEUE))
    return run_id, jobs


async def gather_results(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """Every company's outcome, once every chunk has finished."""
    outcome: list[dict[str, Any]] = []
    for job in jobs:
        outcome.extend(await job.result(timeout=None, poll_delay=0.2))
    return outcome


def read_ids(path: str) -> list[str]:
    """Company ids, one per line; blank lines and ``#`` comments are skipped."""
    with open(path, encoding="utf-8") as lines:
        ids = [line.split("#", 1)[0].strip() for line in lines]
    return [company for company in ids if company]


async def enqueue_main(ids: list[str], chunk_size: int) -> int:
    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    try:
        run_id, jobs = await enqueue_run(pool, ids, chunk_size=chunk_size)
        print(f"run {run_id}: {len(ids)} companies in {len(jobs)} jobs", flush=True)
        outcome = await gather_results(jobs)
    finally:
        await pool.aclose()
    failed = [row for row in outcome if not row["ok"]]
    for row in failed:
        print(f"{row['company_id']}: {row['error']}")
    print(f"{len(outcome) - len(failed)} triggered, {len(failed)} failed")
    return 1 if failed else 0


def where(url: str) -> str:
    """host:port/db of a Redis URL, without its credentials."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    except ValueError:
        return "REDIS_URL (unreadable)"


def worker() -> int:
    """Run a worker until Ctrl-C or SIGTERM, saying what it does; a bad setting is one line."""
    logging.config.dictConfig(default_log_config(verbose=False))  # arq's job log lines
    print(
        f"arq_fleet worker: jobs from queue {QUEUE!r} on Redis {where(REDIS_URL)}, "
        f"{WorkerSettings.max_jobs} chunks at once; Codat limits shared under prefix "
        f"{os.environ.get('CODAT_LIMITS_PREFIX', 'codat')!r}. Ctrl-C to stop.",
        file=sys.stderr,
        flush=True,
    )
    try:
        run_worker(WorkerSettings)  # type: ignore[arg-type]
    except CodatError as exc:  # e.g. no CODAT_API_KEY, or Redis unreachable
        print(f"arq_fleet worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        return worker()
    if argv[:1] == ["enqueue"] and len(argv) in (2, 3):
        chunk = int(argv[2]) if len(argv) == 3 else 50
        return asyncio.run(enqueue_main(read_ids(argv[1]), chunk))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
