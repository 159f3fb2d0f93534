"""``codat-commerce fake-server`` as a real process, used from other processes.

- the original SDK's two documented examples, with only their imports changed (and a
  ``print`` for their ``# handle response`` placeholder), print a ``SyncSummary`` against
  ``codat-commerce fake-server --accept-any-auth``;
- after a CLI bulk run (a third process), this process reads ``GET /_fake/ledger`` and
  resets the fake with ``POST /_fake/reset``;
- that reset keeps the ``--latency`` and ``--fail-rate`` the process was started with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._http import httpx
from .conftest import TLS
from .test_compat import ported, seed_examples

STARTUP_SECONDS = 30  # generous: only a bound on a hang, never a timing assertion


@dataclass
class FakeProcess:
    process: subprocess.Popen[str]
    base_url: str
    banner: list[str]


def start_fake(*options: str) -> FakeProcess:
    argv = [sys.executable, "-m", "codat_commerce_async.cli", "fake-server", "--port", "0"]
    child = subprocess.Popen(
        [*argv, "--log-level", "warning", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner: list[str] = []
    assert child.stdout is not None
    for line in child.stdout:  # the banner is printed once the socket is bound
        banner.append(line.rstrip("\n"))
        if line.startswith("  try:"):
            break
    if not banner or not banner[0].startswith("fake Codat listening on "):
        child.kill()
        _, err = child.communicate(timeout=STARTUP_SECONDS)
        raise AssertionError(f"fake-server did not start: {banner} {err}")
    url = banner[0].removeprefix("fake Codat listening on ")
    return FakeProcess(child, url, banner)


def stop(fake: FakeProcess) -> None:
    fake.process.terminate()
    try:
        fake.process.communicate(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        fake.process.kill()
        fake.process.communicate()


@pytest.fixture(scope="module")
def _shared_any_auth_fake() -> Iterator[FakeProcess]:
    """One ``--accept-any-auth`` process for the module: each start imports the SDK
    (~0.5 s of CPU)."""
    fake = start_fake("--accept-any-auth", "--sync-duration", "0")
    try:
        yield fake
    finally:
        stop(fake)


@pytest.fixture
def any_auth_fake(_shared_any_auth_fake: FakeProcess) -> FakeProcess:
    """The shared process, reset through its public endpoint (whose effect the ledger
    test checks) so every test starts from an empty ledger."""
    reset = httpx.post(f"{_shared_any_auth_fake.base_url}/_fake/reset", verify=TLS)
    assert reset.status_code == 200
    assert _shared_any_auth_fake.process.poll() is None
    return _shared_any_auth_fake


def ledger(base_url: str) -> dict:
    response = httpx.get(f"{base_url}/_fake/ledger", verify=TLS)
    assert response.status_code == 200
    return dict(response.json())


def test_banner_names_the_base_url_and_credential(any_auth_fake: FakeProcess) -> None:
    assert f"  base URL:   {any_auth_fake.base_url}" in any_auth_fake.banner
    assert (
        "  credential: any non-empty Authorization header (--accept-any-auth)"
        in any_auth_fake.banner
    )


@pytest.mark.parametrize("index", [0, 1], ids=["request_sync", "request_sync_for_date_range"])
def test_original_examples_print_a_sync_summary(
    any_auth_fake: FakeProcess, tmp_path: Path, index: int
) -> None:
    script = tmp_path / f"example_{index}.py"
    # Only the imports changed; the docs' "# handle response" placeholder becomes a print.
    script.write_text(ported(seed_examples()[index], "    print(repr(res.sync_summary))"))
    env = {**os.environ, "CODAT_BASE_URL": any_auth_fake.base_url}
    env.pop("CODAT_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SyncSummary("), done.stdout
    assert "company_id='8a210b68-6988-11ed-a1eb-0242ac120002'" in done.stdout
    assert "sync_status_code=1000" in done.stdout
    window = done.stdout.split("SyncDateRange(", 1)[1].split(")", 1)[0]
    start, finish = (part.split("=", 1)[1] for part in window.split(", "))
    assert start <= finish  # example 0's syncTo (2022) precedes the window: never inverted
    seen = ledger(any_auth_fake.base_url)
    assert seen["syncs_started"] == 1
    assert seen["companies"]["8a210b68-6988-11ed-a1eb-0242ac120002"]["syncs_started"] == 1


def test_only_the_configured_key_without_accept_any_auth(tmp_path: Path) -> None:
    fake = start_fake("--api-key", "k-123")
    try:
        assert "  credential: API key 'k-123' (Authorization: Basic ay0xMjM=)" in fake.banner
        company = str(uuid.uuid4())
        url = f"{fake.base_url}/companies/{company}/sync/commerce/latest"
        wrong = httpx.post(
            url, headers={"Authorization": "Basic BASE_64_ENCODED(API_KEY)"}, verify=TLS
        )
        right = httpx.post(url, headers={"Authorization": "Basic ay0xMjM="}, verify=TLS)
        assert (wrong.status_code, right.status_code) == (401, 200)
    finally:
        stop(fake)


def test_ledger_from_another_process_after_a_cli_bulk_run(
    any_auth_fake: FakeProcess, tmp_path: Path
) -> None:
    companies = [str(uuid.uuid4()) for _ in range(25)]
    source = tmp_path / "ids.csv"
    source.write_text("company_id,name\n" + "".join(f"{c},shop\n" for c in companies))
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "codat_commerce_async.cli", "sync", "bulk", str(source)]
    options = ["-o", str(out), "--no-progress", "--json", "--requests-per-minute", "60000"]
    conn = ["--base-url", any_auth_fake.base_url, "--api-key", "anything"]
    done = subprocess.run(
        [*argv, *options, *conn], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["succeeded"] == 25

    seen = ledger(any_auth_fake.base_url)
    assert seen["syncs_started"] == 25
    assert seen["requests"] == 25
    assert seen["requests_by_operation"] == {"request-sync": 25}
    assert seen["duplicate_idempotency_keys"] == []
    assert set(seen["companies"]) == set(companies)
    journal = [json.loads(line) for line in out.read_text().splitlines()]
    keys = {e["company_id"]: e["idempotency_key"] for e in journal if e["event"] == "started"}
    for company, entry in seen["companies"].items():
        assert (entry["requests"], entry["syncs_started"]) == (1, 1)
        assert entry["idempotency_keys"] == [keys[company]]

    # Rerunning the finished file sends nothing; then a reset forgets everything.
    again = subprocess.run(
        [*argv, *options, *conn], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert ledger(any_auth_fake.base_url)["requests"] == 25
    reset = httpx.post(f"{any_auth_fake.base_url}/_fake/reset", verify=TLS)
    assert reset.status_code == 200
    assert ledger(any_auth_fake.base_url) == {
        "requests": 0,
        "requests_by_operation": {},
        "replayed": 0,
        "syncs_started": 0,
        "duplicate_idempotency_keys": [],
        "companies": {},
    }
    wrong = httpx.get(f"{any_auth_fake.base_url}/_fake/reset", verify=TLS)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert httpx.get(f"{any_auth_fake.base_url}/_fake/nothing", verify=TLS).status_code == 404


def test_reset_keeps_the_faults_the_process_was_started_with() -> None:
    fake = start_fake("--accept-any-auth", "--fail-rate", "1", "--latency", "0.001")
    try:
        url = f"{fake.base_url}/companies/{uuid.uuid4()}/sync/commerce/latest"
        auth = {"Authorization": "Basic anything"}
        before = httpx.post(url, headers=auth, verify=TLS)
        reset = httpx.post(f"{fake.base_url}/_fake/reset", verify=TLS)
        after = httpx.post(url, headers=auth, verify=TLS)

        assert (before.status_code, after.status_code) == (503, 503)  # still failing
        assert reset.status_code == 200
        assert reset.json() == {
            "reset": True,
            "forgot": {
                "requests": 1,
                "syncs": 0,
                "outcomes": 0,
                "idempotency_keys": 0,
                "faults": 0,
            },
            "kept": {
                "faults": [
                    {"kind": "latency", "stage": "before_sync", "delay": 0.001, "probability": 1},
                    {
                        "kind": "error",
                        "stage": "edge",
                        "status": 503,
                        "body": "html",
                        "probability": 1,
                    },
                ],
                "sync_duration": 5,
                "rate_limits": {},
            },
        }
        assert ledger(fake.base_url)["requests"] == 1  # only the request after the reset
    finally:
        stop(fake)
