"""Issue 9, defects 1-3: lifecycle at the edges. A client nobody closed never keeps a
process from exiting; closing during a call stops it and leaves nothing open;
closing on another event loop is safe. Real sockets and real subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    ClientClosedError,
    SyncClient,
)

from ..conftest import CANARY_KEY
from ._harness import FAST, wait_until
from ._sockets import MisbehavingServer, answer, hang

#: Generous: a healthy child exits in well under a second; this only catches a hang.
_EXIT_LIMIT = 30.0


def _company() -> str:
    return str(uuid.uuid4())


def _run_child(body: str, url: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import threading
        from codat_commerce_async import SyncClient
        URL = {url!r}
        COMPANY = {_company()!r}
        """
    ) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    try:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=_EXIT_LIMIT,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the interpreter did not exit (hung at exit): {exc.stderr!r}")


_CHILDREN = {
    "constructed-only": """
        c = SyncClient(api_key="k", base_url=URL)
    """,
    "used-not-closed": """
        c = SyncClient(api_key="k", base_url=URL)
        c.sync.request_sync(COMPANY)
        print("called")
    """,
    "copy-used-not-closed": """
        c = SyncClient(api_key="k", base_url=URL).with_options(max_retries=0)
        c.sync.request_sync(COMPANY)
        print("called")
    """,
    "mid-call-in-daemon-thread": """
        sent = threading.Event()
        c = SyncClient(
            api_key="k", base_url=URL, deadline=None, attempt_timeout=None, timeout=None,
            event_hooks=[lambda e: e.kind == "request_sent" and sent.set()],
        )
        threading.Thread(target=c.sync.request_sync, args=(COMPANY,), daemon=True).start()
        assert sent.wait(30)
        print("called")
    """,
    "in-a-function-then-dropped": """
        def work():
            c = SyncClient(api_key="k", base_url=URL)
            c.sync.request_sync(COMPANY)
        work()
        import gc; gc.collect()
        print("called")
    """,
}


@pytest.mark.parametrize("case", sorted(_CHILDREN))
def test_a_sync_client_never_closed_never_hangs_interpreter_exit(case: str) -> None:
    step = hang() if case == "mid-call-in-daemon-thread" else answer()
    with MisbehavingServer(default=step) as server:
        done = _run_child(_CHILDREN[case], server.url)
    assert done.returncode == 0, done.stderr
    if case != "constructed-only":
        assert done.stdout.strip() == "called"
