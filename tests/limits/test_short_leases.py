"""Short leases: the heartbeat keeps a lease while its holder runs, and a holder that was
frozen past ``lease_ttl`` (SIGSTOP) confirms its lease before its trigger goes out, so
two triggers of one company never run at once. Real Redis, a real frozen process;
counted, never timed (the guards only stop a hung test)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid

import anyio
import pytest

from codat_commerce_async import AsyncSyncClient, RedisLimits
from codat_commerce_async.testing import FakeCodat

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"

HOLDER = """
import asyncio, sys
from codat_commerce_async import RedisLimits

async def main(url, prefix, company):
    limits = RedisLimits(url, egress_key="nat-1", prefix=prefix, lease_ttl=1.0)
    async with limits.trigger_lease(company):
        print("holding", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await limits.confirm_trigger_lease(company)  # what a trigger does before its send
        print("confirmed", flush=True)
    await limits.aclose()
asyncio.run(main(*sys.argv[1:]))
"""


def lease_key(prefix: str) -> str:
    return f"{{{prefix}}}:trigger:{COMPANY}"


async def eventually(condition, what: str, guard: float = 60.0) -> None:
    with anyio.fail_after(guard):  # a guard against a hang, not a speed assertion
        while not await condition():
            await anyio.sleep(0.02)


async def test_a_short_lease_is_kept_by_its_heartbeat(redis_url, prefix, redis):
    shared = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, lease_ttl=3.0)
    other = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, lease_ttl=3.0)
    async with shared.trigger_lease(COMPANY):
        for _ in range(3):  # several lease_ttls: the heartbeat (every 1 s) keeps it
            await anyio.sleep(3.0)
            assert await redis.exists(lease_key(prefix))
        with anyio.move_on_after(0.3) as scope:
            async with other.trigger_lease(COMPANY):
                pytest.fail("a second holder while the first runs")
        assert scope.cancelled_caught
    await shared.aclose()
    await other.aclose()


async def test_a_sigstopped_holder_waits_its_turn_after_it_resumes(redis_url, prefix, redis):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), redis_url, prefix, COMPANY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        holder.send_signal(signal.SIGSTOP)  # frozen with the lease: no heartbeat

        async def expired() -> bool:
            return not await redis.exists(lease_key(prefix))

        await eventually(expired, "the frozen holder's lease expired")
        # A long TTL of its own: the holder's turn comes when it lets go, not by a stall
        # of this test process.
        other = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, lease_ttl=30.0)
        async with other.trigger_lease(COMPANY):  # another worker takes the company
            holder.send_signal(signal.SIGCONT)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            await anyio.sleep(3.0)  # three lease_ttls for a wrong "confirmed" to show
            assert holder.poll() is None  # still waiting: it did not trigger alongside
        await other.aclose()
        out, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
        assert out.strip() == "confirmed"  # its turn came once the other let go
        assert "expired while this process was stalled" in err  # and it said why
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()


async def test_a_bulk_trigger_whose_lease_was_taken_waits_for_the_other_holder(
    redis_url, prefix, redis
):
    # The process lost its lease (as after a stall) and another holds it: the trigger
    # is not sent until the other lets go.
    fake = FakeCodat(sync_duration=0)
    shared = RedisLimits(redis_url, egress_key="nat-1", prefix=prefix, lease_ttl=30)
    async with AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        limits=shared,
    ) as client:
        key = str(uuid.uuid4())
        async with shared.trigger_lease(COMPANY):
            await redis.set(lease_key(prefix), "another-worker", px=30_000)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.sync.request_sync(COMPANY, idempotency_key=key))
                await anyio.sleep(1.0)
                assert fake.requests == ()  # held back: the lease is another's
                await redis.delete(lease_key(prefix))  # the other worker is done
        assert fake.syncs_started(COMPANY) == 1
    await shared.aclose()
