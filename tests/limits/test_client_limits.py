"""The client with its limits: the daily quota in one process and with Redis, the shared
gate, one trigger per company across clients. Counted, never timed."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest

from codat_commerce_async import (
    APITimeoutError,
    AsyncSyncClient,
    ConfigurationError,
    DailyQuotaExhaustedError,
    RateLimitError,
    RedisLimits,
    SyncClient,
)
from codat_commerce_async.testing import FakeCodat, RateLimits

pytestmark = pytest.mark.anyio
redis_only = pytest.mark.asyncio_only  # redis-py's client runs on asyncio only

NOON = dt.datetime(2026, 4, 15, 12, 0, tzinfo=dt.timezone.utc)


def companies(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def client_for(fake: FakeCodat, **options) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport(), **options
    )


async def collect(run) -> list:
    async with run as results:
        return [r async for r in results]


async def test_bulk_stops_starting_triggers_when_the_daily_quota_is_low():
    fake = FakeCodat(start_time=NOON, rate_limits=RateLimits(daily_quota=20))
    ids = companies(30)
    async with client_for(fake, quota_reserve=5) as client:
        results = await collect(client.sync.request_sync_many(ids, concurrency=1))

    refused = [r for r in results if isinstance(r.error, DailyQuotaExhaustedError)]
    assert sum(r.ok for r in results) == 15  # 20 - 15 = 5 left: the reserve
    assert len(refused) == 15
    assert fake.syncs_started() == 15
    assert [r.status for r in fake.requests].count(429) == 0
    error = refused[0].error
    assert error.remaining == 5 and error.limit == 20 and error.reserve == 5
    assert error.reset_at == dt.datetime(2026, 4, 16, tzinfo=dt.timezone.utc)
    assert error.idempotency_key == refused[0].idempotency_key  # resume with the same key
    # Interactive calls still go: the reserve is theirs.
    async with client_for(fake, quota_reserve=5) as client:
        await client.sync.request_sync(ids[-1])
    assert fake.syncs_started() == 16


async def test_bulk_goes_on_when_the_quota_resets_within_a_minute():
    ids = companies(3)
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
        company = request.url.path.split("/")[2]
        return httpx.Response(
            200,
            json={
                "companyId": company,
                "commerceSyncId": str(uuid.uuid4()),
                "syncStatusCode": 1000,
            },
            headers={
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": soon.isoformat(),
            },
        )

    async with AsyncSyncClient(api_key="k", transport=httpx.MockTransport(answer)) as client:
        results = await collect(client.sync.request_sync_many(ids, concurrency=1))
    assert all(r.ok for r in results)  # Codat's 429s would hold the last minute
    assert calls == 3


async def test_quota_reserve_is_validated():
    with pytest.raises(ConfigurationError, match="quota_reserve"):
        AsyncSyncClient(api_key="k", quota_reserve=-1)
    with pytest.raises(ConfigurationError, match="limits"):
        AsyncSyncClient(api_key="k", limits="redis://x")  # type: ignore[arg-type]


@redis_only
async def test_the_quota_is_shared_through_redis(redis_url, prefix):
    fake = FakeCodat(start_time=NOON, rate_limits=RateLimits(daily_quota=12))
    first = RedisLimits(redis_url, egress_key="nat", prefix=prefix, quota_reserve=2)
    second = RedisLimits(redis_url, egress_key="nat", prefix=prefix, quota_reserve=2)
    async with client_for(fake, limits=first) as client:
        results = await collect(client.sync.request_sync_many(companies(10), concurrency=1))
    assert sum(r.ok for r in results) == 10
    sent = len(fake.requests)
    # Another process, same account: it learns the quota from Redis, not from a 429.
    async with client_for(fake, limits=second) as client:
        results = await collect(client.sync.request_sync_many(companies(5), concurrency=1))
    assert all(isinstance(r.error, DailyQuotaExhaustedError) for r in results)
    assert len(fake.requests) == sent  # nothing was sent
    await first.aclose()
    await second.aclose()


@redis_only
async def test_a_429_seen_by_one_client_holds_back_another(redis_url, prefix):
    fake = FakeCodat(rate_limits=RateLimits(requests_per_ip=1, ip_window=60, retry_after=30))
    ids = companies(2)
    first = RedisLimits(redis_url, egress_key="nat", prefix=prefix)
    second = RedisLimits(redis_url, egress_key="nat", prefix=prefix)
    async with client_for(fake, limits=first, max_retries=0) as client:
        await client.sync.request_sync(ids[0])
        with pytest.raises(RateLimitError):
            await client.sync.request_sync(ids[1])
    sent = len(fake.requests)
    async with client_for(fake, limits=second, deadline=5) as other:
        with pytest.raises(APITimeoutError, match="shared rate limit") as caught:
            await other.sync.request_sync(ids[1])
    assert caught.value.attempts == 0
    assert len(fake.requests) == sent  # the other process sent nothing into the storm
    await first.aclose()
    await second.aclose()


@redis_only
async def test_one_sync_per_company_when_two_clients_trigger_with_the_same_keys(redis_url, prefix):
    fake = FakeCodat(sync_duration=0)
    ids = companies(20)
    run_id = uuid.uuid4()

    def key(company: str) -> str:
        return str(uuid.uuid5(run_id, company))

    limits = [RedisLimits(redis_url, egress_key="nat", prefix=prefix) for _ in range(2)]
    clients = [client_for(fake, limits=shared) for shared in limits]
    import anyio

    outcomes: list = []

    async def run(client: AsyncSyncClient) -> None:
        outcomes.extend(await collect(client.sync.request_sync_many(ids, idempotency_keys=key)))

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(run, client)
    assert len(outcomes) == 40 and all(r.ok for r in outcomes)
    assert all(fake.syncs_started(c) == 1 for c in ids)  # the second is a replay
    fake.assert_no_duplicate_syncs()
    for client in clients:
        await client.aclose()
    for shared in limits:
        await shared.aclose()


def test_the_blocking_client_takes_the_same_limits(redis_url, prefix):
    fake = FakeCodat()
    shared = RedisLimits(redis_url, egress_key="nat", prefix=prefix)
    with SyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        limits=shared,
    ) as client:
        client.sync.request_sync(companies(1)[0])
    assert fake.syncs_started() == 1


def test_trio_is_refused_at_construction():
    import trio

    shared = RedisLimits("redis://127.0.0.1:1/0", egress_key="nat")

    async def build() -> None:
        AsyncSyncClient(api_key="k", limits=shared)

    with pytest.raises(ConfigurationError, match="asyncio"):
        trio.run(build)
