"""Across a fleet, a trigger keeps precedence over a bulk run's status polls (issue 18):
a background request takes a slot of the shared rate only when no worker has reserved
one ahead. Event order against a real Redis; nothing is timed."""

from __future__ import annotations

import anyio
import pytest

from codat_commerce_async import RedisLimits

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only


async def test_a_poll_of_one_worker_waits_for_the_triggers_another_has_reserved(
    redis_url: str, prefix: str
) -> None:
    # Two workers behind one IP, 2 requests a second between them (wide margins: the
    # later triggers come 0.02 s after the poll, which may ask again only after 1 s).
    triggers = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, requests_per_minute=120)
    polls = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, requests_per_minute=120)
    order: list[str] = []
    reserved = anyio.Event()
    taken = 0

    async def trigger(n: int) -> None:
        nonlocal taken
        assert await triggers.acquire()
        taken += 1
        if taken == 1:
            reserved.set()
        order.append(f"trigger-{n}")

    async def poll() -> None:
        await reserved.wait()
        assert await polls.acquire(background=True)
        order.append("poll")

    try:
        async with anyio.create_task_group() as tg:
            # Two triggers keep the rate busy; the poll comes; three triggers come after
            # it (first come, first served would send the poll third).
            for n in range(2):
                tg.start_soon(trigger, n)
            tg.start_soon(poll)
            await reserved.wait()
            await anyio.sleep(0.02)
            for n in range(2, 5):
                tg.start_soon(trigger, n)
    finally:
        await triggers.aclose()
        await polls.aclose()
    assert order[-1] == "poll"
    assert sorted(order[:-1]) == [f"trigger-{n}" for n in range(5)]
