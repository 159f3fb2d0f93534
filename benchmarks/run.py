"""Benchmark runner: an nginx server on loopback, each client in its own process.

    python benchmarks/run.py --profile concurrent   # or sequential, flaky, bulk
    python benchmarks/run.py --smoke                # CI: 50 calls, 1 round

Clients run in rounds (the order rotates every round); the table reports per-client
medians over rounds and ratios to raw httpx (pool 64) and raw aiohttp+pydantic taken
within the same round. It is printed and written to ``benchmarks/results/latest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
OFFICIAL_VENV = BENCH / ".venv-official"
OFFICIAL_REQUIREMENT = "codat-sync-for-commerce==6.1.0"
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks.payloads import ERROR_429, ERROR_503, SUMMARY_JSON  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIN_SERVER_CPU = 0.05  # s; below this, /proc's clock-tick resolution makes "busy %" noise


# -- what to run -------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    key: str
    module: str
    label: str
    group: str  # "raw", "ours" or "official"
    blocking: bool = False
    needs_transport: bool = False  # uses our AiohttpTransport
    needs_httpx2: bool = False  # runs on httpx2 (the [httpx2] extra)


CLIENTS: tuple[ClientSpec, ...] = (
    ClientSpec("a", "httpx_pool64", "raw httpx, pool 64 (+pydantic)", "raw"),
    ClientSpec("b", "httpx_pool8", "raw httpx, pool 8 (+pydantic)", "raw"),
    ClientSpec("c", "aiohttp_pydantic", "raw aiohttp + pydantic", "raw"),
    ClientSpec("d", "aiohttp_raw", "raw aiohttp, no validation", "raw"),
    ClientSpec("e", "sdk_async", "AsyncSyncClient (default install)", "ours"),
    ClientSpec("j", "sdk_async_pool64", "AsyncSyncClient (httpx, max_concurrency=64)", "ours"),
    ClientSpec(
        "f", "sdk_aiohttp", "AsyncSyncClient + AiohttpTransport", "ours", needs_transport=True
    ),
    ClientSpec("g", "sdk_blocking", "SyncClient (blocking, 1 at a time)", "ours", blocking=True),
    ClientSpec("h", "official", f"official {OFFICIAL_REQUIREMENT}", "official"),
    ClientSpec(
        "i",
        "httpx_aiohttp_transport",
        "raw httpx over AiohttpTransport (+pyd)",
        "raw",
        needs_transport=True,
    ),
    ClientSpec("k", "httpx2_pool64", "raw httpx2, pool 64 (+pydantic)", "raw", needs_httpx2=True),
    ClientSpec("l", "httpx2_pool8", "raw httpx2, pool 8 (+pydantic)", "raw", needs_httpx2=True),
    ClientSpec("p", "httpx2_pool16", "raw httpx2, pool 16 (+pydantic)", "raw", needs_httpx2=True),
    ClientSpec("q", "httpx2_pool32", "raw httpx2, pool 32 (+pydantic)", "raw", needs_httpx2=True),
    ClientSpec("m", "sdk_httpx2", "AsyncSyncClient, httpx2 (defaults)", "ours", needs_httpx2=True),
    ClientSpec(
        "n",
        "sdk_httpx2_pool64",
        "AsyncSyncClient (httpx2, max_concurrency=64)",
        "ours",
        needs_httpx2=True,
    ),
)
BULK_CLIENTS: tuple[ClientSpec, ...] = (
    ClientSpec("bulk", "sdk_bulk", "request_sync_many (httpx default)", "ours"),
    ClientSpec(
        "bulk-f",
        "sdk_bulk_aiohttp",
        "request_sync_many + AiohttpTransport",
        "ours",
        needs_transport=True,
    ),
)
HTTPX_REF, AIOHTTP_REF, HTTPX2_REF = "httpx_pool64", "aiohttp_pydantic", "httpx2_pool64"


@dataclass(frozen=True)
class Profile:
    name: str
    calls: int
    concurrency: int
    flaky: bool = False
    rounds: int = 3


PROFILES = {
    "concurrent": Profile("concurrent", 2000, 64),
    "sequential": Profile("sequential", 2000, 1),
    "flaky": Profile("flaky", 2000, 64, flaky=True),
    # The bulk engine's default concurrency (10); one round: 100,000 calls take minutes.
    "bulk": Profile("bulk", 100_000, 10, rounds=1),
}


@dataclass
class Outcome:
    """One client process in one round."""

    spec: ClientSpec
    round_no: int
    data: dict[str, object] = field(default_factory=dict)
    server_cpu: float = 0.0
    error: str | None = None

    def num(self, key: str) -> float:
        value = self.data.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def calls_per_s(self) -> float:
        return self.num("calls") / self.num("seconds") if self.num("seconds") else 0.0

    @property
    def broken(self) -> bool:
        """Did not run, or not one call succeeded."""
        return self.error is not None or self.num("failures") >= self.num("calls")


# -- servers -------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process from /proc/<pid>/stat (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == parent:
            children.append(int(entry.name))
    return children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[str], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@dataclass
class Server:
    kind: str
    url: str
    process: subprocess.Popen[str]
    cpu_pids: list[int]
    tmpdir: Path | None = None

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.cpu_pids)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def install_nginx() -> str:
    """apt-get install nginx (after an update if the first try fails); '' or why not."""
    if not shutil.which("apt-get"):
        return "apt-get not found"
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "nginx"]
    for step in (install, [*prefix, "apt-get", "update", "-q"], install):
        log(f"$ {' '.join(step)}")
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0 and step is install and find_nginx():
            return ""
    return f"apt-get install nginx failed: {done.stderr.strip()[-200:]}"


def render_nginx_conf(tmpdir: Path, port: int, flaky: bool) -> str:
    split = "        10%  429;\n        5%   503;" if flaky else ""
    text = (BENCH / "nginx.conf.template").read_text()
    for name, value in {
        "TMPDIR": str(tmpdir),
        "PORT": str(port),
        "SPLIT": split,
        "SUMMARY": SUMMARY_JSON,
        "ERROR_429": ERROR_429,
        "ERROR_503": ERROR_503,
    }.items():
        text = text.replace(f"@@{name}@@", value)
    return text


def start_nginx(binary: str, flaky: bool) -> Server | str:
    """A running nginx (foreground, managed by us), or why it could not start."""
    tmpdir = Path(tempfile.mkdtemp(prefix="codat-bench-nginx-"))
    tmpdir.chmod(0o755)
    port = free_port()
    conf = tmpdir / "nginx.conf"
    conf.write_text(render_nginx_conf(tmpdir, port, flaky))
    cmd = [binary, "-p", str(tmpdir), "-c", str(conf), "-e", str(tmpdir / "error.log")]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    if wait_listening(port, process):
        for _ in range(100):
            if workers := child_pids(process.pid):
                break
            time.sleep(0.05)
    if not workers:
        process.kill()
        _, err = process.communicate()
        shutil.rmtree(tmpdir, ignore_errors=True)
        return f"nginx did not start: {err.strip()[-300:]}"
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    kind = version.replace("nginx version: ", "") + " (1 worker)"
    return Server(kind, f"http://127.0.0.1:{port}", process, workers, tmpdir)


def start_fallback(flaky: bool) -> Server:
    cmd = [sys.executable, "-m", "benchmarks.fallback_server", *(["--flaky"] if flaky else [])]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        process.kill()
        raise SystemExit("the fallback server did not start")
    kind = "FALLBACK raw-asyncio Python server (nginx unavailable; may be the bottleneck)"
    return Server(kind, f"http://127.0.0.1:{line[1]}", process, [process.pid])


@contextmanager
def benchmark_server(args: argparse.Namespace, flaky: bool, notes: list[str]) -> Iterator[Server]:
    server: Server | str = "fallback server requested (--server fallback)"
    if args.server != "fallback":
        binary = find_nginx()
        reason = "nginx not installed and --no-install given"
        if binary is None and not args.no_install:
            reason = install_nginx() or reason
            binary = find_nginx()
        server = start_nginx(binary, flaky) if binary else reason
    if isinstance(server, str):
        if args.server == "nginx":
            raise SystemExit(f"nginx required (--server nginx): {server}")
        notes.append(f"**Server: fallback** ({server}).")
        server = start_fallback(flaky)
    try:
        yield server
    finally:
        server.stop()


# -- clients -------------------------------------------------------------------------


def probe(python: str, code: str) -> tuple[bool, str]:
    """Run ``code`` in a fresh interpreter at the repo root; (ok, last error line)."""
    cmd = [python, "-W", "ignore", "-c", code]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def ensure_official_venv() -> tuple[str | None, str]:
    """benchmarks/.venv-official with the official SDK, created on first use."""
    python = OFFICIAL_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {OFFICIAL_VENV.relative_to(REPO)} with {OFFICIAL_REQUIREMENT}")
        made = subprocess.run([sys.executable, "-m", "venv", str(OFFICIAL_VENV)], timeout=300)
        if made.returncode != 0:
            return None, "could not create the virtualenv"
    pip = [str(python), "-m", "pip", "install", "-q", OFFICIAL_REQUIREMENT]
    ok, why = probe(str(python), "import codat_sync_for_commerce")
    if not ok:
        done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return None, f"pip install failed: {done.stderr.strip()[-200:]}"
        ok, why = probe(str(python), "import codat_sync_for_commerce")
    return (str(python), "") if ok else (None, why)


def select_clients(
    args: argparse.Namespace, profile: Profile, notes: list[str]
) -> list[tuple[ClientSpec, str]]:
    """(client, python) pairs to run; skipped ones get a note."""
    sdk_ok, sdk_why = probe(sys.executable, "from codat_commerce_async import AsyncSyncClient")
    if profile.name == "bulk":
        return select_bulk(args, sdk_ok, sdk_why, notes)
    wanted = set(args.clients.split(",")) if args.clients else None
    chosen: list[tuple[ClientSpec, str]] = []
    for spec in CLIENTS:
        if wanted is not None and spec.key not in wanted and spec.module not in wanted:
            continue
        python, why = client_python(spec, args, sdk_ok, sdk_why)
        if python is None:
            notes.append(f"Skipped ({spec.key}) {spec.label}: {why}")
        else:
            chosen.append((spec, python))
    return chosen


def client_python(
    spec: ClientSpec, args: argparse.Namespace, sdk_ok: bool, sdk_why: str
) -> tuple[str | None, str]:
    if spec.group == "official":
        if not args.with_official:
            return None, "pass --with-official to build benchmarks/.venv-official"
        return ensure_official_venv()
    if spec.group == "ours" and not sdk_ok:
        return None, f"the SDK core is not importable yet ({sdk_why})"
    if spec.needs_httpx2:
        ok, why = probe(sys.executable, "import httpx2")
        if not ok:
            return None, f"httpx2 is not installed (pip install '.[httpx2]'; {why})"
    if spec.needs_transport:
        ok, why = probe(sys.executable, "import codat_commerce_async.transports.aiohttp")
        if not ok:
            return None, f"the aiohttp transport is not importable ({why})"
    return sys.executable, ""


def select_bulk(
    args: argparse.Namespace, sdk_ok: bool, sdk_why: str, notes: list[str]
) -> list[tuple[ClientSpec, str]]:
    if not sdk_ok:
        notes.append(f"Skipped bulk: the SDK core is not importable yet ({sdk_why})")
        return []
    code = (
        "import codat_commerce_async as m, sys\n"
        "c = m.AsyncSyncClient(api_key='k', base_url='http://127.0.0.1:9')\n"
        "sys.exit(0 if hasattr(c.sync, 'request_sync_many') else 3)"
    )
    ok, _ = probe(sys.executable, code)
    if not ok:
        notes.append("Skipped bulk: `client.sync.request_sync_many` does not exist yet.")
        return []
    return [
        (spec, python)
        for spec in BULK_CLIENTS
        if (python := client_python(spec, args, True, "")[0]) is not None
    ]


def run_client(
    spec: ClientSpec, python: str, server: Server, profile: Profile, calls: int, round_no: int
) -> Outcome:
    concurrency = 1 if spec.blocking else profile.concurrency
    cmd = [python, "-m", f"benchmarks.clients.{spec.module}", "--url", server.url]
    cmd += ["--calls", str(calls), "--concurrency", str(concurrency), "--mode", profile.name]
    outcome = Outcome(spec, round_no)
    cpu0 = server.cpu_seconds()
    try:
        done = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=max(120, calls / 50)
        )
    except subprocess.TimeoutExpired:
        outcome.error = "timed out"
        return outcome
    outcome.server_cpu = server.cpu_seconds() - cpu0
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        outcome.error = tail[0][:300]
    else:
        outcome.data = json.loads(lines[-1])
    return outcome


def run_rounds(
    clients: Sequence[tuple[ClientSpec, str]],
    server: Server,
    profile: Profile,
    calls: int,
    rounds: int,
) -> list[Outcome]:
    """Every client once per round; the starting client rotates each round."""
    outcomes = []
    for round_no in range(rounds):
        shift = round_no % max(1, len(clients))
        for spec, python in [*clients[shift:], *clients[:shift]]:
            outcome = run_client(spec, python, server, profile, calls, round_no)
            log(f"round {round_no + 1}/{rounds} {spec.module:<24} " + describe(outcome))
            outcomes.append(outcome)
    return outcomes


def describe(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"FAILED TO RUN: {outcome.error}"
    return (
        f"{outcome.calls_per_s:8.0f} calls/s  failures={outcome.num('failures'):.0f}  "
        f"errors={outcome.data.get('errors')}"
    )


# -- report --------------------------------------------------------------------------


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(outcomes: list[Outcome], spec: ClientSpec, reference: str) -> float | None:
    """Median over rounds of (client calls/s) / (reference calls/s) in that round."""
    per_round = []
    for mine in outcomes:
        if mine.spec != spec or mine.error is not None:
            continue
        ref = next(
            (
                o
                for o in outcomes
                if o.round_no == mine.round_no and o.spec.module == reference and o.error is None
            ),
            None,
        )
        if ref is not None and ref.calls_per_s:
            per_round.append(mine.calls_per_s / ref.calls_per_s)
    return median_or_none(per_round)


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def server_busy(outcome: Outcome) -> float:
    """Server CPU per call x calls/s, as % of one core."""
    per_call = outcome.server_cpu / (outcome.num("calls") + outcome.num("warmup"))
    return per_call * outcome.calls_per_s * 100


def table_row(spec: ClientSpec, outcomes: list[Outcome]) -> str:
    mine = [o for o in outcomes if o.spec == spec]
    ok = [o for o in mine if o.error is None]
    if not ok:
        return f"| ({spec.key}) {spec.label} | | failed to run: {mine[0].error} |" + " |" * 8
    cps = median_or_none([o.calls_per_s for o in ok])
    cpu_us = median_or_none([o.num("cpu_seconds") / o.num("calls") * 1e6 for o in ok])
    rss = median_or_none([o.num("peak_rss_kb") / 1024 for o in ok])
    growth = median_or_none([(o.num("peak_rss_kb") - o.num("rss_start_kb")) / 1024 for o in ok])
    busy = median_or_none([server_busy(o) for o in ok if o.server_cpu >= MIN_SERVER_CPU])
    failures = sum(int(o.num("failures")) for o in ok)
    conc = int(ok[0].num("concurrency"))
    cells = [
        f"({spec.key}) {spec.label}",
        str(conc),
        fmt(cps, ",.0f"),
        fmt(cpu_us, ",.0f"),
        fmt(rss, ".0f"),
        fmt(growth, ".1f"),
        fmt(busy, ".0f"),
        f"{failures} / {sum(int(o.num('calls')) for o in ok)}",
        fmt(ratio(outcomes, spec, HTTPX_REF), ".2f"),
        fmt(ratio(outcomes, spec, HTTPX2_REF), ".2f"),
        fmt(ratio(outcomes, spec, AIOHTTP_REF), ".2f"),
    ]
    return "| " + " | ".join(cells) + " |"


def render(
    profile: Profile,
    calls: int,
    rounds: int,
    server: Server,
    outcomes: list[Outcome],
    notes: list[str],
) -> str:
    specs = list(dict.fromkeys(o.spec for o in outcomes))
    versions = ", ".join(
        f"{p} {package_version(p)}" for p in ("httpx", "httpx2", "httpcore2", "aiohttp", "pydantic")
    )
    lines = [
        f"## Benchmark: profile `{profile.name}`",
        "",
        f"- {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()};"
        f" {versions}; {os.cpu_count()} CPUs",
        f"- server: {server.kind}",
        f"- {calls:,} calls per client per round, {rounds} round(s), "
        f"concurrency {profile.concurrency}; medians over rounds",
        "",
        "| client | conc | calls/s | CPU µs/call | peak RSS MiB | RSS growth MiB |"
        " server busy % | failures | x httpx-64 | x httpx2-64 | x aiohttp+pyd |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(table_row(spec, outcomes) for spec in specs),
        "",
        "CPU µs/call: client user+sys CPU over the measured calls. RSS growth: peak RSS minus"
        " RSS after warm-up. Server busy %: server CPU per call x calls/s (share of one"
        " core; n/a when the server used under 0.05 s). Ratios: calls/s relative to the"
        " same round's raw httpx pool-64 / raw httpx2 pool-64 / raw aiohttp+pydantic run,"
        " median over rounds.",
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def write_results(profile: str, markdown: str, outcomes: list[Outcome]) -> None:
    RESULTS.mkdir(exist_ok=True)
    raw = [
        {"client": o.spec.module, "round": o.round_no, "server_cpu": o.server_cpu, "error": o.error}
        | o.data
        for o in outcomes
    ]
    for name in ("latest", profile):
        (RESULTS / f"{name}.md").write_text(markdown)
        (RESULTS / f"{name}.json").write_text(json.dumps(raw, indent=1) + "\n")


# -- main ----------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="concurrent")
    parser.add_argument("--rounds", type=int, help="default: 3 (bulk: 1)")
    parser.add_argument("--calls", type=int, help="calls per client (default: the profile's)")
    parser.add_argument("--smoke", action="store_true", help="50 calls, 1 round; for CI")
    parser.add_argument("--clients", help="comma-separated keys or modules, e.g. a,c,f")
    parser.add_argument("--server", choices=("auto", "nginx", "fallback"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="never apt-get nginx")
    parser.add_argument("--with-official", action="store_true", help="also run (h)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    calls = 50 if args.smoke else args.calls or profile.calls
    rounds = 1 if args.smoke else max(1, args.rounds or profile.rounds)
    notes: list[str] = []
    if profile.flaky:
        notes.append("Flaky: our clients run with max_retries=8 (SDK default 2 would lose ~0.3%).")
    clients = select_clients(args, profile, notes)
    with benchmark_server(args, profile.flaky, notes) as server:
        log(f"server: {server.kind} at {server.url}")
        outcomes = run_rounds(clients, server, profile, calls, rounds)
        markdown = render(profile, calls, rounds, server, outcomes, notes)
    print(markdown)
    write_results("smoke" if args.smoke else profile.name, markdown, outcomes)
    broken = [o for o in outcomes if o.broken]
    unretried = [o for o in outcomes if o.spec.group == "ours" and o.num("failures") > 0]
    for o in broken + unretried:
        log(f"FAIL: {o.spec.module} round {o.round_no + 1}: {o.error or o.data.get('errors')}")
    return 1 if broken or unretried else 0


if __name__ == "__main__":
    sys.exit(main())
