"""Issue 9, defect 4: a resumable CLI bulk run never starts a second sync, whatever
point it is killed at and however torn its journal's last line is.

The CLI runs as a real subprocess against the fake Codat on a loopback port, and is
SIGKILLed at random points (after a random number of journal records); sometimes a
torn record is left at the end, as a kill in the middle of a write would. It is then
resumed, again and again, until a run completes. The fake must have started exactly
one sync per company.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from codat_commerce_async.cli import main
from codat_commerce_async.cli._bulkfile import Journal
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from .test_cli import conn

COMPANIES = 10
KILLS = 6
#: Hang guards for one child (a healthy run of 10 companies takes about a second).
_RUN_LIMIT = 60.0


def _argv(source: Path, out: Path, server: FakeCodatServer, concurrency: int) -> list[str]:
    command = ["sync", "bulk", str(source), "-o", str(out), "--no-progress"]
    options = ["--concurrency", str(concurrency), "--requests-per-minute", "60000"]
    return [sys.executable, "-m", "codat_commerce_async.cli", *command, *options, *conn(server)]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_after(
    argv: list[str], out: Path, records: int, fake: FakeCodat, syncs: int = 10**9
) -> int | None:
    """Start the CLI; SIGKILL it once the journal holds ``records`` more lines or the
    fake has started ``syncs`` more syncs (a request reached Codat, its answer has not
    come back). Returns its exit code if it finished first, else None."""
    before = _lines(out)
    started = fake.syncs_started()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        limit = time.monotonic() + _RUN_LIMIT
        while child.poll() is None and time.monotonic() < limit:
            if _lines(out) - before >= records or fake.syncs_started() - started >= syncs:
                child.kill()
                break
            time.sleep(0.002)
        else:
            if child.poll() is None:
                pytest.fail("the bulk run neither finished nor reached the kill point")
        child.wait(_RUN_LIMIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stderr is not None
        child.stderr.close()
    return None if child.returncode == -9 else child.returncode


def _tear(out: Path, companies: list[str], rng: random.Random) -> None:
    """End the journal with a prefix of a record, as a kill during its write leaves it."""
    record = rng.choice(
        [
            {
                "event": "started",
                "company_id": rng.choice(companies),
                "idempotency_key": str(uuid.uuid4()),
            },
            {"event": "result", "company_id": rng.choice(companies), "ok": True},
        ]
    )
    text = json.dumps(record)
    with out.open("a", encoding="utf-8") as stream:
        stream.write(text[: rng.randrange(1, len(text) - 1)])


@pytest.mark.parametrize("seed", [3, 4])
def test_killed_and_resumed_bulk_run_starts_exactly_one_sync_per_company(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    fake = FakeCodat(seed=seed)
    # Syncs start, then the answer takes a while: kills land between the two.
    fake.faults.randomly(Fault.latency(0.03, stage="after_sync"), 1.0)
    companies = [str(uuid.uuid4()) for _ in range(COMPANIES)]
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(companies) + "\n")
    out = tmp_path / "out.jsonl"
    if rng.random() < 0.5:  # an earlier run was killed while writing its first record
        _tear(out, companies, rng)
    with FakeCodatServer(fake) as server:
        finished = None
        for _ in range(KILLS):
            # One at a time, the journal alternates started/result, so a kill point is
            # often "between companies": the resumed run's first record then carries a
            # fresh key, the case a torn tail used to lose.
            concurrency = rng.choice([1, 1, 3])
            argv = _argv(source, out, server, concurrency)
            if rng.random() < 0.5:
                lines = rng.randrange(0, 3) * 2 + (0 if concurrency == 1 else rng.randrange(2))
                finished = _kill_after(argv, out, lines, fake)
            else:
                finished = _kill_after(argv, out, 10**9, fake, syncs=rng.randrange(1, 3))
            if finished is not None:
                break
            if rng.random() < 0.6:
                _tear(out, companies, rng)
        if finished is None:  # the last run goes to the end
            finished = _kill_after(_argv(source, out, server, 3), out, 10**9, fake)
        assert finished == 0
        for company in companies:
            assert fake.syncs_started(company) == 1, company
        fake.assert_no_duplicate_syncs()
    assert Journal.load(out).done == set(companies)


def test_a_record_after_a_torn_tail_starts_on_its_own_line(tmp_path: Path) -> None:
    """Deterministic: the resumed run's first ``started`` record must stay readable,
    so a key that reached Codat is reused by the next resume."""
    fake = FakeCodat()
    company = str(uuid.uuid4())
    source = tmp_path / "ids.txt"
    source.write_text(company + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text('{"event": "started", "company_id": "')  # a killed run's torn tail
    with FakeCodatServer(fake) as server:
        # The sync starts, then Codat answers 502 (and replays it for the key): the
        # run ends with this company failed, its key known to Codat.
        fake.faults.script(Fault.fail_after_sync(502), company_id=company)
        argv = ["sync", "bulk", str(source), "-o", str(out), "--no-progress", *conn(server)]
        assert main(argv) == 1
        assert fake.syncs_started(company) == 1
        journal = Journal.load(out)
        assert company in journal.keys, "the started record was glued to the torn line"
        main(argv)  # resumed: the same key, so Codat's cached answer, no new sync
        assert fake.syncs_started(company) == 1
        fake.assert_no_duplicate_syncs()
    lines = out.read_text().splitlines()
    assert lines[0] == '{"event": "started", "company_id": "'
    assert all(json.loads(line) for line in lines[1:])
