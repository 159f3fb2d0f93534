"""The Redis key scheme: one account's keys never meet another's, whatever ``:`` its
``prefix`` and ``egress_key`` hold, and every key of an account has one cluster hash slot.
Against a real redis-server; the keys are read as docs/scaling.md documents them."""

from __future__ import annotations

import uuid

import httpx
import pytest

from codat_commerce_async import ConfigurationError, RedisLimits

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # redis-py: asyncio only

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"
QUOTA_HEADERS = httpx.Headers(
    {
        "X-Rate-Limit-Limit": "1000",
        "X-Rate-Limit-Remaining": "900",
        "X-Rate-Limit-Reset": "2099-01-01T00:00:00Z",
    }
)


def account(redis_url: str, prefix: str, egress_key: str) -> RedisLimits:
    return RedisLimits(
        redis_url, prefix=prefix, egress_key=egress_key, requests_per_minute=1, burst=1
    )


def slot(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first non-empty ``{...}``."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end <= start + 1:
        return key
    return key[start + 1 : end]


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


async def test_a_gate_of_one_account_is_not_the_rate_of_another(redis_url, unique):
    # Joined with ":", (acct, ip1:gate:ip2)'s rate key was (acct:rate:ip1, ip2)'s gate key.
    first = account(redis_url, f"acct{unique}", "ip1:gate:ip2")
    second = account(redis_url, f"acct{unique}:rate:ip1", "ip2")
    await second.close_gate(600)
    assert await first.gate_left() == 0
    assert await first.acquire(max_wait=0)  # its own rate, untouched by the other's gate
    assert not await second.acquire(max_wait=0)  # the other is behind its gate
    await first.aclose()
    await second.aclose()


async def test_a_quota_of_one_account_is_not_the_rate_of_another(redis_url, unique, caplog):
    # Joined with ":", (acct, X:quota)'s rate key was (acct:rate:X)'s quota hash: WRONGTYPE.
    first = account(redis_url, f"acct{unique}", "X:quota")
    second = account(redis_url, f"acct{unique}:rate:X", "nat-1")
    await second.observe(QUOTA_HEADERS)
    assert await first.acquire(max_wait=0)
    await first.observe(QUOTA_HEADERS)
    assert await second.acquire(max_wait=0)
    assert not first.degraded and not second.degraded  # no Redis error on either side
    await first.aclose()
    await second.aclose()


async def test_every_key_of_an_account_shares_one_hash_slot(redis_url, redis, unique):
    prefix = f"acct{unique}:eu"
    shared = account(redis_url, prefix, "2001:db8::1")
    await shared.ping()
    assert await shared.acquire(max_wait=0)
    await shared.close_gate(1)
    await shared.observe(QUOTA_HEADERS)
    async with shared.trigger_lease(COMPANY), shared.company_slot(COMPANY):
        keys = sorted(k.decode() for k in await redis.keys(f"{{{prefix}}}*"))
    await shared.aclose()
    assert keys == sorted(
        f"{{{prefix}}}:{rest}"
        for rest in (
            "rate:2001:db8::1",
            "gate:2001:db8::1",
            "quota",
            "probe",
            f"trigger:{COMPANY}",
            f"requests:{COMPANY}",
        )
    )
    assert {slot(key) for key in keys} == {prefix}


def test_a_huge_egress_key_is_not_echoed_whole():
    with pytest.raises(ConfigurationError, match="egress_key") as caught:
        RedisLimits("redis://127.0.0.1:1/0", egress_key="x" * 10_000)
    message = str(caught.value)
    assert len(message) < 300
    assert "10,000 characters" in message
