"""Shared driver for the client processes (standard library only: the official-SDK
client runs it from a separate virtualenv).

A client module supplies an async (or blocking) factory yielding ``call(company_id) ->
bool``; the harness runs warm-up calls, then the measured calls with a pool of
``concurrency`` workers, and prints one JSON line::

    {"client", "calls", "concurrency", "seconds", "failures", "cpu_seconds",
     "peak_rss_kb", "rss_start_kb", "warmup", "errors"}

``cpu_seconds`` is user+sys CPU (``getrusage(RUSAGE_SELF)``) of the measured calls
only; ``peak_rss_kb`` is ``ru_maxrss`` at the end, ``rss_start_kb`` after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field

API_KEY = "benchmark-key"
AUTH_HEADER = "Basic " + base64.b64encode(API_KEY.encode()).decode()
SYNC_TO = "2024-06-30T00:00:00Z"
BODY = json.dumps({"syncTo": SYNC_TO}).encode()
USER_AGENT = "codat-commerce-benchmarks/1.0"
MODES = ("concurrent", "sequential", "flaky", "bulk")

AsyncCall = Callable[[str], Awaitable[bool]]
AsyncFactory = Callable[["Options"], AbstractAsyncContextManager[AsyncCall]]
BlockingCall = Callable[[str], bool]
BlockingFactory = Callable[["Options"], AbstractContextManager[BlockingCall]]


@dataclass(frozen=True)
class Options:
    url: str
    calls: int
    concurrency: int
    mode: str
    warmup: int


@dataclass
class Tally:
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.failures += 1
        if len(self.errors) < 3:
            self.errors.append(reason[:200])


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server base URL")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--mode", choices=MODES, default="concurrent")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured calls first")
    ns = parser.parse_args(argv)
    warmup = ns.warmup if ns.warmup is not None else min(ns.calls, max(20, ns.concurrency))
    return Options(ns.url.rstrip("/"), ns.calls, max(1, ns.concurrency), ns.mode, warmup)


def sync_path(company_id: str) -> str:
    return f"/companies/{company_id}/sync/commerce/latest"


def wire_headers() -> dict[str, str]:
    """The SDK's headers, with a fresh Idempotency-Key."""
    return {
        "Authorization": AUTH_HEADER,
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Idempotency-Key": str(uuid.uuid4()),
        "User-Agent": USER_AGENT,
    }


def company_ids(count: int) -> Iterator[str]:
    """``count`` distinct company ids, generated lazily."""
    for _ in range(count):
        yield str(uuid.uuid4())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _drive(call: AsyncCall, ids: Iterator[str], concurrency: int, tally: Tally) -> None:
    """``concurrency`` workers pulling from one shared id iterator."""

    async def worker() -> None:
        for company_id in ids:
            try:
                if not await call(company_id):
                    tally.fail("non-200 answer")
            except Exception as exc:
                tally.fail(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def report(name: str, opts: Options, seconds: float, cpu: float, rss0: int, tally: Tally) -> None:
    print(
        json.dumps(
            {
                "client": name,
                "calls": opts.calls,
                "concurrency": opts.concurrency,
                "warmup": opts.warmup,
                "seconds": seconds,
                "failures": tally.failures,
                "cpu_seconds": cpu,
                "peak_rss_kb": max_rss_kb(),
                "rss_start_kb": rss0,
                "errors": tally.errors,
            }
        ),
        flush=True,
    )


def run_async(name: str, factory: AsyncFactory, argv: list[str] | None = None) -> None:
    """Entry point of an asyncio client module."""
    opts = parse_options(argv)
    asyncio.run(_measure_async(name, factory, opts))


async def _measure_async(name: str, factory: AsyncFactory, opts: Options) -> None:
    async with factory(opts) as call:
        await _drive(call, company_ids(opts.warmup), opts.concurrency, Tally())
        rss0, tally = max_rss_kb(), Tally()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await _drive(call, company_ids(opts.calls), opts.concurrency, tally)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    report(name, opts, seconds, cpu, rss0, tally)


def run_blocking(name: str, factory: BlockingFactory, argv: list[str] | None = None) -> None:
    """Entry point of a blocking client module: one call at a time."""
    opts = parse_options(argv)
    opts = Options(opts.url, opts.calls, 1, opts.mode, min(opts.warmup, 20))
    with factory(opts) as call:
        _loop_blocking(call, company_ids(opts.warmup), Tally())
        rss0, tally = max_rss_kb(), Tally()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        _loop_blocking(call, company_ids(opts.calls), tally)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    report(name, opts, seconds, cpu, rss0, tally)


def _loop_blocking(call: BlockingCall, ids: Iterator[str], tally: Tally) -> None:
    for company_id in ids:
        try:
            if not call(company_id):
                tally.fail("non-200 answer")
        except Exception as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")


async def aiter_ids(count: int) -> AsyncIterator[str]:
    """Company ids as an async generator (for bulk APIs that take one)."""
    for company_id in company_ids(count):
        yield company_id


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run a client module, e.g. python -m benchmarks.clients.httpx_pool64")
