"""The fake Codat (and, optionally, the fault-injecting socket proxy in front of it) in a
child process, for the load tests.

In one process the client, uvicorn and the proxy share one GIL, so a load test measures
the GIL; in two, the client and the "server side" each get a core, as in real life.
The child serves :class:`FakeCodatServer` on a loopback port exactly as in the other
tests; on request it checks its idempotency ledger (``assert_no_duplicate_syncs``) and
reports what it saw as JSON.

Parent side: ``with RemoteFake("load", seed=18) as remote: ... remote.report()``.
Child side: ``python -m tests.reliability._fake_process <profile> <seed>``.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from .._sockets import MisbehavingServer, answer, forward, reset, truncate
from ..conftest import CANARY_KEY

ROOT = Path(__file__).resolve().parents[2]


# -- fault profiles (shared with the in-process tests) -------------------------------------


def inject_load_faults(fake: FakeCodat, proxy: MisbehavingServer, seed: int) -> None:
    """About 10% of attempts fail, every failure transient.

    At the fake: the connection dropped before or after the sync started, 502/503/504
    from the "edge", 429 with Retry-After 0, 0.1 or 0.2 s. At the proxy: the fake's
    answer replaced by a reset or cut in half (the sync ran), or a reset before the
    request was forwarded (it never reached the fake).
    """
    faults = fake.faults
    faults.randomly(Fault.drop(stage="after_sync"), 0.02)
    faults.randomly(Fault.drop(stage="before_sync"), 0.01)
    faults.randomly(Fault.edge(502, body="html"), 0.01)
    faults.randomly(Fault.edge(503, body="empty"), 0.01)
    faults.randomly(Fault.edge(504, body="json"), 0.01)
    faults.randomly(Fault.rate_limited(0, stage="edge"), 0.002)
    faults.randomly(Fault.rate_limited(0.1), 0.002)
    faults.randomly(Fault.rate_limited(0.2), 0.001)
    proxy.always(
        proxy.random_faults(
            [(0.015, forward("reset")), (0.015, forward("truncate")), (0.005, reset())],
            seed=seed,
        )
    )


def fault_counts(fake: FakeCodat, proxy: MisbehavingServer | None) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for record in fake.requests:
        for fault in record.faults:
            if fault.kind == "drop":
                counts[f"fake_drop_{fault.stage}"] += 1
            elif fault.kind == "error":
                counts[f"fake_status_{fault.status}"] += 1
    if proxy is not None:
        steps = proxy.stats.steps
        counts["proxy_reset_after_processing"] = steps["forward_reset"]
        counts["proxy_reset_before_forwarding"] = steps["reset"]
        counts["proxy_truncated"] = steps["forward_truncate"]
    return {name: value for name, value in counts.items() if value}


def summarise(fake: FakeCodat, proxy: MisbehavingServer | None) -> dict[str, Any]:
    try:
        fake.assert_no_duplicate_syncs()
        duplicates = None
    except AssertionError as exc:
        duplicates = str(exc)
    keys = collections.Counter(sync.idempotency_key for sync in fake.syncs)
    return {
        "requests": len(fake.requests),
        "syncs": {sync.idempotency_key: sync.commerce_sync_id for sync in fake.syncs},
        "syncs_started": len(fake.syncs),
        "keys_with_two_syncs": sum(1 for n in keys.values() if n > 1),
        "duplicates_error": duplicates,
        "faults": fault_counts(fake, proxy),
        "proxy_requests": proxy.requests if proxy else 0,
        "proxy_peak_in_flight": proxy.stats.peak_in_flight if proxy else 0,
    }


#: Successes and failures of every kind, for the leak tests (a 4 KiB size cap).
MIXED = [
    (0.08, answer(503, b"")),
    (0.05, answer(404, {"statusCode": 404, "error": "No company", "correlationId": "c"})),
    (0.05, reset()),
    (0.04, truncate()),
    (0.04, answer(200, b'{"companyId": "' + b"x" * 8192 + b'"}')),
    (0.04, answer(200, b"not json")),
]


# -- child ------------------------------------------------------------------------------------


def main(profile: str, seed: int) -> None:
    if profile == "mixed":  # a plain misbehaving server, no fake behind it
        with MisbehavingServer(keep=16) as plain:
            plain.always(plain.random_faults(MIXED, seed=seed))
            _serve_commands({"fake": None, "proxy": plain.port}, dict)
        return
    fake = FakeCodat(api_key=CANARY_KEY, seed=seed)
    with FakeCodatServer(fake) as server:
        proxy = None
        if profile == "load":
            proxy = MisbehavingServer(upstream=("127.0.0.1", server.port), keep=16).start()
            inject_load_faults(fake, proxy, seed)
        elif profile.startswith("storm:"):
            fake.faults.randomly(Fault.rate_limited(float(profile[6:]), stage="edge"), 1.0)
        else:
            raise SystemExit(f"unknown profile {profile!r}")
        try:
            ports = {"fake": server.port, "proxy": proxy.port if proxy else None}
            _serve_commands(ports, lambda: summarise(fake, proxy))
        finally:
            if proxy is not None:
                proxy.stop()


def _serve_commands(ports: dict[str, int | None], report: Callable[[], object]) -> None:
    """Announce the ports, then answer "report" and stop on "stop" (or end of input)."""
    print(json.dumps(ports), flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps(report()), flush=True)
        elif line.strip() == "stop":
            break


# -- parent -----------------------------------------------------------------------------------


class RemoteFake:
    """Runs :func:`main` in a child process; use as a context manager."""

    def __init__(self, profile: str, *, seed: int) -> None:
        self._args = [sys.executable, "-m", "tests.reliability._fake_process", profile, str(seed)]
        self._proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int | None] = {}

    def __enter__(self) -> RemoteFake:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = subprocess.Popen(
            self._args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        assert line, "the fake Codat process did not start"
        self.ports = json.loads(line)
        return self

    def url(self, which: str = "proxy") -> str:
        return f"http://127.0.0.1:{self.ports[which]}"

    def report(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write("report\n")
        self._proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return result

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            proc.stdin.close()
            proc.wait(timeout=60)  # a hang guard: a starved machine stops it slowly
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
