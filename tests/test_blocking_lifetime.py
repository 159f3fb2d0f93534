"""A blocking client kept in no variable works (issue 16, item 1): everything a
``SyncClient`` hands out keeps its loop and pool alive, and a forgotten client is closed
once, with one ``ResourceWarning`` naming ``SyncClient``.

The one-liners run as typed, each in a fresh interpreter against the fake Codat on a
loopback port; the 60 s timeouts are hang guards (the process must exit by itself), not
timing assertions. The same objects are also checked in-process with ``gc.collect()``
between taking them and using them.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from codat_commerce_async import ClientClosedError, SyncClient
from codat_commerce_async.testing import FakeCodat, FakeCodatServer

from ._http import httpx

HANG_GUARD = 60.0

#: The journeys, as a newcomer types them; ``NEW`` is ``SyncClient(base_url=..., api_key=...)``.
ONE_LINERS = {
    "resource of a temporary": "NEW.sync.request_sync(company)",
    "resource in a variable": "sync = NEW.sync\nsync.request_sync(company)",
    "with_options copy": "NEW.with_options(max_retries=1).sync.request_sync(company)",
    "raw-response view": "NEW.sync.with_raw_response.request_sync(company).parsed",
    "bound method": "request = NEW.sync.request_sync\nrequest(company)",
    "bulk run in a for loop": "for result in NEW.sync.request_sync_many([company]):\n"
    "    assert result.ok, result",
    "bulk run in a variable": "run = NEW.sync.request_sync_many([company])\n"
    "assert [r.ok for r in run] == [True]",
    "bulk run in a with block": "with NEW.sync.request_sync_many([company]) as results:\n"
    "    assert [r.ok for r in results] == [True]",
}

SCRIPT = """\
import uuid
from codat_commerce_async import SyncClient
from codat_commerce_async.testing import FakeCodat, FakeCodatServer
fake = FakeCodat()
with FakeCodatServer(fake) as server:
    company = str(uuid.uuid4())
{journey}
    print("syncs started:", fake.syncs_started(company))
"""


def python(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def journey(line: str) -> str:
    new = "SyncClient(base_url=server.base_url, api_key=fake.api_key)"
    return SCRIPT.format(journey=textwrap.indent(line.replace("NEW", new), "    "))


@pytest.mark.parametrize("name", list(ONE_LINERS))
def test_a_one_liner_sends_and_the_process_exits(name: str) -> None:
    done = python(journey(ONE_LINERS[name]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "syncs started: 1"
    assert done.stderr == ""  # no traceback, nothing printed at exit


def test_a_forgotten_client_gives_one_warning_naming_sync_client() -> None:
    code = journey("client = NEW\nclient.sync.request_sync(company)")
    done = python(code, "-W", "always::ResourceWarning")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "syncs started: 1"
    warnings = [line for line in done.stderr.splitlines() if "Warning:" in line]
    assert len(warnings) == 1, done.stderr  # not AsyncSyncClient's, nor an unclosed socket's
    assert "ResourceWarning: SyncClient was left without being closed" in warnings[0]


# -- in-process -------------------------------------------------------------------------


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "codat-commerce-async-loop"]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeCodat, str]]:
    fake = FakeCodat()
    with FakeCodatServer(fake) as server:
        yield fake, server.base_url


def _new(served: tuple[FakeCodat, str]) -> SyncClient:
    fake, url = served
    return SyncClient(base_url=url, api_key=fake.api_key)


#: What the client hands out, taken from a client kept in no variable, and how to use it.
HANDED_OUT: dict[str, tuple[Callable[[SyncClient], Any], Callable[[Any, str], None]]] = {
    "sync resource": (lambda c: c.sync, lambda sync, company: sync.request_sync(company)),
    "with_options copy": (
        lambda c: c.with_options(max_retries=1),
        lambda copy, company: copy.sync.request_sync(company),
    ),
    "raw-response view": (
        lambda c: c.sync.with_raw_response,
        lambda raw, company: raw.request_sync(company),
    ),
    "bound method": (lambda c: c.sync.request_sync, lambda request, company: request(company)),
    "wait method": (
        lambda c: (c.sync.request_sync, c.sync.wait_for_sync),
        lambda pair, company: pair[1](company, pair[0](company), poll_interval=0.01),
    ),
    "bulk run": (
        lambda c: c.sync.request_sync_many,
        lambda many, company: list(many([company])),
    ),
}


@pytest.mark.parametrize("name", list(HANDED_OUT))
def test_what_a_dropped_client_handed_out_keeps_it_alive(
    name: str, served: tuple[FakeCodat, str]
) -> None:
    fake, _ = served
    take, use = HANDED_OUT[name]
    company = str(uuid.uuid4())
    before = len(_loop_threads())
    handed_out = take(_new(served))
    gc.collect()  # the client itself is unreachable now
    use(handed_out, company)
    gc.collect()
    assert fake.syncs_started(company) == 1
    with pytest.warns(ResourceWarning, match="SyncClient was left without being closed"):
        del handed_out
        gc.collect()
    for thread in _loop_threads()[before:]:
        thread.join(HANG_GUARD)  # the finaliser stops the loop thread
    assert len(_loop_threads()) == before


def test_a_bulk_run_of_a_dropped_client_runs(served: tuple[FakeCodat, str]) -> None:
    fake, _ = served
    companies = [str(uuid.uuid4()) for _ in range(3)]
    run = _new(served).sync.request_sync_many(companies)
    gc.collect()
    with pytest.warns(ResourceWarning, match="SyncClient was left"):
        assert sorted(r.company_id for r in run if r.ok) == sorted(companies)
        del run
        gc.collect()
    assert all(fake.syncs_started(c) == 1 for c in companies)


def test_a_closed_client_refuses_calls_naming_sync_client(served: tuple[FakeCodat, str]) -> None:
    client = _new(served)
    sync = client.sync
    client.close()
    with pytest.raises(ClientClosedError, match="SyncClient is closed"):
        sync.request_sync(str(uuid.uuid4()))
    with pytest.raises(ClientClosedError, match="SyncClient is closed"):
        list(sync.request_sync_many([str(uuid.uuid4())]))


# -- close ----------------------------------------------------------------------------

N = 4


def test_closing_the_blocking_client_ends_a_bulk_run_iterated_in_another_thread() -> None:
    """close() cancels the run's calls; the iterating thread gets an error (never a hang,
    never a silent end) and close() returns."""
    arrived = threading.Event()
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count == N:
            arrived.set()
        await asyncio.Event().wait()  # only a cancel ends it
        raise AssertionError("unreachable")

    client = SyncClient(
        api_key="canary-key-7f3c9a1e5b2d",
        base_url="https://api.codat.io",
        transport=httpx.MockTransport(handler),
    )
    outcome: list[BaseException | str] = []

    def iterate() -> None:
        try:
            for _ in client.sync.request_sync_many([str(uuid.uuid4()) for _ in range(N)]):
                pass
            outcome.append("ended silently")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=iterate)
    thread.start()
    assert arrived.wait(HANG_GUARD)
    client.close()
    thread.join(HANG_GUARD)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosedError), outcome


def test_the_compat_engine_outlives_its_dropped_compat_client(
    served: tuple[FakeCodat, str],
) -> None:
    """``CodatSyncCommerce(...).engine`` is a SyncClient handed out: it keeps working once
    the compat client is gone, and is closed quietly (the original had nothing to close)."""
    import base64
    import warnings

    from codat_commerce_async.compat import CodatSyncCommerce
    from codat_commerce_async.compat.models import shared

    fake, url = served
    auth = "Basic " + base64.b64encode(fake.api_key.encode()).decode()
    company = str(uuid.uuid4())
    before = len(_loop_threads())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = CodatSyncCommerce(
            security=shared.Security(auth_header=auth), server_url=url
        ).engine
        gc.collect()
        engine.sync.request_sync(company)
        del engine
        gc.collect()
    assert fake.syncs_started(company) == 1
    for thread in _loop_threads()[before:]:
        thread.join(HANG_GUARD)
    assert len(_loop_threads()) == before
