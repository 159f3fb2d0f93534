"""Fan one bulk run out over Celery workers that share Codat's limits through Redis.

Install: ``pip install 'codat-commerce-async[redis,celery]'``; a Redis (``scripts/redis-dev.sh
start`` gives one on 127.0.0.1:6390). Then, with ``CODAT_API_KEY`` set::

    REDIS_URL=redis://127.0.0.1:6390/0 python examples/celery_fleet.py worker     # per machine
    REDIS_URL=redis://127.0.0.1:6390/0 python examples/celery_fleet.py enqueue companies.txt

(``python examples/celery_fleet.py worker`` is ``celery worker --pool prefork`` on this
app; add any ``celery worker`` option after ``worker``.)

- **A client per worker process, after the fork.** The prefork pool forks its children
  from the main worker process; a client (its event loop thread, its connections) must
  not cross a fork, so each child makes its own ``SyncClient`` and ``RedisLimits`` in
  ``worker_process_init`` and closes it in ``worker_process_shutdown``. Every child of
  every machine shares the one rate, 429 gate, leases and daily quota in Redis.
- **Deterministic keys.** Each company's ``Idempotency-Key`` is ``uuid5(run_id,
  company_id)`` and each chunk's task id ``uuid5(run_id, "chunk-N")``: a chunk run twice
  sends the same keys and Codat replays the first answers.
- **Redelivery.** ``acks_late``: a chunk is acknowledged when it is done, not when it
  starts. A pool child killed mid-chunk is requeued at once
  (``task_reject_on_worker_lost``); a whole worker killed (SIGKILL, a lost machine)
  leaves its chunks unacknowledged in Redis, and another worker takes them back after
  ``visibility_timeout`` (``CODAT_VISIBILITY_TIMEOUT``, default 3,600 s: keep it above
  your longest chunk, or a slow chunk is also given to a second worker, which is safe
  (the same keys) but wasteful).

Settings (environment): ``REDIS_URL`` (the limits and, unless ``CELERY_BROKER_URL`` is
set, the broker); ``CODAT_EGRESS_KEY`` (``default``); ``CODAT_REQUESTS_PER_MINUTE``
(900); ``CODAT_LIMITS_PREFIX`` (``codat``); ``CODAT_QUEUE`` (``codat-bulk``);
``CODAT_LEASE_TTL`` (30 s); ``CODAT_VISIBILITY_TIMEOUT`` (3,600 s); ``CODAT_BASE_URL``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from codat_commerce_async import RedisLimits, SyncClient

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0")
QUEUE = os.environ.get("CODAT_QUEUE", "codat-bulk")
CHUNK = 10

app = Celery("codat_fleet", broker=os.environ.get("CELERY_BROKER_URL", REDIS_URL))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # a worker holds no chunk it is not running
    task_default_queue=QUEUE,
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("CODAT_VISIBILITY_TIMEOUT", "3600"))
    },
    broker_connection_retry_on_startup=True,
)

_client: SyncClient | None = None


@worker_process_init.connect
def open_client(**_: Any) -> None:
    """In each pool child, after the fork: its own client and limits."""
    global _client
    limits = RedisLimits(
        REDIS_URL,
        egress_key=os.environ.get("CODAT_EGRESS_KEY", "default"),
        prefix=os.environ.get("CODAT_LIMITS_PREFIX", "codat"),
        requests_per_minute=float(os.environ.get("CODAT_REQUESTS_PER_MINUTE", "900")),
        lease_ttl=float(os.environ.get("CODAT_LEASE_TTL", "30")),
    )
    _client = SyncClient(limits=limits, base_url=os.environ.get("CODAT_BASE_URL"))


@worker_process_shutdown.connect
def close_client(**_: Any) -> None:
    if _client is not None:
        _client.close()


def run_keys(run_id: str) -> Any:
    namespace = uuid.UUID(run_id)
    return lambda company_id: str(uuid.uuid5(namespace, company_id))


@app.task(name="codat.sync_chunk")
def sync_chunk(run_id: str, company_ids: list[str]) -> dict[str, Any]:
    """Trigger a sync for every company of the chunk; the failures are returned."""
    assert _client is not None, "the worker_process_init signal makes the client"
    failed = {}
    with _client.sync.request_sync_many(company_ids, idempotency_keys=run_keys(run_id)) as results:
        for result in results:
            if not result.ok:
                failed[result.company_id] = str(result.error)
    return {"companies": len(company_ids), "failed": failed}


def enqueue(company_ids: Sequence[str], run_id: str | None = None) -> str:
    """Send the run's chunks; returns the run id (enqueueing it again adds the same ids)."""
    run = run_id or str(uuid.uuid4())
    namespace = uuid.UUID(run)
    for n, start in enumerate(range(0, len(company_ids), CHUNK)):
        sync_chunk.apply_async(
            (run, list(company_ids[start : start + CHUNK])),
            task_id=str(uuid.uuid5(namespace, f"chunk-{n}")),
        )
    return run


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["worker"]:
        app.worker_main(["worker", "--pool=prefork", "--loglevel=INFO", *argv[1:]])
        return 0
    if len(argv) == 2 and argv[0] == "enqueue":
        with open(argv[1], encoding="utf-8") as lines:
            ids = [line.strip() for line in lines if line.strip()]
        print(enqueue(ids))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
