"""A Redis that answers but refuses writes, against real redis-server processes: one
that hits ``maxmemory`` with ``noeviction`` (OOM) and one turned into a read-only replica.

Mid-run it is a lost Redis (docs/scaling.md): the run goes on under in-process limits
with one warning and every result kept; before the first write succeeds it is
``LimitsUnavailableError`` with nothing sent. No redis-py exception reaches the caller.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    CallEvent,
    LimitsUnavailableError,
    RedisLimits,
)
from codat_commerce_async.testing import FakeCodat

from ._redis import RedisProcess

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

LOGGER = "codat_commerce_async.limits"


@pytest.fixture
def replica_master() -> Iterator[RedisProcess]:
    """A second redis-server: the master a server is turned into a replica of."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.cleanup()


def _admin(server: RedisProcess):  # a blocking client: usable from an event hook
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port)


def out_of_memory(server: RedisProcess, _master: RedisProcess) -> None:
    with _admin(server) as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # below what it uses: every write is OOM


def read_only_replica(server: RedisProcess, master: RedisProcess) -> None:
    with _admin(server) as admin:
        admin.replicaof("127.0.0.1", master.port)  # replica-read-only: the default


def takes_writes_again(server: RedisProcess) -> None:
    with _admin(server) as admin:
        admin.config_set("maxmemory", 0)
        admin.replicaof("NO", "ONE")


REFUSALS = {"oom": out_of_memory, "read-only-replica": read_only_replica}


def _limits(server: RedisProcess) -> RedisLimits:
    return RedisLimits(
        server.url,
        egress_key="nat-1",
        prefix=f"test-{uuid.uuid4().hex[:12]}",
        requests_per_minute=60_000,
        probe_interval=0.001,  # probe (and be refused) again and again: still one warning
    )


def _after_triggers(n: int, act: Callable[[], None]) -> Callable[[CallEvent], None]:
    """An event hook that runs ``act`` once, when the n-th trigger's response is in:
    that trigger was sent, its lease and company slot are still to be given back."""
    seen = 0

    def hook(event: CallEvent) -> None:
        nonlocal seen
        if event.kind == "response_received" and event.method == "POST":
            seen += 1
            if seen == n:
                act()

    return hook


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_a_redis_refusing_writes_mid_run_loses_nothing(
    redis_process: RedisProcess, replica_master: RedisProcess, refusal: str, caplog
) -> None:
    fake = FakeCodat()
    companies = [str(uuid.uuid4()) for _ in range(12)]
    limits = _limits(redis_process)
    refuse = _after_triggers(3, lambda: REFUSALS[refusal](redis_process, replica_master))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with AsyncSyncClient(
            api_key=fake.api_key,
            base_url="http://localhost",
            transport=fake.transport(),
            limits=limits,
            event_hooks=[refuse],
        ) as client:
            async with client.sync.request_sync_many(companies, concurrency=2) as results:
                outcomes = [result async for result in results]
            # After the run, every operation still answers (from the in-process limits).
            late = str(uuid.uuid4())
            await client.sync.request_sync(late)
            assert await limits.gate_left() == 0.0
            await limits.close_gate(0)
            assert (await limits.quota_decision()).action == "go"
            await limits.ping()
            assert limits.degraded
            warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
            # Back to shared limits once Redis takes a write again, said once more.
            takes_writes_again(redis_process)
            await anyio.sleep(0.01)  # past probe_interval
            assert await limits.acquire(max_wait=0)
            assert not limits.degraded
            await client.sync.request_sync(str(uuid.uuid4()))
        await limits.aclose()

    assert [o.error for o in outcomes if not o.ok] == []
    assert sorted(o.company_id for o in outcomes) == sorted(companies)
    for company in [*companies, late]:
        assert fake.syncs_started(company) == 1
    assert len(warnings) == 1, warnings
    assert "in-process limits" in warnings[0]
    restored = [r.getMessage() for r in caplog.records if r.name == LOGGER][1:]
    assert len(restored) == 1 and "restored" in restored[0], restored


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_a_redis_refusing_writes_from_the_start_sends_nothing(
    redis_process: RedisProcess, replica_master: RedisProcess, refusal: str
) -> None:
    REFUSALS[refusal](redis_process, replica_master)
    fake = FakeCodat()
    limits = _limits(redis_process)
    with pytest.raises(LimitsUnavailableError, match="nothing was sent") as caught:
        await limits.ping()  # the boot-time check sees it: reads alone would pass
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    async with AsyncSyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport(), limits=limits
    ) as client:
        with pytest.raises(LimitsUnavailableError):
            await client.sync.request_sync(str(uuid.uuid4()))
        try:  # a bulk run stops, or reports it per company: either way nothing is sent
            async with client.sync.request_sync_many([str(uuid.uuid4())]) as results:
                errors = [result.error async for result in results]
        except LimitsUnavailableError:
            errors = []
        assert all(isinstance(error, LimitsUnavailableError) for error in errors)
    await limits.aclose()
    assert fake.requests == ()
