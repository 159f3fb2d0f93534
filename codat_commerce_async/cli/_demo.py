"""``codat-commerce demo`` and ``codat-commerce fake-server``.

The demo runs the real client (bulk engine, retries, 429 gate, rate limit, waiting)
against the fake Codat from :mod:`codat_commerce_async.testing`, in this process
through the HTTP library's ``ASGITransport`` (httpx, or httpx2 with ``--http-library
httpx2``): no account, no network, no port.
"""

from __future__ import annotations

import argparse
import base64
import time
import uuid
from collections import Counter
from typing import Any

import anyio

from .._bulk import BulkProgress
from .._client import AsyncSyncClient
from .._events import CallEvent
from ._main import EXIT_FAILED, EXIT_OK
from ._output import describe, emit, note, progress_bar

__all__ = ["fake_server", "run"]

#: Seconds each fake sync stays "in progress".
SYNC_SECONDS = 0.5
#: The demo's rate limit: far above Codat's 1,000 a minute, because the fake is local.
DEMO_REQUESTS_PER_MINUTE = 60_000.0
LATENCY_MS = (5, 30)
SHARE_503 = 0.02
SHARE_429 = 0.001
RETRY_AFTER_429 = 0.25


def _fake(seed: int | None) -> Any:
    from ..testing import FakeCodat, Fault

    fake = FakeCodat(sync_duration=SYNC_SECONDS, seed=seed)
    # 5 ms always, plus 10 ms half the time and 15 ms a third of the time: 5-30 ms.
    fake.faults.randomly(Fault.latency(0.005), 1.0)
    fake.faults.randomly(Fault.latency(0.010), 0.5)
    fake.faults.randomly(Fault.latency(0.015), 1 / 3)
    fake.faults.randomly(Fault.edge(503), SHARE_503)
    fake.faults.randomly(Fault.rate_limited(RETRY_AFTER_429), SHARE_429)
    fake.faults.script(Fault.rate_limited(RETRY_AFTER_429))  # at least one, early on
    return fake


def run(args: argparse.Namespace) -> int:
    """Trigger and wait for ``--companies`` syncs against the in-process fake."""
    count = args.companies
    fake = _fake(args.seed)
    events: Counter[str] = Counter()

    def observe(event: CallEvent) -> None:
        if event.kind == "request_sent":
            events["requests"] += 1
            events["triggers" if event.method == "POST" else "polls"] += 1
        elif event.kind == "retry_scheduled":
            events["retries"] += 1
            events[f"retry_{event.status_code or 'network'}"] += 1

    client = AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(http_library=args.http_library),
        max_retries=6,
        event_hooks=[observe],
        requests_per_minute=DEMO_REQUESTS_PER_MINUTE,
    )
    if not args.json:
        print(
            f"codat-commerce demo: {count:,} companies against a fake Codat in this process "
            f"(no account, no network; on {client.http_library})\n"
            f"  the fake: {LATENCY_MS[0]}-{LATENCY_MS[1]} ms latency, {SHARE_503:.0%} 503s, "
            f"a few 429s (Retry-After {RETRY_AFTER_429:g} s); each sync runs {SYNC_SECONDS:g} s\n"
            f"  rate limit raised to {DEMO_REQUESTS_PER_MINUTE:,.0f} requests/min because the "
            "fake is local (Codat allows 1,000/min per IP; the bulk default is 900)",
            flush=True,
        )
    ids = [str(uuid.uuid4()) for _ in range(count)]
    outcome: Counter[str] = Counter()
    bar: dict[str, Any] = {}

    def on_progress(progress: BulkProgress) -> None:
        if "update" in bar:
            bar["update"](progress.done, progress.failed, describe(progress))

    async def main() -> None:
        # The poll bounds fit the fake's half-second syncs (Codat's take minutes: leave
        # them at their defaults and the schedule learns the durations).
        bulk = client.sync.request_sync_many(
            ids,
            wait=True,
            concurrency=50,
            poll_interval=0.25,
            max_poll_interval=1.0,
            wait_timeout=60.0,
            on_progress=on_progress,
        )
        async with client, bulk as results:
            async for result in results:
                outcome["succeeded" if result.ok else "failed"] += 1
                if not result.ok and outcome["failed"] <= 3:
                    note(f"  {result.company_id}: {result.error or result.status}")

    started = time.perf_counter()
    with progress_bar("syncing", count, enabled=not args.no_progress and not args.json) as (
        bar["update"]
    ):
        anyio.run(main)
    wall = time.perf_counter() - started
    duplicates = 0
    try:
        fake.assert_no_duplicate_syncs()
    except AssertionError:
        duplicates = 1
    retries_by_status = {
        key.removeprefix("retry_"): value
        for key, value in sorted(events.items())
        if key.startswith("retry_")
    }
    record: dict[str, Any] = {
        "companies": count,
        "succeeded": outcome["succeeded"],
        "failed": outcome["failed"],
        "syncs_started": fake.syncs_started(),
        "duplicate_syncs": duplicates,
        "requests": events["requests"],
        "requests_counts": "every attempt sent, retries included",
        "triggers": events["triggers"],
        "status_polls": events["polls"],
        "retries": events["retries"],
        "retries_by_status": retries_by_status,
        "requests_per_sync": round(events["requests"] / count, 2) if count else None,
        "wall_time_s": round(wall, 3),
        "requests_per_second": round(events["requests"] / wall, 1) if wall > 0 else None,
        "rate_limit_per_minute": DEMO_REQUESTS_PER_MINUTE,
        "rate_used": round(events["requests"] / wall * 60 / DEMO_REQUESTS_PER_MINUTE, 3)
        if wall > 0
        else None,
    }
    if args.json:
        emit(record, as_json=True)
    else:
        by_status = ", ".join(f"{k}: {v}" for k, v in retries_by_status.items())
        shown = {
            "succeeded": f"{outcome['succeeded']:,} of {count:,}",
            "failed": f"{outcome['failed']:,}",
            "syncs started": f"{fake.syncs_started():,} (duplicates: {duplicates})",
            "requests": f"{events['requests']:,} attempts, retries included "
            f"({events['polls']:,} of them status polls)",
            "requests per sync": f"{record['requests_per_sync'] or 0:.2f} "
            "(one trigger, then polls placed near each sync's expected end)",
            "retries": f"{events['retries']:,}" + (f" ({by_status})" if by_status else ""),
            "wall time": f"{wall:.2f} s",
            "requests/second": f"{record['requests_per_second'] or 0:,.0f}",
            "rate used": f"{record['rate_used'] or 0:.0%} of {DEMO_REQUESTS_PER_MINUTE:,.0f}/min",
        }
        emit(shown, as_json=False, title="result")
    return EXIT_FAILED if outcome["failed"] or duplicates else EXIT_OK


def fake_server(args: argparse.Namespace) -> int:
    """Serve the fake Codat until Ctrl-C (needs uvicorn, in the ``cli`` extra)."""
    from ..testing import DEFAULT_API_KEY, run_server

    key = args.fake_api_key or DEFAULT_API_KEY
    any_auth = bool(getattr(args, "accept_any_auth", False))

    def started(url: str) -> None:
        # On stdout, flushed: a parent process (a test, a script) reads the URL from here.
        if any_auth:
            credential = "any non-empty Authorization header (--accept-any-auth)"
            example = f"--api-key {key}"
        else:
            header = "Basic " + base64.b64encode(key.encode()).decode("ascii")
            credential = f"API key {key!r} (Authorization: {header})"
            example = f"--api-key {key}"
        print(
            f"fake Codat listening on {url}\n"
            f"  base URL:   {url}\n"
            f"  credential: {credential}\n"
            f"  ledger:     GET {url}/_fake/ledger   reset: POST {url}/_fake/reset\n"
            f"  try:        codat-commerce sync request {uuid.uuid4()} --base-url {url} "
            f"{example}",
            flush=True,
        )

    run_server(
        args.host,
        args.port,
        latency=args.latency,
        fail_rate=args.fail_rate,
        seed=args.seed,
        log_level=args.log_level,
        on_started=started,
        sync_duration=args.sync_duration,
        api_key=key,
        accept_any_auth=any_auth,
    )
    return EXIT_OK
