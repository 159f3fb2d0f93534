"""The script examples: trio bulk, the blocking (cron-style) script and the notebook style,
run in-process and as real processes against the fake Codat."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from ._examples import EXAMPLES, load_example
from ._http import httpx
from .conftest import COMPANY

trio_bulk = load_example("trio_bulk")
blocking_script = load_example("blocking_script")
notebook_style = load_example("notebook_style")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodatServer]:
    with FakeCodatServer(FakeCodat()) as srv:
        monkeypatch.setenv("CODAT_API_KEY", srv.fake.api_key)
        monkeypatch.setenv("CODAT_BASE_URL", srv.base_url)
        yield srv


def run_example(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env, "PYTHONWARNINGS": "error"},
        check=False,
    )


# -- trio -------------------------------------------------------------------------------


def test_trio_bulk_runs_under_trio_run() -> None:
    fake = FakeCodat()
    unknown = fake.mark_unknown(str(uuid.uuid4()))
    ids = [str(uuid.uuid4()) for _ in range(12)]
    lines = ["# companies to sync", *ids, "", unknown]
    out = io.StringIO()
    status = trio.run(
        functools.partial(
            trio_bulk.main,
            trio_bulk.read_ids(lines),
            "2024-06-30T00:00:00Z",
            out=out,
            api_key=fake.api_key,
            base_url="http://localhost",
            transport=httpx.ASGITransport(app=fake),
        )
    )
    assert status == 1  # one company failed
    report = out.getvalue().splitlines()
    assert sum(line.startswith("ok ") for line in report) == 12
    (failed,) = [line for line in report if line.startswith("failed")]
    assert failed.startswith(f"failed {unknown}: ") and "status=404" in failed
    assert report[-1] == "12 triggered, 1 failed"
    assert fake.syncs_started() == 12
    assert {r.body for r in fake.requests} == {b'{"syncTo":"2024-06-30T00:00:00Z"}'}


def test_trio_bulk_cancels_cleanly() -> None:
    fake = FakeCodat()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    fake.faults.randomly(Fault.latency(3600), 1.0, company_id=ids[1])

    returned: list[int] = []

    async def run() -> None:
        returned.append(
            await trio_bulk.main(
                ids,
                out=io.StringIO(),
                api_key=fake.api_key,
                base_url="http://localhost",
                transport=httpx.ASGITransport(app=fake),
            )
        )

    async def cancel_when_stuck() -> None:
        with trio.fail_after(30):  # only a hang runs out
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                while fake.in_flight(ids[1]) == 0 or fake.syncs_started() < 2:
                    await trio.sleep(0.005)
                nursery.cancel_scope.cancel()  # what Ctrl-C does to trio.run

    trio.run(cancel_when_stuck)
    assert returned == []  # cancelled, not finished
    assert fake.in_flight() == 0
    assert fake.syncs_started() == 2
    assert len(fake.requests) == 3  # the hanging one was not retried


def test_trio_bulk_as_a_process(server: FakeCodatServer, tmp_path: Path) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    listing = tmp_path / "companies.txt"
    listing.write_text("\n".join(ids) + "\n")
    done = run_example("trio_bulk.py", str(listing), env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "3 triggered, 0 failed"
    assert server.fake.syncs_started() == 3


# -- blocking script (cron-style) ----------------------------------------------------------


def test_blocking_script(server: FakeCodatServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert blocking_script.main(COMPANY, "2024-06-01", "2024-06-30") == 0
    out = capsys.readouterr().out
    assert out.endswith("2024-06-01T00:00:00Z -> 2024-06-30T00:00:00Z (Started)\n")
    server.fake.faults.script(Fault.error(403))
    assert blocking_script.main(COMPANY, "2024-06-01", "2024-06-30") == 1
    assert "failed:" in capsys.readouterr().err


def test_blocking_script_as_a_process(server: FakeCodatServer) -> None:
    done = run_example("blocking_script.py", COMPANY, "2024-06-01", "2024-06-30", env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sync ")
    assert done.stderr == ""
    (record,) = server.fake.requests
    assert record.operation == "request-sync-for-date-range"


# -- notebook style ----------------------------------------------------------------------


def test_notebook_style_inside_a_running_loop(
    server: FakeCodatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    summaries = asyncio.run(notebook_style.notebook(COMPANY))
    assert [s.company_id for s in summaries] == [COMPANY, COMPANY]
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in out] == ["[await]", "[blocking]"]
    assert [r.operation for r in server.fake.requests] == [
        "request-sync",
        "get-latest-sync",
        "request-sync-for-date-range",
    ]


# -- every example says what to install and how to run it ----------------------------------

EXTRAS = {"trio_bulk": "trio", "aiohttp_app": "aiohttp", "fastapi_app": "fastapi"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_every_example_docstring_names_install_and_run(path: Path) -> None:
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "pip install codat-commerce-async" in doc or "pip install 'codat-commerce-async[" in doc
    assert f"examples/{path.name}" in doc or f"examples.{path.stem}:" in doc
    if path.stem in EXTRAS:
        install = next(line for line in doc.splitlines() if "pip install" in line)
        assert EXTRAS[path.stem] in install
    if path.stem == "fastapi_webhooks":
        assert "[webhooks]" in doc
