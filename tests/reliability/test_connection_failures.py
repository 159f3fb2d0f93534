"""Matrix rows 1-6 (reliability.md section 8): failures of the connection itself,
over real loopback sockets, through the async client and the blocking facade.

Where the request may have reached Codat (rows 3-6) we *do* retry: every attempt
carries the call's one Idempotency-Key, so Codat answers a repeat with the first
response (or 409 while it still runs) instead of starting a second sync. The fake's
ledger proves it: one sync per key, whatever the fault.
"""

from __future__ import annotations

import time

import anyio
import pytest

from codat_commerce_async import APIConnectionError, APITimeoutError, SyncSummary
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from .._http import httpx
from .._sockets import (
    MisbehavingServer,
    answer,
    blackhole_port,
    close,
    closed_port,
    drip,
    forward,
    hang,
    reset,
    truncate,
)
from ..conftest import new_company
from ._harness import FAST, eventually, fake_records, open_api, raises

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]


def _keys(server: MisbehavingServer) -> list[str | None]:
    return [seen.headers.get("idempotency-key") for seen in server.seen]


def _fake_keys(fake: FakeCodat) -> list[str | None]:
    return [record.idempotency_key for record in fake_records(fake)]


def _replayed(fake: FakeCodat) -> list[bool]:
    return [record.replayed for record in fake_records(fake)]


# -- row 1 ----------------------------------------------------------------------------------


async def test_row01_connection_refused_is_retried_then_raised(mode: str) -> None:
    port = closed_port()
    async with open_api(mode, base_url=f"http://127.0.0.1:{port}") as api:
        exc = await raises(APIConnectionError, api.request_sync(new_company()))
    assert type(exc) is APIConnectionError
    assert exc.request_sent is False  # nothing reached anyone
    assert exc.attempts == 3
    waits = [event.wait for event in api.kinds("retry_scheduled")]
    assert len(waits) == 2 and all(0 <= w <= FAST.backoff_cap for w in waits if w is not None)


# -- row 2 ----------------------------------------------------------------------------------


async def test_row02_connect_timeout_is_retried_then_raised(mode: str) -> None:
    with blackhole_port() as port:
        async with open_api(
            mode, base_url=f"http://127.0.0.1:{port}", timeout=httpx.Timeout(2.0, connect=0.1)
        ) as api:
            started = time.monotonic()
            exc = await raises(APITimeoutError, api.request_sync(new_company()))
            elapsed = time.monotonic() - started
    assert exc.phase == "connect" and exc.request_sent is False
    assert exc.attempts == 3
    # Three 0.1 s connect timeouts (never early); the 2 s read timeout would take 6 s.
    assert 0.3 <= elapsed < 5.0


# -- row 3 ----------------------------------------------------------------------------------


async def test_row03_read_timeout_retries_with_the_same_key(
    mode: str, server: MisbehavingServer
) -> None:
    server.always(hang())
    async with open_api(mode, base_url=server.url, timeout=httpx.Timeout(2.0, read=0.1)) as api:
        exc = await raises(APITimeoutError, api.request_sync(new_company()))
    assert exc.phase == "read" and exc.request_sent is True and exc.attempts == 3
    keys = _keys(server)
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0] == exc.idempotency_key


async def test_row03_read_timeout_after_the_sync_started_never_duplicates(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    # Deliberate difference from the note's "no retry without a key": we always send a
    # key, so the retry gets Codat's replay of the first answer, not a second sync.
    company = new_company()
    fake.faults.script(Fault.latency(0.6, stage="after_sync"), company_id=company)
    async with open_api(
        mode, base_url=fake_server.base_url, timeout=httpx.Timeout(3.0, read=0.2)
    ) as api:
        raw = await api.raw_request_sync(company)
    # The fake records the first request once its (delayed) answer is decided.
    assert await eventually(lambda: len(fake_records(fake, company)) == 2)
    assert isinstance(raw.parsed, SyncSummary) and raw.attempts == 2
    assert fake.syncs_started(company) == 1
    fake.assert_no_duplicate_syncs()
    assert _replayed(fake) == [False, True]
    assert _fake_keys(fake) == [raw.idempotency_key] * 2
    assert raw.parsed.commerce_sync_id == fake.syncs[0].commerce_sync_id


# -- row 4 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["after_sync", "before_sync"])
async def test_row04_reset_before_any_response_byte_never_duplicates(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer, stage: str
) -> None:
    company = new_company()
    fake.faults.script(Fault.drop(stage=stage), company_id=company)  # type: ignore[arg-type]
    async with open_api(mode, base_url=fake_server.base_url) as api:
        raw = await api.raw_request_sync(company)
    assert raw.attempts == 2
    assert fake.syncs_started(company) == 1
    fake.assert_no_duplicate_syncs()
    # after_sync: the sync ran, the retry gets the stored answer; before_sync: the key was
    # released, so the retry runs the request for the first time.
    assert _replayed(fake) == [False, stage == "after_sync"]
    assert _fake_keys(fake) == [raw.idempotency_key] * 2


@pytest.mark.parametrize("fault", [reset, close], ids=["rst", "fin"])
async def test_row04_persistent_resets_raise_connection_error(
    mode: str, server: MisbehavingServer, fault: object
) -> None:
    server.always(fault())  # type: ignore[operator]
    async with open_api(mode, base_url=server.url) as api:
        exc = await raises(APIConnectionError, api.request_sync(new_company()))
    assert type(exc) is APIConnectionError and exc.request_sent is True and exc.attempts == 3
    assert len(set(_keys(server))) == 1 and server.requests == 3


async def test_row04_stale_keep_alive_connection_is_dropped_and_retried(
    mode: str, server: MisbehavingServer
) -> None:
    server.then(answer(), close())  # the second request arrives on a connection being closed
    async with open_api(mode, base_url=server.url) as api:
        await api.request_sync(new_company())
        raw = await api.raw_request_sync(new_company())
    seen = list(server.seen)
    assert raw.attempts == 2 and len(seen) == 3
    assert seen[0].connection == seen[1].connection != seen[2].connection
    assert seen[1].headers["idempotency-key"] == seen[2].headers["idempotency-key"]


# -- row 5 ----------------------------------------------------------------------------------


async def test_row05_truncated_body_is_never_parsed_and_is_retried(
    mode: str, server: MisbehavingServer
) -> None:
    server.then(truncate(declared=200, send=50))
    async with open_api(mode, base_url=server.url) as api:
        raw = await api.raw_request_sync(new_company())
    assert raw.attempts == 2 and isinstance(raw.parsed, SyncSummary)
    assert len(set(_keys(server))) == 1 and server.requests == 2


async def test_row05_truncated_after_the_sync_started_never_duplicates(
    mode: str, fake: FakeCodat, fake_server: FakeCodatServer
) -> None:
    company = new_company()
    with MisbehavingServer(upstream=("127.0.0.1", fake_server.port)) as proxy:
        proxy.then(forward("truncate"))
        async with open_api(mode, base_url=proxy.url) as api:
            raw = await api.raw_request_sync(company)
    assert raw.attempts == 2
    assert fake.syncs_started(company) == 1
    fake.assert_no_duplicate_syncs()
    assert _replayed(fake) == [False, True]
    assert raw.parsed.commerce_sync_id == fake.syncs[0].commerce_sync_id


async def test_row05_persistent_truncation_raises(mode: str, server: MisbehavingServer) -> None:
    server.always(truncate())
    async with open_api(mode, base_url=server.url) as api:
        exc = await raises(APIConnectionError, api.request_sync(new_company()))
    assert exc.request_sent is True and exc.attempts == 3


# -- row 6 ----------------------------------------------------------------------------------


async def test_row06_slow_drip_is_bounded_by_wall_clock(
    mode: str, server: MisbehavingServer
) -> None:
    # One byte every 0.5 s never trips a 1 s per-read timeout; only the wall clock can stop it.
    server.always(drip(interval=0.5))
    async with open_api(
        mode,
        base_url=server.url,
        timeout=httpx.Timeout(5.0, read=1.0),
        attempt_timeout=0.6,
        deadline=1.1,
    ) as api:
        started = time.monotonic()
        exc = await raises(APITimeoutError, api.request_sync(new_company()))
        elapsed = time.monotonic() - started
    # Attempt 1 ends at its 0.6 s bound and is retried (same key); attempt 2 at the deadline.
    assert exc.phase == "deadline" and exc.attempts == 2
    # The drip would take minutes: only a hang, never a busy machine, reaches 5 s.
    assert 1.0 <= elapsed < 5.0
    failures = [event.error for event in api.kinds("retry_scheduled")]
    assert isinstance(failures[0], APITimeoutError) and failures[0].phase == "attempt"
    assert len(set(_keys(server))) == 1


async def test_row06_waiting_for_a_slot_counts_against_the_deadline(
    mode: str, server: MisbehavingServer
) -> None:
    # One slot, held by a call that hangs until its own deadline: the call queued behind
    # it must still end at *its* deadline, not a full deadline after it got the slot.
    # The holder's deadline outlasts the queued call's, so however late a busy machine
    # starts the second call (a thread, for the facade), it queues and runs out there.
    server.always(hang())
    async with open_api(mode, base_url=server.url, max_concurrency=1, attempt_timeout=None) as api:
        started = time.monotonic()
        ends: list[float] = []
        finished: list[float] = []

        async def one(deadline: float) -> None:
            await raises(APITimeoutError, api.request_sync(new_company(), deadline=deadline))
            ends.append(time.monotonic() - started)
            finished.append(deadline)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 1.2)
            assert await eventually(lambda: server.requests == 1)
            tg.start_soon(one, 0.6)
    assert len(ends) == 2, ends
    assert finished == [0.6, 1.2]  # the queued call gave up while the slot was still held
    # The queued call never got to send: with a full deadline from when it got the slot
    # it would have sent when the holder gave up. A hang guard only: ~1.2 s expected.
    assert server.requests == 1
    assert max(ends) < 5.0, ends
