"""The fake's per-IP limit (sliding window) and Codat's daily quota with its headers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest

from codat_commerce_async.testing import FakeCodat, ManualClock, RateLimits

from .conftest import START, latest

pytestmark = pytest.mark.anyio


def from_ip(fake: FakeCodat, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake, client=(ip, 40000)),
        base_url="http://localhost",
        headers={"Authorization": fake.auth_header},
    )


async def test_per_ip_limit_is_a_sliding_window_per_address(fake, clock, company):
    fake.rate_limits = RateLimits(requests_per_ip=3, ip_window=10.0)
    async with from_ip(fake, "10.0.0.1") as first, from_ip(fake, "10.0.0.2") as second:
        statuses = []
        for _ in range(3):
            statuses.append((await first.post(latest(company))).status_code)
            clock.advance(2.0)  # requests at t = 0, 2, 4
        limited = await first.post(latest(company))  # t = 6: three in the last 10 s
        other = await second.post(latest(company))  # another address has its own window
        clock.advance(4.5)  # t = 10.5: the request at t = 0 has left the window
        again = await first.post(latest(company))

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert float(limited.headers["retry-after"]) == pytest.approx(4.0)  # until t = 10
    assert "10.0.0.1" in limited.json()["error"]
    assert other.status_code == 200
    assert again.status_code == 200
    assert fake.syncs_started() == 5  # the rejected request started nothing


async def test_daily_quota_headers_follow_the_contract(company):
    clock = ManualClock(0.0)
    start = datetime(2026, 4, 15, 23, 59, 0, tzinfo=timezone.utc)
    fake = FakeCodat(clock=clock, start_time=start, rate_limits=RateLimits(daily_quota=2))
    async with fake.client() as http:
        first = await http.post(latest(company))
        second = await http.post(latest(company))
        refused = await http.post(latest(company))
        clock.advance(61.0)  # past 00:00 UTC: a new day
        next_day = await http.post(latest(company))

    midnight = datetime(2026, 4, 16, tzinfo=timezone.utc)
    assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 429]
    assert first.headers["x-rate-limit-limit"] == "2"
    assert [r.headers["x-rate-limit-remaining"] for r in (first, second, refused)] == [
        "1",
        "0",
        "0",
    ]
    assert parsedate_to_datetime(first.headers["x-rate-limit-reset"]) == midnight
    assert refused.headers["retry-after"] == "60"  # seconds to midnight
    assert "daily quota" in refused.json()["error"]
    assert next_day.status_code == 200
    assert next_day.headers["x-rate-limit-remaining"] == "1"
    assert parsedate_to_datetime(next_day.headers["x-rate-limit-reset"]) == midnight + timedelta(
        days=1
    )


async def test_429s_are_counted_per_run(fake, clock, company):
    fake.rate_limits = RateLimits(requests_per_ip=1, ip_window=60.0)
    async with fake.client() as http:
        for _ in range(4):
            await http.post(latest(company))
    assert [r.status for r in fake.requests].count(429) == 3
    fake.reset()
    assert fake.requests == ()


def test_limits_are_validated():
    with pytest.raises(ValueError, match="requests_per_ip"):
        RateLimits(requests_per_ip=0)
    with pytest.raises(ValueError, match="ip_window"):
        RateLimits(requests_per_ip=1, ip_window=0)
    with pytest.raises(ValueError, match="daily_quota"):
        RateLimits(daily_quota=-1)


async def test_without_daily_quota_headers_describe_the_minute(fake, http, company):
    response = await http.post(latest(company))
    assert response.headers["x-rate-limit-limit"] == "1000"
    assert parsedate_to_datetime(response.headers["x-rate-limit-reset"]) == START + timedelta(
        seconds=60
    )
