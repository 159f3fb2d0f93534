"""Fake Codat benchmark: requests/s after 0, 10,000 and 100,000 recorded syncs.

    python benchmarks/fake_history.py                     # 0, 10k, 100k (about a minute)
    python benchmarks/fake_history.py --levels 0,20000 --requests 2000

One fake per level is filled first, by calling its ASGI app directly (quicker than httpx,
the same code in the fake). Then rounds rotate over the fakes, so a busy spell on a shared
machine hits every level alike; the median round per level is printed. Requests go in
process through ``FakeCodat.client()`` (httpx on the fake's transport), as a test's would:
a keyed trigger, then the company's latest, last successful and by-id status reads.
Also printed: the memory the fake holds per recorded sync (its ``StartedSync``, idempotency
ledger entry and request record), measured with ``tracemalloc``.

A benchmark, not a test: it measures and prints; compare the ratios within one run (the
machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
import uuid
from typing import Any

from codat_commerce_async.testing import FakeCodat


async def _asgi_trigger(fake: FakeCodat, company: str) -> None:
    """One keyed ``request-sync`` straight through the ASGI interface."""
    headers = [
        (b"authorization", fake.auth_header.encode()),
        (b"idempotency-key", str(uuid.uuid4()).encode()),
        (b"content-type", b"application/json"),
    ]
    path = f"/companies/{company}/sync/commerce/latest"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    await fake(scope, receive, send)
    if sent != [200]:
        raise RuntimeError(f"the fake answered {sent} while recording syncs")


async def _record(fake: FakeCodat, companies: list[str], count: int, offset: int) -> None:
    for index in range(count):
        await _asgi_trigger(fake, companies[(offset + index) % len(companies)])


async def _measure(fake: FakeCodat, companies: list[str], requests: int, start: int) -> float:
    """Requests/s over ``requests`` requests."""
    done = 0
    index = start
    async with fake.client() as http:
        began = time.perf_counter()
        while done < requests:
            company = companies[index % len(companies)]
            index += 1
            base = f"/companies/{company}/sync/commerce/syncs"
            trigger = await http.post(
                f"/companies/{company}/sync/commerce/latest",
                json={},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            sync_id = trigger.json()["commerceSyncId"]
            reads = [
                await http.get(f"{base}/latest/status"),
                await http.get(f"{base}/lastSuccessful/status"),
                await http.get(f"{base}/{sync_id}/status"),
            ]
            if trigger.status_code != 200 or any(r.status_code != 200 for r in reads):
                raise RuntimeError("the fake refused a measured request")
            done += 4
        return done / (time.perf_counter() - began)


async def _bytes_per_sync(sample: int) -> float:
    """Memory the fake holds per recorded sync, over ``sample`` keyed triggers."""
    fake = FakeCodat()
    companies = [str(uuid.uuid4()) for _ in range(100)]
    await _record(fake, companies, 200, 0)  # first-use allocations out of the way
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await _record(fake, companies, sample, 0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / sample


async def main(levels: list[int], requests: int, rounds: int, companies_count: int) -> None:
    companies = [str(uuid.uuid4()) for _ in range(companies_count)]
    fakes = []
    for level in levels:
        fake = FakeCodat()
        await _record(fake, companies, level, 0)
        fakes.append(fake)
    print(
        f"fake Codat in process: {requests} requests per round (a trigger + 3 status reads, "
        f"repeated), {rounds} rounds rotating over the fakes, {companies_count} companies"
    )
    rates: list[list[float]] = [[] for _ in levels]
    for round_number in range(rounds):
        # Rotate which fake goes first, so a busy spell on the machine hits all alike.
        for offset in range(len(levels)):
            which = (round_number + offset) % len(levels)
            start = round_number * 7919 + which
            rates[which].append(await _measure(fakes[which], companies, requests, start))
    medians = [statistics.median(r) for r in rates]
    print(f"{'recorded syncs':>15} {'requests/s':>11} {'ratio to first':>15}")
    for level, rate in zip(levels, medians, strict=True):
        print(f"{level:>15,} {rate:>11,.0f} {rate / medians[0]:>15.2f}")
    print(f"memory held per recorded sync: {await _bytes_per_sync(5_000):,.0f} bytes")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0,10000,100000", help="recorded syncs to measure at")
    parser.add_argument("--requests", type=int, default=2_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--companies", type=int, default=10_000)
    return parser.parse_args()


if __name__ == "__main__":
    args = _parse()
    levels = [int(level) for level in args.levels.split(",")]
    asyncio.run(main(levels, args.requests, args.rounds, args.companies))
