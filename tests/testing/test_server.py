"""The fake served by uvicorn on a loopback port, including real connection drops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid

import anyio
import pytest

from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault, run_server

from .._http import httpx
from .conftest import latest, status


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fake-codat-server"]


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_serves_on_an_ephemeral_loopback_port(company):
    fake = FakeCodat()
    with FakeCodatServer(fake) as server:
        assert [t.daemon for t in server_threads()] == [True]
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": fake.auth_header}
        ) as http:
            response = http.post(latest(company), json={"syncTo": None})
            listed = http.get(status(company, "list"))
        port = server.port

        assert response.status_code == 200
        assert response.json()["companyId"] == company
        assert "server" not in response.headers
        assert listed.json()[0]["syncId"] == response.json()["commerceSyncId"]
        # State written on the server thread is visible here.
        assert fake.syncs_started(company) == 1
        assert [r.status for r in fake.requests] == [200, 200]
        assert fake.requests[0].header("authorization") == "[redacted]"

    assert not server.running
    assert server_threads() == []
    assert refused(port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    server.stop()  # idempotent


@pytest.mark.anyio
async def test_async_context_manager_and_socket_drop(company):
    fake = FakeCodat()
    fake.faults.script(Fault.drop())
    key = str(uuid.uuid4())
    async with (
        FakeCodatServer(fake) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": fake.auth_header}
        ) as http,
    ):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await http.post(latest(company), headers={"Idempotency-Key": key})
        # The app processed the request before the connection was cut.
        assert fake.syncs_started(company) == 1
        assert fake.requests[-1].dropped

        retry = await http.post(latest(company), headers={"Idempotency-Key": key})
        assert retry.status_code == 200
        assert retry.json()["commerceSyncId"] == fake.syncs[0].commerce_sync_id
    assert fake.syncs_started(company) == 1
    assert server_threads() == []


def test_dates_past_utcs_calendar_get_codats_400_over_the_socket(company):
    fake = FakeCodat()
    with (
        FakeCodatServer(fake) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": fake.auth_header}) as http,
    ):
        response = http.post(latest(company), json={"syncTo": "9999-12-31T23:59:59-01:00"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    (item,) = response.json()["validation"]["errors"]
    assert item["itemId"] == "syncTo"
    assert fake.syncs_started() == 0


def test_edge_drop_and_errors_over_the_socket(company):
    fake = FakeCodat()
    fake.faults.script(Fault.drop(stage="edge"), Fault.edge(502), Fault.fail_after_sync(503))
    with (
        FakeCodatServer(fake) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": fake.auth_header}) as http,
    ):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            http.post(latest(company))
        assert fake.syncs_started() == 0
        gateway = http.post(latest(company))
        after = http.post(latest(company))
        fine = http.post(latest(company))
    assert (gateway.status_code, gateway.headers["content-type"][:9]) == (502, "text/html")
    assert after.status_code == 503
    assert fine.status_code == 200
    assert fake.syncs_started() == 2


def test_default_fake_and_failed_start():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = FakeCodatServer(port=busy.getsockname()[1])
        assert isinstance(server.fake, FakeCodat)
        with pytest.raises(RuntimeError, match="failed to start"):
            server.start()
    assert server_threads() == []


def test_cannot_start_twice():
    with FakeCodatServer() as server, pytest.raises(RuntimeError, match="already"):
        server.start()


def test_missing_uvicorn_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ImportError, match=r"codat-commerce-async\[fake-server\]"):
        FakeCodatServer().start()


def test_run_server_rejects_a_fake_plus_options():
    with pytest.raises(TypeError, match="not both"):
        run_server(fake=FakeCodat(), sync_duration=3)


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_run_server_blocks_until_ctrl_c(company):
    code = (
        "from codat_commerce_async.testing import run_server\n"
        "run_server(port=0, api_key='cli-key', latency=0.001, fail_rate=0.0, seed=1)\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        assert process.stderr is not None
        try:
            port = None
            for line in process.stderr:
                match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
                if match:
                    port = int(match.group(1))
                    break
            assert port is not None
            auth = FakeCodat(api_key="cli-key").auth_header
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                assert (
                    http.post(latest(company), headers={"Authorization": auth}).status_code == 200
                )
            process.send_signal(signal.SIGINT)
            rest = process.stderr.read()
            assert process.wait(timeout=60) == 0, rest  # a hang guard
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.anyio
async def test_concurrent_requests_over_the_socket(company):
    fake = FakeCodat(seed=5)  # the seed fixes which draws drop, so some of the first 40 do
    fake.faults.randomly(Fault.drop(), 0.2, operation="request-sync")
    keys = [str(uuid.uuid4()) for _ in range(40)]
    outcomes: dict[str, int] = {}

    async def trigger(http: httpx.AsyncClient, key: str) -> None:
        # Retry dropped calls with the same key, as an idempotent client would.
        for _ in range(20):
            try:
                response = await http.post(latest(company), headers={"Idempotency-Key": key})
            except (httpx.RemoteProtocolError, httpx.ReadError):
                continue
            outcomes[key] = response.status_code
            return

    async with (
        FakeCodatServer(fake) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": fake.auth_header}
        ) as http,
        anyio.create_task_group() as tg,
    ):
        for key in keys:
            tg.start_soon(trigger, http, key)
        _ = fake.requests  # read from this thread while the server thread writes

    assert outcomes == dict.fromkeys(keys, 200)
    assert fake.syncs_started(company) == len(keys)
    assert any(r.dropped for r in fake.requests)
    fake.assert_no_duplicate_syncs()
