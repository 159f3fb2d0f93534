"""Issue 9, defects 1-3: lifecycle at the edges. A client nobody closed never keeps a
process from exiting; closing during a call stops it and leaves nothing open;
closing on another event loop is safe. Real sockets and real subprocesses."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    ClientClosedError,
    SyncClient,
)

from .._sockets import MisbehavingServer, answer, hang
from ..conftest import CANARY_KEY
from ._harness import FAST, wait_until

#: Generous: a healthy child exits in well under a second; this only catches a hang.
_EXIT_LIMIT = 60.0


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
    "compat-not-closed": """
        import codat_commerce_async.compat as codat
        from codat_commerce_async.compat.models import operations, shared
        s = codat.CodatSyncCommerce(
            security=shared.Security(auth_header="Basic a2V5"), server_url=URL
        )
        s.sync.request_sync(operations.RequestSyncRequest(company_id=COMPANY))
        print("called")
    """,
    "compat-mid-call-in-daemon-thread": """
        import codat_commerce_async.compat as codat
        from codat_commerce_async.compat.models import operations, shared
        sent = threading.Event()
        s = codat.CodatSyncCommerce(
            security=shared.Security(auth_header="Basic a2V5"), server_url=URL,
            deadline=None, attempt_timeout=None, timeout=None,
            event_hooks=[lambda e: e.kind == "request_sent" and sent.set()],
        )
        request = operations.RequestSyncRequest(company_id=COMPANY)
        threading.Thread(target=s.sync.request_sync, args=(request,), daemon=True).start()
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
    step = hang() if case.endswith("mid-call-in-daemon-thread") else answer()
    with MisbehavingServer(default=step) as server:
        done = _run_child(_CHILDREN[case], server.url)
    assert done.returncode == 0, done.stderr
    if case != "constructed-only":
        assert done.stdout.strip() == "called"


# -- defect 2: close while a call is in flight ------------------------------------------------

#: A hang guard, not a timing assertion: a healthy close ends the call at once.
_HANG_GUARD = 20.0


def _client(server: MisbehavingServer, **options: object) -> AsyncSyncClient:
    settings: dict[str, object] = {
        "api_key": CANARY_KEY,
        "base_url": server.url,
        "retry_policy": FAST,
        "deadline": None,
        "attempt_timeout": None,
        "timeout": None,
    }
    settings.update(options)
    return AsyncSyncClient(**settings)  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("closer", ["original", "copy"])
async def test_aclose_during_a_call_ends_it_and_starts_nothing_new(
    server: MisbehavingServer, closer: str
) -> None:
    server.always(hang())
    client = _client(server)
    copy = client.with_options(max_retries=5)
    outcome: list[BaseException] = []
    company = _company()

    async def call() -> None:
        try:
            await copy.sync.request_sync(company)
        except BaseException as exc:
            outcome.append(exc)
            if not isinstance(exc, Exception):
                raise

    with anyio.fail_after(_HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            while server.requests < 1:
                await anyio.sleep(0.01)
            await (client if closer == "original" else copy).aclose()
    [error] = outcome
    assert isinstance(error, ClientClosedError) and isinstance(error, RuntimeError)
    assert error.attempts == 1 and error.idempotency_key
    assert server.requests == 1  # no attempt started after close
    assert await anyio.to_thread.run_sync(server.wait_idle)  # nothing left open
    assert server.requests == 1
    with pytest.raises(ClientClosedError):
        await client.sync.request_sync(company)
    await client.aclose()  # twice is safe


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aclose_during_retry_backoff_starts_no_retry(server: MisbehavingServer) -> None:
    server.always(answer(503, {"error": "busy"}, {"Retry-After": "30"}))
    client = _client(server, max_retries=3, retry_policy=None)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await client.sync.request_sync(_company())
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(_HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            while server.requests < 1:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)  # let it reach the 30 s wait
            await client.aclose()
    [error] = outcome
    assert isinstance(error, ClientClosedError) and error.attempts == 1
    assert server.requests == 1
    assert await anyio.to_thread.run_sync(server.wait_idle)


@pytest.mark.parametrize("closer", ["original", "copy-then-original"])
def test_sync_client_close_during_a_call_in_another_thread(
    server: MisbehavingServer, closer: str
) -> None:
    server.always(hang())
    facade = SyncClient(
        api_key=CANARY_KEY,
        base_url=server.url,
        retry_policy=FAST,
        deadline=None,
        attempt_timeout=None,
        timeout=None,
    )
    copy = facade.with_options(max_retries=5)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            copy.sync.request_sync(_company())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    assert wait_until(lambda: server.requests >= 1, timeout=_HANG_GUARD)
    if closer == "copy-then-original":
        copy.close()  # documented: a copy's close leaves the shared pool alone
        assert not facade.is_closed
    facade.close()
    worker.join(_HANG_GUARD)
    assert not worker.is_alive(), "the call did not end when the client closed"
    [error] = outcome
    assert isinstance(error, ClientClosedError) and error.attempts == 1
    assert server.requests == 1
    assert server.wait_idle()
    facade.close()


# -- defect 3: close on another event loop ----------------------------------------------------


def test_aclose_on_another_asyncio_loop_closes_the_pool(server: MisbehavingServer) -> None:
    # The pool of the ended loop is released at GC, where asyncio may warn about that
    # loop's transports (their sockets are already shut down): a ResourceWarning is
    # allowed, an open connection is not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _close_on_a_second_loop(server)
        gc.collect()


def _close_on_a_second_loop(server: MisbehavingServer, backend: str = "asyncio") -> None:
    client = _client(server)

    async def work() -> None:
        await client.sync.request_sync(_company())

    anyio.run(work, backend=backend)
    assert server.open_connections == 1  # kept alive in the pool
    anyio.run(client.aclose, backend=backend)  # the first loop has ended
    assert client.is_closed
    assert server.wait_idle(), "a connection of the closed client is still open"
    anyio.run(client.aclose, backend=backend)  # twice is safe
    with pytest.raises(ClientClosedError):
        anyio.run(work, backend=backend)


def test_aclose_in_a_second_trio_run_closes_the_pool(server: MisbehavingServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _close_on_a_second_loop(server, "trio")
        gc.collect()


def test_aclose_from_another_loop_while_the_owner_runs(server: MisbehavingServer) -> None:
    """The owning loop is alive in another thread: the close runs there."""
    client = _client(server)
    owner = asyncio.new_event_loop()
    thread = threading.Thread(target=owner.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(client.sync.request_sync(_company()), owner).result(
            _HANG_GUARD
        )
        assert server.open_connections == 1
        asyncio.run(client.aclose())
        assert client.is_closed and server.wait_idle()
    finally:
        owner.call_soon_threadsafe(owner.stop)
        thread.join(_HANG_GUARD)
        owner.close()
