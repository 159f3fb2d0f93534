"""Bulk trigger-and-wait against Codat's rate limit, in virtual time (issue 18).

    python benchmarks/bulk_wait.py                                  # N = 2,000 and 10,000
    python benchmarks/bulk_wait.py --companies 100000 --scenarios fixed4
    python benchmarks/bulk_wait.py --companies 2000 --scenarios fixed4,uniform --json

Each scenario runs in a child process (so its peak RSS is its own): an in-process
``FakeCodat`` with ``RateLimits(requests_per_ip=1000, ip_window=60)`` and per-company sync
durations, a ``ManualClock`` in autojump mode, and ``request_sync_many(ids, wait=True)``
with every other argument at its default, through the public API only (it runs unchanged
against older versions of the SDK). The one exception is the "ready" measure: to know when
a poll's planned time came, it records each poll the schedule hands out
(``PollSchedule.pop_due``, a private seam); against a version without it that column is
"-". Printed per scenario:

- requests per confirmed sync (every request the fake received / syncs seen finished);
- makespan, and the clairvoyant schedule at the same 900/min: every trigger first, one
  request slot each, then one poll per company at the later of its sync's end and the next
  free slot; their ratio;
- rate used: requests a minute over the makespan; the lowest share of the pace in any
  full minute that had *work ready* throughout (a trigger not yet sent, or a poll whose
  planned time had come but which had not been sent), with the number of such minutes;
  and, as before, the lowest in any full minute with a sync ended but not yet confirmed
  (this one also counts minutes where the schedule waits on purpose for a poll it placed
  later);
- the lag between a sync's end and its result (p50, p95; the clairvoyant's p95 beside it);
- peak RSS of the child process (the fake's own records included) and real seconds.

A benchmark, not a test: it measures and prints, and asserts nothing.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

RATE = 900.0  # the bulk default, requests a minute
SCENARIOS: dict[str, str] = {
    "fixed1": "1 min each",
    "fixed4": "4 min each",
    "fixed15": "15 min each",
    "uniform": "uniform 1-15 min",
    "exp4": "exponential, mean 4 min",
    "mix": "mix: 50% 1-3 min, 30% 5-8, 20% 12-20",
}


def durations(scenario: str, n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    draw: Callable[[], float]
    if scenario.startswith("fixed"):
        minutes = float(scenario.removeprefix("fixed"))
        draw = lambda: minutes * 60  # noqa: E731
    elif scenario == "uniform":
        draw = lambda: rng.uniform(60, 900)  # noqa: E731
    elif scenario == "exp4":
        draw = lambda: rng.expovariate(1 / 240)  # noqa: E731
    elif scenario == "mix":

        def draw() -> float:
            pick = rng.random()
            if pick < 0.5:
                return rng.uniform(60, 180)
            if pick < 0.8:
                return rng.uniform(300, 480)
            return rng.uniform(720, 1200)

    else:
        raise SystemExit(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    return [draw() for _ in range(n)]


def clairvoyant(ends_after_trigger: list[float], rate: float) -> tuple[float, list[float]]:
    """Makespan and per-company lag of the clairvoyant schedule (see the module doc)."""
    slot = 60.0 / rate
    n = len(ends_after_trigger)
    ends = sorted(k * slot + d for k, d in enumerate(ends_after_trigger))
    free = n * slot
    lags = []
    for end in ends:
        poll = max(end, free)
        lags.append(poll - end)
        free = poll + slot
    return free - slot, lags


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def watch_planned_polls() -> list[tuple[float, str]] | None:
    """Record (time a poll was ready, company) for each poll the schedule hands out: the
    later of its planned time and when it was planned (a refit may re-plan a poll into
    the past; it was not ready before). None when this SDK has no poll schedule."""
    try:
        from codat_commerce_async._schedule import PollSchedule
    except ImportError:
        return None
    ready: list[tuple[float, str]] = []
    planned_at: dict[int, float] = {}
    clock = {"now": 0.0, "replanned": 0.0}
    cls: Any = PollSchedule
    add, running, finished, changed, pop_due = (
        cls.add,
        cls.running,
        cls.finished,
        cls._changed,
        cls.pop_due,
    )

    def add_(self: Any, entry: Any, now: float, **kw: Any) -> None:
        clock["now"] = planned_at[id(entry)] = now
        add(self, entry, now, **kw)

    def running_(self: Any, entry: Any, now: float, status: Any) -> bool:
        clock["now"] = planned_at[id(entry)] = now
        return bool(running(self, entry, now, status))

    def finished_(self: Any, entry: Any, now: float) -> None:
        clock["now"] = now
        planned_at.pop(id(entry), None)
        finished(self, entry, now)

    def changed_(self: Any) -> None:
        plan = self.plan
        changed(self)
        if self.plan is not plan:  # every waiting poll was re-planned
            clock["replanned"] = clock["now"]

    def pop_due_(self: Any, now: float) -> Any:
        entry = pop_due(self, now)
        if entry is not None:
            since = max(planned_at.get(id(entry), 0.0), clock["replanned"])
            ready.append((max(entry.due, since), entry.base.company_id))
        return entry

    cls.add, cls.running, cls.finished, cls._changed, cls.pop_due = (
        add_,
        running_,
        finished_,
        changed_,
        pop_due_,
    )
    return ready


def ready_spans(
    planned: list[tuple[float, str]], records: list[object], start: float
) -> list[tuple[float, float]]:
    """The union of [planned time, sent) over every poll: times with a poll ready to go."""
    sent: dict[str, list[float]] = {}
    for record in records:
        if record.method == "GET" and record.company_id is not None:  # type: ignore[attr-defined]
            sent.setdefault(record.company_id, []).append(record.received_at)  # type: ignore[attr-defined]
    spans = []
    for due, company in planned:
        times = sent.get(company, [])
        k = bisect.bisect_left(times, due)
        if k < len(times) and times[k] > due:
            spans.append((due - start, times[k] - start))
    spans.sort()
    union: list[tuple[float, float]] = []
    for a, b in spans:
        if union and a <= union[-1][1]:
            union[-1] = (union[-1][0], max(union[-1][1], b))
        else:
            union.append((a, b))
    return union


def run_one(scenario: str, n: int, seed: int = 7) -> dict[str, object]:
    """One scenario in this process (the child)."""
    import anyio

    from codat_commerce_async import AsyncSyncClient
    from codat_commerce_async.testing import FakeCodat, ManualClock, RateLimits

    clock = ManualClock()
    fake = FakeCodat(
        clock=clock,
        sleep=clock.sleep,
        rate_limits=RateLimits(requests_per_ip=1000, ip_window=60),
    )
    companies = [str(uuid.uuid4()) for _ in range(n)]
    for company, seconds in zip(companies, durations(scenario, n, seed), strict=True):
        fake.set_outcome(company, 2000, duration=seconds)
    confirmed_at: dict[str, float] = {}
    confirmed = 0
    planned = watch_planned_polls()
    started = time.perf_counter()

    async def main() -> None:
        nonlocal confirmed
        async with (
            AsyncSyncClient(
                api_key=fake.api_key,
                base_url="http://localhost",
                transport=fake.transport(),
                clock=clock,
            ) as client,
            clock.autojump(),
            client.sync.request_sync_many(companies, wait=True) as results,
        ):
            async for result in results:
                confirmed_at[result.company_id] = clock.now()
                if result.status is not None and result.status.is_terminal:
                    confirmed += 1

    anyio.run(main)
    real = time.perf_counter() - started
    syncs = fake.syncs
    records = fake.requests
    start = min(r.received_at for r in records)
    makespan = max(confirmed_at.values()) - start
    trigger_order = sorted(syncs, key=lambda s: s.started_at)
    ideal, ideal_lags = clairvoyant([s.duration for s in trigger_order], RATE)
    ends = {s.company_id: s.started_at + s.duration for s in syncs}
    lags = [confirmed_at[c] - end for c, end in ends.items() if c in confirmed_at]
    # Requests per full minute, and which minutes had work queued throughout.
    last_trigger = max(r.received_at for r in records if r.method == "POST")
    per_minute: dict[int, int] = {}
    for record in records:
        minute = int((record.received_at - start) // 60)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    # Times with an ended, unconfirmed sync: union of [end, confirmed) intervals.
    spans = sorted((ends[c] - start, confirmed_at[c] - start) for c in ends if c in confirmed_at)
    covered: list[tuple[float, float]] = []
    for a, b in spans:
        if b <= a:
            continue
        if covered and a <= covered[-1][1]:
            covered[-1] = (covered[-1][0], max(covered[-1][1], b))
        else:
            covered.append((a, b))

    def busy(minute: int) -> bool:
        lo, hi = minute * 60.0, minute * 60.0 + 60.0
        if hi <= last_trigger - start:
            return True
        return any(a <= max(lo, last_trigger - start) and b >= hi for a, b in covered)

    full = [m for m in per_minute if (m + 1) * 60 <= makespan]
    busy_rates = [per_minute[m] / RATE for m in full if busy(m)]
    ready_rates = None
    if planned is not None:
        ready = ready_spans(planned, records, start)

        def ready_throughout(minute: int) -> bool:
            lo, hi = minute * 60.0, minute * 60.0 + 60.0
            if hi <= last_trigger - start:
                return True
            lo = max(lo, last_trigger - start)
            return any(a <= lo and b >= hi for a, b in ready)

        ready_rates = [per_minute[m] / RATE for m in full if ready_throughout(m)]
    return {
        "scenario": scenario,
        "companies": n,
        "requests_per_confirmed_sync": round(len(records) / max(1, confirmed), 3),
        "confirmed": confirmed,
        "makespan_min": round(makespan / 60, 2),
        "clairvoyant_min": round(ideal / 60, 2),
        "ratio": round(makespan / ideal, 3),
        "rate_used_per_min": round(len(records) / (makespan / 60), 1),
        "ready_minutes": None if ready_rates is None else len(ready_rates),
        "lowest_ready_minute_share": round(min(ready_rates), 3) if ready_rates else None,
        "busy_minutes": len(busy_rates),
        "lowest_busy_minute_share": round(min(busy_rates), 3) if busy_rates else None,
        "lag_p50_s": round(quantile(lags, 0.5), 1),
        "lag_p95_s": round(quantile(lags, 0.95), 1),
        "clairvoyant_lag_p95_s": round(quantile(ideal_lags, 0.95), 1),
        "http_429": sum(r.status == 429 for r in records),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "real_s": round(real, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", default="2000,10000", help="comma-separated N values")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument("--seed", type=int, default=7, help="the durations' draw (default 7)")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), args.seed)))
        return
    header = (
        "| companies | durations | requests/sync | makespan | clairvoyant | ratio | rate used "
        "| lowest ready minute (minutes) | lowest busy minute | lag p50 / p95 "
        "| clairvoyant lag p95 | peak RSS | real |"
    )
    if not args.json:
        print(header)
        print("|" + "---|" * 13)
    for n in (int(v) for v in args.companies.split(",")):
        for scenario in args.scenarios.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--child", scenario, str(n), "--seed", str(args.seed)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            share = row["lowest_busy_minute_share"]
            ready = row["lowest_ready_minute_share"]
            ready_cell = "-" if ready is None else f"{ready:.2f} ({row['ready_minutes']})"
            print(
                f"| {n:,} | {SCENARIOS[scenario]} | {row['requests_per_confirmed_sync']:.2f} "
                f"| {row['makespan_min']} min | {row['clairvoyant_min']} min | {row['ratio']:.2f}x "
                f"| {row['rate_used_per_min']:.0f}/min "
                f"| {ready_cell} | {'-' if share is None else f'{share:.2f}'} "
                f"| {row['lag_p50_s']:.0f} / {row['lag_p95_s']:.0f} s "
                f"| {row['clairvoyant_lag_p95_s']:.0f} s | {row['peak_rss_mb']:.0f} MB "
                f"| {row['real_s']:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
