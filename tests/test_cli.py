"""The ``codat-commerce`` command line, against the fake Codat (in-process or on loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from codat_commerce_async.cli import main
from codat_commerce_async.cli._bulkfile import Journal, read_company_ids
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault, ManualClock

from ._http import httpx


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[FakeCodatServer]:
    """One loopback fake for the module (stopping uvicorn costs ~0.2 s each time)."""
    with FakeCodatServer(FakeCodat(sync_duration=0.2)) as running:
        yield running


@pytest.fixture
def server(_shared_server: FakeCodatServer) -> FakeCodatServer:
    """The shared fake, reset (no requests, syncs, outcomes or faults); tests use fresh
    company ids, so nothing of an earlier test can answer for a later one."""
    _shared_server.fake.reset()
    return _shared_server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def paused_server(clock: ManualClock) -> Iterator[FakeCodatServer]:
    """The fake on a clock the test moves: a sync is in progress until it does, however
    slowly a busy machine gets to look."""
    with FakeCodatServer(FakeCodat(sync_duration=0.2, clock=clock)) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CODAT_API_KEY", "CODAT_BASE_URL", "CODAT_LOG"):
        monkeypatch.delenv(name, raising=False)


def conn(server: FakeCodatServer) -> list[str]:
    return ["--base-url", server.base_url, "--api-key", server.fake.api_key]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else None


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("codat-commerce: error: ")
    return lines[0]


def bulk_refused_before_sending(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str], source: Path, out: Path
) -> str:
    """Run ``sync bulk``; it must exit 1 with one error line and send nothing."""
    argv = ["sync", "bulk", str(source), "-o", str(out), "--no-progress", *conn(server)]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert server.fake.requests == ()
    return line


# -- demo ------------------------------------------------------------------------------


def test_demo_small(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, record = run_json(capsys, "demo", "--companies", "40", "--seed", "3")
    assert code == 0
    assert record["companies"] == 40
    assert record["succeeded"] == 40
    assert record["failed"] == 0
    assert record["syncs_started"] == 40
    assert record["duplicate_syncs"] == 0
    assert record["triggers"] >= 40
    assert record["status_polls"] >= 40
    assert record["retries"] >= 1  # the scripted 429 at least
    assert record["requests"] == record["triggers"] + record["status_polls"]
    assert record["requests_counts"] == "every attempt sent, retries included"
    assert record["requests_per_second"] > 0
    assert time.monotonic() - started < 30  # a hang guard: ~1 s expected


def test_demo_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--companies", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fake Codat in this process" in out
    assert "rate limit raised to 60,000 requests/min" in out
    assert "5 of 5" in out
    assert "attempts, retries included" in out
    assert "wall time" in out


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
def test_demo_runs_on_the_library_asked_for(
    capsys: pytest.CaptureFixture[str], library: str
) -> None:
    assert main(["demo", "--companies", "5", "--no-progress", "--http-library", library]) == 0
    out = capsys.readouterr().out
    assert f"(no account, no network; on {library})" in out
    assert "5 of 5" in out


# -- single-company commands -------------------------------------------------------------


def test_request_status_wait_range(
    paused_server: FakeCodatServer, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    server = paused_server
    company = str(uuid.uuid4())
    # After the fake's configured start date (30 days before it started): a real window.
    to = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    code, started = run_json(capsys, "sync", "request", company, "--to", to, *conn(server))
    assert code == 0
    assert started["company_id"] == company
    assert started["status_code"] == 1000
    assert started["window_finish"] == f"{to}T00:00:00Z"
    assert started["window_start"] < started["window_finish"]
    sync_id = started["sync_id"]

    code, status = run_json(capsys, "sync", "status", company, sync_id, *conn(server))
    assert code == 0
    assert status["sync_id"] == sync_id
    assert status["state"] == "in_progress"

    clock.advance(0.2)
    code, final = run_json(
        capsys, "sync", "wait", company, sync_id, "--poll-interval", "0.05", *conn(server)
    )
    assert code == 0
    assert final["status_code"] == 2000
    assert final["state"] == "succeeded"

    code, latest = run_json(capsys, "sync", "status", company, *conn(server))
    assert (code, latest["sync_id"]) == (0, sync_id)

    code, window = run_json(
        capsys,
        "sync",
        "range",
        company,
        "--start",
        "2024-01-01",
        "--finish",
        "2024-02-01",
        *conn(server),
    )
    assert code == 0
    assert window["window_start"] == "2024-01-01T00:00:00Z"
    assert [s.operation for s in server.fake.syncs] == [
        "request-sync",
        "request-sync-for-date-range",
    ]


def test_wait_exits_non_zero_when_the_sync_fails(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    company = str(uuid.uuid4())
    server.fake.set_outcome(company, 4000)
    assert main(["sync", "request", company, *conn(server)]) == 0
    code, final = run_json(
        capsys, "sync", "wait", company, "--poll-interval", "0.05", *conn(server)
    )
    assert code == 1
    assert final["state"] == "failed"


def test_wait_timeout_is_one_line_and_non_zero(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    company = str(uuid.uuid4())
    server.fake.set_outcome(company, 2000, duration=60)
    assert main(["sync", "request", company, *conn(server)]) == 0
    capsys.readouterr()
    code = main(
        ["sync", "wait", company, "--poll-interval", "0.05", "--timeout", "0.2", *conn(server)]
    )
    assert code == 1
    assert "still running after 0.2 s" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sync", "status", "not-a-uuid"], "COMPANY_ID must be a UUID"),
        (["sync", "status", "{company}", "nope"], "SYNC_ID must be a UUID"),
        (["sync", "status", "{company}", "{sync}"], "404 Not Found"),
        (
            ["sync", "range", "{company}", "--start", "2024-02-01", "--finish", "2024-01-01"],
            "--start (2024-02-01T00:00:00Z) is after --finish (2024-01-01T00:00:00Z)",
        ),
        (["sync", "range", "{company}", "--start", "soon", "--finish", "2024-01-01"], "--start "),
        (["sync", "range", "{company}", "--start", "2024-01-01", "--finish", "x"], "--finish "),
        (["sync", "request", "{company}", "--to", "yesterday"], "--to is not an ISO-8601"),
        (["sync", "request", "{company}", "--to", "2024-01-01T00:00"], "--to is a naive"),
        (["sync", "request", "{company}", "--to", "9999-12-31T23:59:59-01:00"], "--to is not a"),
        (
            [
                *["sync", "range", "{company}"],
                *["--start", "0001-01-01T00:00+03:00", "--finish", "2024-01-01"],
            ],
            "--start is not a valid date",
        ),
        (["sync", "request", "{company}", "--idempotency-key", "k1"], "--idempotency-key must"),
        (["sync", "bulk", "ids.txt", "-o", "out.jsonl", "--to", "bad"], "--to is not"),
        (["sync", "company-status", "acme"], "COMPANY_ID must be a UUID"),
    ],
)
def test_errors_are_one_line_without_traceback(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    filled = [a.format(company=uuid.uuid4(), sync=uuid.uuid4()) for a in argv]
    assert main([*filled, *conn(server)]) == 1
    line = one_line_error(capsys)
    assert message in line
    for parameter in ("sync_to", "company_id", "sync_id", "idempotency_key", "start ("):
        assert parameter not in line.replace("--start (", "")
    if message != "404 Not Found":
        assert server.fake.requests == ()  # refused before anything was sent


def test_missing_key_and_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    company = str(uuid.uuid4())
    assert main(["sync", "status", company, "--base-url", "http://127.0.0.1:9"]) == 1
    assert "CODAT_API_KEY" in one_line_error(capsys)
    os.environ["CODAT_API_KEY"] = "k" * 10  # removed again by the autouse fixture
    argv = ["sync", "status", company, "--base-url", "http://127.0.0.1:9"]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert "k" * 10 not in line


def test_global_options_before_the_command(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    company = str(uuid.uuid4())
    assert main([*conn(server), "--json", "sync", "request", company]) == 0
    assert json.loads(capsys.readouterr().out)["company_id"] == company


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sync", "bulk"])
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_fake_server_delegates_to_run_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import codat_commerce_async.testing as testing

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(testing, "run_server", lambda *a, **k: calls.append((a, k)))
    argv = ["fake-server", "--port", "8123", "--latency", "0.02", "--fail-rate", "0.1"]
    assert main([*argv, "--seed", "4", "--sync-duration", "2"]) == 0
    ((args, kwargs),) = calls
    assert args == ("127.0.0.1", 8123)
    on_started = kwargs.pop("on_started")
    assert kwargs == {
        "latency": 0.02,
        "fail_rate": 0.1,
        "seed": 4,
        "log_level": "info",
        "sync_duration": 2.0,
        "api_key": "fake-api-key",
        "accept_any_auth": False,
    }
    on_started("http://127.0.0.1:8123")
    out = capsys.readouterr().out
    assert "base URL:   http://127.0.0.1:8123\n" in out
    assert "credential: API key 'fake-api-key' (Authorization: Basic ZmFrZS1hcGkta2V5)" in out
    assert "GET http://127.0.0.1:8123/_fake/ledger" in out

    calls.clear()
    assert main(["fake-server", "--accept-any-auth", "--port", "0"]) == 0
    ((args, kwargs),) = calls
    assert args == ("127.0.0.1", 0)
    assert kwargs["accept_any_auth"] is True
    kwargs["on_started"]("http://127.0.0.1:41234")
    assert "credential: any non-empty Authorization header" in capsys.readouterr().out


def test_fake_server_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["fake-server", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--host HOST interface to listen on (default: 127.0.0.1)",
        "--port PORT port to listen on; 0 picks a free one (default: 8000)",
        "--latency SECONDS delay added to every request (default: 0.0)",
        "(default: 0.0)",
        "completes (default: 5.0)",
        "--seed SEED seed for --fail-rate (default: random)",
        "(default: fake-api-key)",
        "--accept-any-auth accept any non-empty Authorization header",
        "(default: info)",
        "GET /_fake/ledger",
        "POST /_fake/reset",
        "POST /_fake/webhooks (sign and deliver one webhook",
    ):
        assert option in text, option


def test_help_says_uuid_and_names_every_id_column(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI speaks as the SDK does (UUID, not GUID), and documents each CSV column name
    it accepts."""
    for command in (["sync", "request"], ["sync", "range"], ["sync", "bulk"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "GUID" not in text
        if command[1] != "bulk":
            assert "--idempotency-key UUID" in text
    assert "companyId / company_id / company / id column" in text


def test_a_refused_key_names_where_the_key_comes_from(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    company = str(uuid.uuid4())
    argv = ["sync", "status", company, "--base-url", server.base_url, "--api-key", "wrong-key"]
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert "401" in line
    for fix in ("CODAT_API_KEY", "--api-key", "api_key="):
        assert fix in line
    assert "wrong-key" not in line


# -- bulk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("companyId,name\n{a},x\n{b},y\n", None),
        ("name;company_id\nx;{a}\ny;{b}\n", None),
        ("id\tname\n{a}\tx\n{b}\ty\n", None),
        ("{a}\n\n# comment\n{b}\n{a}\n", None),
        ("Company ID\n{A}\n{b}\n", None),
        ("x,{a}\ny,{b}\n", None),
    ],
)
def test_reading_company_ids(tmp_path: Path, text: str, column: None) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    path = tmp_path / "ids"
    path.write_text(text.format(a=a, b=b, A=a.upper()))
    assert read_company_ids(path) == [a, b]


def test_bulk_writes_one_result_per_company(
    server: FakeCodatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    companies = [str(uuid.uuid4()) for _ in range(12)]
    server.fake.mark_unknown(companies[0])
    source = tmp_path / "ids.csv"
    source.write_text("company_id\n" + "\n".join(companies) + "\nnot-a-uuid\n")
    out = tmp_path / "out.jsonl"
    code, summary = run_json(
        capsys, "sync", "bulk", str(source), "-o", str(out), "--no-progress", *conn(server)
    )
    assert code == 1  # one unknown company, one invalid id
    assert summary["succeeded"] == 11
    assert summary["failed"] == 2
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    results = {e["company_id"]: e for e in entries if e["event"] == "result"}
    assert len(results) == 13
    assert results[companies[0]]["error_type"] == "NotFoundError"
    assert results[companies[0]]["status_code"] == 404
    assert results[companies[0]]["fresh_key_safe"] is True
    assert results["not-a-uuid"]["error_type"] == "ValueError"
    started = {e["company_id"]: e["idempotency_key"] for e in entries if e["event"] == "started"}
    assert set(started) == set(companies)
    for company in companies[1:]:
        assert results[company]["ok"] is True
        assert results[company]["idempotency_key"] == started[company]
    # Each started line precedes its result line.
    order = [(e["event"], e["company_id"]) for e in entries]
    for company in companies:
        assert order.index(("started", company)) < order.index(("result", company))


def test_bulk_resume_reuses_recorded_keys_and_skips_done(
    server: FakeCodatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done, unfinished, refused, new = (str(uuid.uuid4()) for _ in range(4))
    key = str(uuid.uuid4())
    # A previous run: `unfinished` was sent (and started at Codat) but its answer was lost.
    with httpx.Client(base_url=server.base_url) as http:
        reply = http.post(
            f"/companies/{unfinished}/sync/commerce/latest",
            headers={"Authorization": server.fake.auth_header, "Idempotency-Key": key},
            json={},
        )
    assert reply.status_code == 200
    refused_key = str(uuid.uuid4())
    out = tmp_path / "out.jsonl"
    lines = [
        {"event": "started", "company_id": done, "idempotency_key": str(uuid.uuid4())},
        {"event": "result", "company_id": done, "ok": True},
        {"event": "started", "company_id": unfinished, "idempotency_key": key},
        {"event": "started", "company_id": refused, "idempotency_key": refused_key},
        {"event": "result", "company_id": refused, "ok": False, "fresh_key_safe": True},
    ]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event": "resu')
    source = tmp_path / "ids.txt"
    source.write_text(f"{done}\n{unfinished}\n{refused}\n{new}\n")
    code, summary = run_json(
        capsys, "sync", "bulk", str(source), "-o", str(out), "--no-progress", *conn(server)
    )
    assert code == 0
    assert summary["skipped_already_done"] == 1
    assert summary["succeeded"] == 3
    fake = server.fake
    assert fake.syncs_started(done) == 0
    assert fake.syncs_started(unfinished) == 1  # replayed from Codat's idempotency cache
    assert fake.syncs_started(refused) == 1
    assert fake.syncs_started(new) == 1
    fake.assert_no_duplicate_syncs()
    keys = {s.company_id: s.idempotency_key for s in fake.syncs}
    assert keys[refused] != refused_key  # Codat refused it before: a fresh key is safe
    replays = [r for r in fake.requests if r.company_id == unfinished and r.replayed]
    assert len(replays) == 1
    journal = Journal.load(out)
    assert journal.done == {done, unfinished, refused, new}
    assert journal.skipped_lines == 1  # the torn line


def test_bulk_interrupted_with_ctrl_c_then_resumed(tmp_path: Path) -> None:
    fake = FakeCodat()
    fake.faults.randomly(Fault.latency(0.02), 1.0)
    companies = [str(uuid.uuid4()) for _ in range(150)]
    # After the first 40, each first attempt takes 2 s: the run cannot end (~73 s of
    # work at concurrency 3, past the 60 s wait below) before the Ctrl-C, however
    # slowly a busy machine looks.
    for company in companies[40:]:
        fake.faults.script(Fault.latency(2.0), company_id=company)
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(companies) + "\n")
    out = tmp_path / "out.jsonl"
    with FakeCodatServer(fake) as server:
        argv = [
            sys.executable,
            "-m",
            "codat_commerce_async.cli",
            "sync",
            "bulk",
            str(source),
            "-o",
            str(out),
            "--concurrency",
            "3",
            "--requests-per-minute",
            "60000",
            "--no-progress",
            *conn(server),
        ]
        # Hang guards only (60 s): a starved machine may start and stop the child slowly.
        # The with-block closes the pipes even if the child had to be killed.
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if out.exists() and out.read_text().count('"result"') >= 20:
                        break
                    time.sleep(0.01)
                child.send_signal(signal.SIGINT)
                _, err = child.communicate(timeout=60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        assert child.returncode == 130, err
        assert "Traceback" not in err
        assert "rerun the same command to resume" in err
        first = [json.loads(line) for line in out.read_text().splitlines()]
        done_first = {e["company_id"] for e in first if e["event"] == "result"}
        assert 20 <= len(done_first) < 150

        fake.faults.clear()  # the resumed run at full speed
        rerun = ["sync", "bulk", str(source), "-o", str(out), "--no-progress"]
        assert main([*rerun, "--requests-per-minute", "60000", *conn(server)]) == 0
        entries = [json.loads(line) for line in out.read_text().splitlines()]
        ok = {e["company_id"] for e in entries if e["event"] == "result" and e["ok"]}
        assert ok == set(companies)
        for company in companies:
            assert fake.syncs_started(company) == 1, company
        fake.assert_no_duplicate_syncs()
        # Keys recorded before the interruption were reused for the unfinished companies.
        first_keys = {
            e["company_id"]: e["idempotency_key"] for e in first if e["event"] == "started"
        }
        unfinished = set(first_keys) - done_first
        assert unfinished  # Ctrl-C caught requests in flight
        for company in unfinished:
            later = [
                e["idempotency_key"]
                for e in entries[len(first) :]
                if e["event"] == "started" and e["company_id"] == company
            ]
            assert later == [first_keys[company]]


def test_bulk_wait_interrupted_with_ctrl_c_then_resumed(tmp_path: Path) -> None:
    # ``--wait``: the Ctrl-C lands while syncs are waited for (each runs 3 s); the journal
    # still holds every key, and the rerun replays them: one sync per company.
    fake = FakeCodat(sync_duration=3.0)
    companies = [str(uuid.uuid4()) for _ in range(40)]
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(companies) + "\n")
    out = tmp_path / "out.jsonl"
    wait = ["--wait", "--poll-interval", "0.2", "--max-poll-interval", "0.5"]
    with FakeCodatServer(fake) as server:
        argv = [
            sys.executable,
            "-m",
            "codat_commerce_async.cli",
            "sync",
            "bulk",
            str(source),
            "-o",
            str(out),
            "--requests-per-minute",
            "60000",
            "--no-progress",
            *wait,
            *conn(server),
        ]
        # Hang guards only (60 s), as above.
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if out.exists() and out.read_text().count('"started"') >= 40:
                        break
                    time.sleep(0.01)
                child.send_signal(signal.SIGINT)
                _, err = child.communicate(timeout=60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        assert child.returncode == 130, err
        assert "Traceback" not in err
        first = [json.loads(line) for line in out.read_text().splitlines()]
        assert len([e for e in first if e["event"] == "result"]) < 40  # still waiting
        rerun = ["sync", "bulk", str(source), "-o", str(out), "--no-progress", *wait]
        assert main([*rerun, "--requests-per-minute", "60000", *conn(server)]) == 0
        entries = [json.loads(line) for line in out.read_text().splitlines()]
    ok = {e["company_id"] for e in entries if e["event"] == "result" and e["ok"]}
    assert ok == set(companies)
    for company in companies:
        assert fake.syncs_started(company) == 1, company
    fake.assert_no_duplicate_syncs()


# -- friction: unreadable files, duplicates, the demo's counts, company-status -------------


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("name,email\nacme,a@example.com\n", "'name', 'email'"),
        ("store;region\nx;eu\n", "'store', 'region'"),
    ],
)
def test_csv_without_an_id_column_is_refused(
    server: FakeCodatServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    columns: str,
) -> None:
    source = tmp_path / "ids.csv"
    source.write_text(text)
    with pytest.raises(ValueError, match="no company id column"):
        read_company_ids(source)
    line = bulk_refused_before_sending(server, capsys, source, tmp_path / "o.jsonl")
    assert f"(columns found: {columns})" in line
    assert "companyId, company_id, company or id" in line
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("layout", ["csv", "semicolons"])
def test_an_id_file_with_a_huge_field_is_one_line_and_sends_nothing(
    server: FakeCodatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    separator = "," if layout == "csv" else ";"
    source = tmp_path / "ids.csv"
    source.write_text(f"companyId{separator}note\n{uuid.uuid4()}{separator}{'x' * 200_000}\n")
    line = bulk_refused_before_sending(server, capsys, source, tmp_path / "o.jsonl")
    assert f"{source}: line 2 holds a field longer than" in line
    assert "not a file of company ids" in line
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"event": "started", "company_id": ["a"], "idempotency_key": "k"}, "company_id"),
        ({"event": "result", "company_id": {"id": "a"}, "ok": True}, "company_id"),
        ({"event": ["started"], "company_id": "a"}, "event"),
        ({"event": "started", "company_id": "a", "idempotency_key": {"k": 1}}, "idempotency_key"),
    ],
    ids=["list-company", "object-company", "list-event", "object-key"],
)
def test_a_journal_line_of_the_wrong_shape_is_one_line_and_sends_nothing(
    server: FakeCodatServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record: dict[str, Any],
    field: str,
) -> None:
    company = str(uuid.uuid4())
    source = tmp_path / "ids.txt"
    source.write_text(f"{company}\n")
    out = tmp_path / "out.jsonl"
    good = {"event": "started", "company_id": company, "idempotency_key": str(uuid.uuid4())}
    out.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    line = bulk_refused_before_sending(server, capsys, source, out)
    assert f"{out}: line 2: {field} is not a string" in line
    assert out.read_text().count("\n") == 2  # nothing appended


def test_duplicate_ids_are_counted_and_dropped(
    server: FakeCodatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    source = tmp_path / "ids.txt"
    source.write_text(f"{a}\n{b}\n{a.upper()}\n{a}\n")
    argv = ["sync", "bulk", str(source), "-o", str(tmp_path / "o.jsonl"), "--no-progress"]
    assert main([*argv, *conn(server)]) == 0
    captured = capsys.readouterr()
    assert f"2 duplicate company ids in {source} dropped" in captured.err
    assert server.fake.syncs_started(a) == server.fake.syncs_started(b) == 1

    code, summary = run_json(capsys, *argv, "-o", str(tmp_path / "p.jsonl"), *conn(server))
    assert (code, summary["companies"], summary["duplicates_dropped"]) == (0, 2, 2)


def test_company_status(server: FakeCodatServer, capsys: pytest.CaptureFixture[str]) -> None:
    company = str(uuid.uuid4())
    assert main(["sync", "company-status", company, *conn(server)]) == 1
    assert "404" in one_line_error(capsys)
    code, started = run_json(capsys, "sync", "request", company, *conn(server))
    assert code == 0
    code, status = run_json(capsys, "sync", "company-status", company, *conn(server))
    assert code == 0
    assert status["sync_id"] == started["sync_id"]
    assert status["connections"] == "Fake Commerce (Linked)"
    assert [r.operation for r in server.fake.requests] == [
        "get-sync-status",
        "request-sync",
        "get-sync-status",
    ]
