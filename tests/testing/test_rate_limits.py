"""Codat-style rate limits: a per-minute quota and a per-company concurrency cap."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email.utils import parsedate_to_datetime

import anyio
import pytest

from codat_commerce_async.testing import FakeCodat, Fault, RateLimits

from .conftest import START, client_for, in_background, latest, status

pytestmark = pytest.mark.anyio


async def test_limits_are_off_by_default(fake, http, company):
    responses = [await http.get(status(company, "list")) for _ in range(1001)]

    assert {r.status_code for r in responses} == {200}
    assert responses[0].headers["x-rate-limit-remaining"] == "999"
    assert responses[998].headers["x-rate-limit-remaining"] == "1"
    assert responses[999].headers["x-rate-limit-remaining"] == "0"
    assert responses[1000].headers["x-rate-limit-remaining"] == "0"


async def test_per_minute_quota(fake, http, clock, company):
    fake.rate_limits = RateLimits(requests_per_minute=3)
    remaining = []
    for _ in range(3):
        response = await http.post(latest(company))
        assert response.status_code == 200
        remaining.append(response.headers["x-rate-limit-remaining"])
    assert remaining == ["2", "1", "0"]

    clock.advance(20.5)
    limited = await http.post(latest(company))

    assert limited.status_code == 429
    body = limited.json()
    assert body["statusCode"] == 429
    assert body["canBeRetried"] == "Unknown"
    assert limited.headers["retry-after"] == "40"  # until the window resets
    assert limited.headers["x-rate-limit-limit"] == "3"
    assert limited.headers["x-rate-limit-remaining"] == "0"
    reset = parsedate_to_datetime(limited.headers["x-rate-limit-reset"])
    assert reset == START + timedelta(seconds=60)
    assert fake.syncs_started() == 3

    clock.advance(39.5)
    assert (await http.post(latest(company))).status_code == 200


async def test_configured_retry_after(company):
    fake = FakeCodat(rate_limits=RateLimits(requests_per_minute=1, retry_after=7))
    async with client_for(fake) as http:
        await http.post(latest(company))
        limited = await http.post(latest(company))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"


async def test_rejected_before_auth_or_routing_does_not_count(fake, company):
    fake.rate_limits = RateLimits(requests_per_minute=1)
    async with client_for(fake, auth=False) as anonymous:
        assert (await anonymous.post(latest(company))).status_code == 401
    async with client_for(fake) as http:
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.post(latest(company))).status_code == 200
        assert (await http.post(latest(company))).status_code == 429


async def test_per_company_concurrency(gated_fake, gate, company):
    gate.arm()
    gated_fake.rate_limits = RateLimits(concurrent_per_company=1)
    gated_fake.faults.script(Fault.latency(1), company_id=company)
    other = str(uuid.uuid4())
    async with client_for(gated_fake) as http, anyio.create_task_group() as tg:
        first = await in_background(tg, lambda: http.post(latest(company)))
        await gate.entered.wait()
        assert gated_fake.in_flight(company) == 1
        assert gated_fake.in_flight() == 1

        crowded = await http.post(latest(company))
        assert crowded.status_code == 429
        assert crowded.headers["retry-after"] == "1"
        assert "concurrent" in crowded.json()["error"]
        assert (await http.post(latest(other))).status_code == 200

        gate.open()
    assert first[0].status_code == 200
    assert gated_fake.in_flight() == 0
    async with client_for(gated_fake) as http:
        assert (await http.post(latest(company))).status_code == 200
    assert gated_fake.syncs_started(company) == 2


async def test_limits_can_change_at_runtime(fake, http, company):
    fake.rate_limits = RateLimits(requests_per_minute=1)
    await http.post(latest(company))
    assert (await http.post(latest(company))).status_code == 429
    fake.rate_limits = RateLimits()
    assert (await http.post(latest(company))).status_code == 200


def test_settings_are_validated():
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimits(requests_per_minute=0)
    with pytest.raises(ValueError, match="concurrent_per_company"):
        RateLimits(concurrent_per_company=-1)
