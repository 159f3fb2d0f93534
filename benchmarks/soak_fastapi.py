"""Soak: examples/fastapi_app.py under concurrent connections against the fake Codat process.

    python benchmarks/soak_fastapi.py                          # 5 minutes, 100 connections
    python benchmarks/soak_fastapi.py --duration 30 --connections 20   # a quick look
    python benchmarks/soak_fastapi.py --duration 330 --warmup 30       # 5 minutes after warm-up

Three processes on loopback: ``codat-commerce fake-server`` (no latency, syncs finish at
once), the FastAPI example under uvicorn with its one ``AsyncSyncClient`` (pointed at the
fake through ``CODAT_BASE_URL``), and this driver: ``--connections`` workers, each on its
own keep-alive connection, posting ``/companies/{new uuid}/sync`` with a fresh
``Idempotency-Key``. A share of them (``--overlap``) resends its key while the first request
is in flight, as a caller that timed out would; both answers must carry the same sync id.

Bounded: it stops after ``--duration`` seconds or ``--max-requests`` requests, whichever
comes first, and kills what it started. Printed: requests/s per minute (``--window``) and
its ratio to the first; the CPU the app and the fake spent per request in that minute (a
busy machine disturbs it less than the rate) and its ratio to the first; statuses;
overlapping pairs that disagreed; the RSS of the app and the fake; keys answered against
syncs the fake started; the load average at start and end (the machine may be shared:
compare the ratios within one run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def _process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


def _fake_url(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    first = child.stdout.readline()
    if not first.startswith("fake Codat listening on "):
        raise RuntimeError(f"the fake did not start: {first!r}")
    return first.removeprefix("fake Codat listening on ").strip()


def _wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}")


class Tally:
    def __init__(self, started: float) -> None:
        self.started = started
        self.per_second: Counter[int] = Counter()
        self.statuses: Counter[str] = Counter()
        self.keys_accepted = 0
        self.overlaps = 0
        self.overlap_mismatches = 0
        self.sent = 0
        self.cpu: dict[int, tuple[float, ...]] = {}
        """Second -> CPU seconds the app and the fake had each used by then."""

    def count(self, status: str) -> None:
        self.per_second[int(time.monotonic() - self.started)] += 1
        self.statuses[status] += 1


async def _post(
    http: httpx.AsyncClient, company: str, key: str, tally: Tally
) -> httpx.Response | None:
    tally.sent += 1
    try:
        response = await http.post(f"/companies/{company}/sync", headers={"Idempotency-Key": key})
    except httpx.HTTPError as exc:
        tally.count(type(exc).__name__)
        return None
    tally.count(str(response.status_code))
    return response


async def _worker(
    base_url: str, tally: Tally, stop_at: float, max_requests: int, overlap: float, seed: int
) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    # Plain http on loopback: no CA bundle to load for each of the workers' clients.
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=60, verify=False
    ) as http:
        while time.monotonic() < stop_at and tally.sent < max_requests:
            company, key = str(uuid.uuid4()), str(uuid.uuid4())
            if rng.random() >= overlap:
                response = await _post(http, company, key, tally)
                if response is not None and response.status_code == 202:
                    tally.keys_accepted += 1
                continue
            # A caller that resends its key while the first request is still in flight.
            first = asyncio.ensure_future(_post(http, company, key, tally))
            await asyncio.sleep(0)
            second = await _post(http, company, key, tally)
            answers = [await first, second]
            tally.overlaps += 1
            ids = {a.json()["sync_id"] for a in answers if a is not None and a.status_code == 202}
            if len(ids) != 1 or any(a is None or a.status_code != 202 for a in answers):
                tally.overlap_mismatches += 1
            else:
                tally.keys_accepted += 1


async def _sample_cpu(tally: Tally, pids: tuple[int, ...], stop_at: float) -> None:
    second = 0
    while True:
        tally.cpu[second] = tuple(_cpu_seconds(pid) for pid in pids)
        if time.monotonic() >= stop_at:
            return
        second += 1
        await asyncio.sleep(max(0.0, tally.started + second - time.monotonic()))


async def _drive(base_url: str, args: argparse.Namespace, pids: tuple[int, ...]) -> Tally:
    started = time.monotonic()
    tally = Tally(started)
    stop_at = started + args.duration
    workers = [
        _worker(base_url, tally, stop_at, args.max_requests, args.overlap, seed)
        for seed in range(args.connections)
    ]
    await asyncio.gather(_sample_cpu(tally, pids, stop_at + 1), *workers)
    return tally


def _report(tally: Tally, elapsed: float, window: int, warmup: int) -> None:
    """Requests/s per whole ``window`` seconds after ``warmup`` (a partial last window is
    left out)."""
    rates: list[float] = []
    costs: list[tuple[float, float]] = []  # CPU ms per request: app, fake
    for index in range(max(1, int((elapsed - warmup) // window))):
        begin, end = warmup + index * window, warmup + (index + 1) * window
        count = sum(tally.per_second[s] for s in range(begin, end))
        rates.append(count / window)
        last = tally.cpu.get(end, tally.cpu[max(tally.cpu)])
        used = (after - before for before, after in zip(tally.cpu[begin], last, strict=True))
        app, fake = (1000 * seconds / max(1, count) for seconds in used)
        costs.append((app, fake))
    print(
        f"{'window':>10} {'requests/s':>11} {'ratio':>6} "
        f"{'CPU ms/request: app':>20} {'ratio':>6} {'fake':>6} {'ratio':>6}"
    )
    for index, (rate, (app, fake)) in enumerate(zip(rates, costs, strict=True)):
        span = f"{warmup + index * window}-{warmup + (index + 1) * window} s"
        print(
            f"{span:>10} {rate:>11,.1f} {rate / rates[0]:>6.2f} {app:>20.2f} "
            f"{app / costs[0][0]:>6.2f} {fake:>6.2f} {fake / costs[0][1]:>6.2f}"
        )
    total = sum(tally.statuses.values())
    print(
        f"requests: {total:,} in {elapsed:.0f} s ({total / elapsed:,.0f}/s); "
        f"statuses {dict(tally.statuses)}"
    )
    print(
        f"overlapping pairs (a key resent in flight): {tally.overlaps:,}, "
        f"disagreeing or failed: {tally.overlap_mismatches}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=300.0, help="seconds, warm-up included (default 300)"
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--overlap", type=float, default=0.01, help="share of resent keys")
    parser.add_argument("--window", type=int, default=60, help="seconds per reported rate")
    parser.add_argument(
        "--warmup", type=int, default=0, help="seconds run first and left out of the windows"
    )
    args = parser.parse_args()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fake_argv = [sys.executable, "-m", "codat_commerce_async.cli", "fake-server", "--port", "0"]
    fake_argv += ["--accept-any-auth", "--sync-duration", "0", "--log-level", "warning"]
    print(f"load average at start: {_load()}")
    with _process(fake_argv, env) as fake:
        fake_url = _fake_url(fake)
        port = _free_port()
        app_env = {**env, "CODAT_BASE_URL": fake_url, "CODAT_API_KEY": "soak"}
        app_argv = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app"]
        app_argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        # Keep-alive longer than any idle gap, so the driver never races a closing connection.
        app_argv += ["--no-access-log", "--timeout-keep-alive", "600"]
        with _process(app_argv, app_env) as app:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_serving(f"{base_url}/openapi.json")
            rss_start = (_rss_mib(app.pid), _rss_mib(fake.pid))
            began = time.monotonic()
            tally = asyncio.run(_drive(base_url, args, (app.pid, fake.pid)))
            elapsed = time.monotonic() - began
            rss_end = (_rss_mib(app.pid), _rss_mib(fake.pid))
            ledger = httpx.get(f"{fake_url}/_fake/ledger", timeout=120).json()
    print(
        f"{args.connections} connections, {args.overlap:.0%} of keys resent while in flight; "
        f"load average at end: {_load()}"
    )
    _report(tally, elapsed, args.window, args.warmup)
    print(
        f"RSS MiB app {rss_start[0]:.0f} -> {rss_end[0]:.0f}, "
        f"fake {rss_start[1]:.0f} -> {rss_end[1]:.0f}"
    )
    print(
        f"keys answered 202: {tally.keys_accepted:,}; syncs the fake started: "
        f"{ledger['syncs_started']:,}; keys that started two: "
        f"{len(ledger['duplicate_idempotency_keys'])}"
    )


if __name__ == "__main__":
    main()
