"""Two overlapping calls with one idempotency key, against the fake Codat (issue 17).

In one client the later call sends nothing: it waits for the first and gets its answer.
In two clients (as in two processes) the later call is told 409 "still in progress" by
Codat, and waits that out with the same key until the first answer is replayed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import tenacity

from codat_commerce_async import (
    APIResponse,
    AsyncSyncClient,
    CallEvent,
    ConflictError,
    InternalServerError,
    RetryPolicy,
)
from codat_commerce_async.testing import FakeCodat, Fault, ManualClock

pytestmark = pytest.mark.anyio


class Gate:
    """The fake's latency sleep: parks the request (holding its key) until opened."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.opened = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.entered.set()
        await self.opened.wait()

    def open(self, event: CallEvent | None = None) -> None:
        self.opened.set()


def client_for(fake: FakeCodat, clock: ManualClock, **options: Any) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        clock=clock,
        **options,
    )


def held_key(clock: ManualClock, fault: Fault | None = None) -> tuple[Gate, FakeCodat, str, str]:
    """A fake whose next request for a new company is held at the gate (holding its key),
    with that company and a key: ``fault`` defaults to latency before the sync."""
    gate = Gate()
    fake = FakeCodat(clock=clock, sleep=gate.sleep)
    company, key = str(uuid.uuid4()), str(uuid.uuid4())
    held = fault if fault is not None else Fault.latency(1, stage="before_sync")
    fake.faults.script(held, company_id=company)
    return gate, fake, company, key


async def overlapping(
    first: Callable[[], Any], second: Callable[[], Any], gate: Gate
) -> tuple[Any, Any]:
    """Start ``first``; once the fake holds its key, start ``second``; return both answers."""
    answers: dict[str, Any] = {}

    async def run(name: str, call: Callable[[], Any]) -> None:
        try:
            answers[name] = await call()
        except Exception as exc:  # compared by the test
            answers[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "first", first)
        await gate.entered.wait()
        tg.start_soon(run, "second", second)
    return answers["first"], answers["second"]


async def test_a_later_call_with_the_same_key_gets_the_first_answer(
    clock: ManualClock,
) -> None:
    gate, fake, company, key = held_key(clock)
    async with client_for(fake, clock) as client:
        raw = client.sync.with_raw_response

        async def second() -> APIResponse[Any]:
            await anyio.lowlevel.checkpoint()
            gate.open()  # the first call finishes only once the second is waiting for it
            return await raw.request_sync(company, idempotency_key=key)

        first, later = await overlapping(
            lambda: raw.request_sync(company, idempotency_key=key), second, gate
        )

    assert isinstance(first, APIResponse) and isinstance(later, APIResponse), (first, later)
    assert later.parsed.commerce_sync_id == first.parsed.commerce_sync_id
    assert later.idempotency_key == first.idempotency_key == key
    assert fake.syncs_started(company) == 1
    # The later call sent nothing: no 409 to wait out, no replay.
    assert [(r.idempotency_key, r.status) for r in fake.requests] == [(key, 200)]


async def test_a_later_call_with_the_same_key_gets_the_first_error_too(
    clock: ManualClock,
) -> None:
    # The first attempt is held, then fails with a 500 that Codat stores for the key.
    gate, fake, company, key = held_key(clock, Fault.error(500, delay=1))
    async with client_for(fake, clock) as client:

        async def second() -> Any:
            gate.open()
            return await client.sync.request_sync(company, idempotency_key=key)

        first, later = await overlapping(
            lambda: client.sync.request_sync(company, idempotency_key=key), second, gate
        )

    assert isinstance(first, InternalServerError)
    assert later is first  # the same answer, not a second request
    assert len(fake.requests) == 1


async def test_a_409_for_a_key_still_in_progress_elsewhere_is_waited_out(
    clock: ManualClock,
) -> None:
    gate, fake, company, key = held_key(clock)
    # Two clients, as two processes of a service would have: nothing shared but Codat.
    async with (
        client_for(fake, clock) as one,
        # max_retries=1: a key still in progress is waited out until the deadline.
        client_for(fake, clock, max_retries=1, event_hooks=[gate.open]) as other,
    ):
        first, later = await overlapping(
            lambda: one.sync.with_raw_response.request_sync(company, idempotency_key=key),
            lambda: other.sync.with_raw_response.request_sync(company, idempotency_key=key),
            gate,
        )

    assert isinstance(first, APIResponse) and isinstance(later, APIResponse), (first, later)
    assert later.parsed.commerce_sync_id == first.parsed.commerce_sync_id
    assert fake.syncs_started(company) == 1
    seen = [(r.status, r.replayed) for r in fake.requests if r.status != 200 or r.replayed]
    assert seen[0] == (409, False) and seen[-1] == (200, True)  # 409s, then the replay
    assert later.attempts == len(seen) >= 2
    assert {r.idempotency_key for r in fake.requests} == {key}


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(backoff_base=1, backoff_cap=1),
        # In tenacity's words the wait is the same, and only the deadline ends it too.
        RetryPolicy(wait=tenacity.wait_fixed(1)),
    ],
    ids=["shorthand", "tenacity"],
)
async def test_a_409_still_in_progress_at_the_deadline_is_surfaced_with_its_key(
    clock: ManualClock, policy: RetryPolicy
) -> None:
    gate, fake, company, key = held_key(clock)  # never opened: the key is held throughout
    async with (
        client_for(fake, clock) as one,
        client_for(fake, clock, deadline=10, retry_policy=policy) as other,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: one.sync.request_sync(company, idempotency_key=key))
            await gate.entered.wait()
            with pytest.raises(ConflictError) as caught:
                await other.sync.request_sync(company, idempotency_key=key)
            tg.cancel_scope.cancel()

    assert caught.value.idempotency_key == key  # retry later with it
    assert caught.value.attempts > 3  # more than max_retries (2) allows: the deadline ended it
    assert fake.syncs_started(company) == 0  # the first is still held
