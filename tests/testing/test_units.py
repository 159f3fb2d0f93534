"""Pure helpers of the fake and the public surface of ``codat_commerce_async.testing``."""

from __future__ import annotations

import inspect
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import codat_commerce_async.testing as testing
from codat_commerce_async.testing import FakeCodat, Fault, ManualClock
from codat_commerce_async.testing._ledger import IdempotencyLedger, fingerprint
from codat_commerce_async.testing._wire import (
    Response,
    canonical_uuid,
    format_retry_after,
    format_timestamp,
    http_date,
    parse_timestamp,
)

from .._http import httpx


def test_public_names_are_exactly_all():
    public = {name for name in vars(testing) if not name.startswith("_")}
    assert set(testing.__all__) == public - {"annotations"}
    assert len(set(testing.__all__)) == len(testing.__all__)
    for name in testing.__all__:
        obj = getattr(testing, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name


UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-10-23T00:00:00Z", datetime(2022, 10, 23, tzinfo=UTC)),
        ("2022-10-23T00:00:00.000Z", datetime(2022, 10, 23, tzinfo=UTC)),
        ("2022-10-23T00:00:00.1234567Z", datetime(2022, 10, 23, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2022-10-23", datetime(2022, 10, 23, tzinfo=UTC)),
        ("2022-10-23T01:00", datetime(2022, 10, 23, 1, tzinfo=UTC)),
        ("2021-11-15T01:00:00", datetime(2021, 11, 15, 1, tzinfo=UTC)),
        ("2021-11-15T01:00:00-05:00", datetime(2021, 11, 15, 6, tzinfo=UTC)),
        ("2021-11-15T01:00:00+0130", datetime(2021, 11, 14, 23, 30, tzinfo=UTC)),
        (" 2022-10-23t00:00:00z ", datetime(2022, 10, 23, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_codat_datetimes(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2022-13-01",
        "2022-02-30",
        "2022-10-23T25:00:00Z",
        "22-10-23",
        "2022-10-23Tnoon",
    ],
)
def test_parse_timestamp_rejects_garbage(text):
    assert parse_timestamp(text) is None


def test_format_timestamp():
    assert format_timestamp(datetime(2022, 10, 23, tzinfo=UTC)) == "2022-10-23T00:00:00Z"
    offset = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2022, 10, 23, 2, 0, 0, 5000, tzinfo=offset)) == (
        "2022-10-23T00:00:00.005000Z"
    )


def test_http_date_and_retry_after():
    assert http_date(datetime(1994, 11, 6, 8, 49, 37, 999, tzinfo=UTC)) == (
        "Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert format_retry_after(3) == "3"
    assert format_retry_after(3.0) == "3"
    assert format_retry_after(0.25) == "0.25"
    assert format_retry_after(float("inf")) == "inf"
    assert format_retry_after("soon") == "soon"


def test_canonical_uuid():
    value = uuid.uuid4()
    assert canonical_uuid(str(value).upper()) == str(value)
    assert canonical_uuid(value.hex) is None
    assert canonical_uuid("{" + str(value) + "}") is None
    assert canonical_uuid(f"urn:uuid:{value}") is None


def test_response_header_helpers():
    response = Response(200, (("Content-Type", "a"), ("X-Rate-Limit-Limit", "1")))
    updated = response.with_headers([("x-rate-limit-limit", "2")])
    assert updated.header("x-rate-limit-limit") == "2"
    assert updated.header("content-type") == "a"
    assert updated.header("missing") is None
    assert response.header("X-RATE-LIMIT-LIMIT") == "1"


def test_fingerprint():
    assert fingerprint("POST", "/a", b'{"a": 1, "b": 2}') == fingerprint(
        "POST", "/a", b'{"b":2,"a":1}'
    )
    assert fingerprint("POST", "/a", b"{}") != fingerprint("POST", "/b", b"{}")
    assert fingerprint("POST", "/a", b"not json") != fingerprint("POST", "/a", b"not  json")
    assert fingerprint("POST", "/a", b"[" * 100_000)  # no RecursionError


def test_ledger_expiry_and_release():
    clock = ManualClock()
    ledger = IdempotencyLedger(clock, ttl=10)
    first = ledger.begin("k", "f")
    assert first.action == "proceed"
    assert ledger.begin("k", "f").action == "in_progress"
    assert ledger.begin("k", "g").action == "mismatch"
    ledger.finish("k", first.token, Response(500))
    assert ledger.begin("k", "f").action == "replay"
    clock.advance(10)
    again = ledger.begin("k", "f")
    assert again.action == "proceed"
    ledger.finish("k", again.token, Response(429))
    assert len(ledger) == 0
    stale = ledger.begin("k", "f")
    ledger.clear()
    ledger.finish("k", stale.token, Response(200))  # cleared meanwhile: ignored
    assert len(ledger) == 0


def test_ledger_forgets_expired_keys_as_time_passes():
    clock = ManualClock()
    ledger = IdempotencyLedger(clock, ttl=10)
    for index in range(100):
        ledger.finish(f"k{index}", ledger.begin(f"k{index}", "f").token, Response(200))
    clock.advance(5)
    kept = ledger.begin("kept", "f")
    ledger.finish("kept", kept.token, Response(200))
    clock.advance(5)  # the first hundred are 10 s old, "kept" 5 s

    assert ledger.begin("new", "f").action == "proceed"
    assert len(ledger) == 2  # "kept" and "new": expired keys hold no memory
    assert ledger.begin("kept", "f").action == "replay"
    assert ledger.begin("k0", "f").action == "proceed"


def test_manual_clock():
    clock = ManualClock(5)
    assert clock() == 5
    assert clock.advance(2.5) == 7.5
    assert repr(clock) == "ManualClock(7.5)"
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


@pytest.mark.anyio
async def test_module_docstring_example():
    company_id, key = str(uuid.uuid4()), str(uuid.uuid4())
    clock = ManualClock()
    fake = FakeCodat(clock=clock, sync_duration=30)
    fake.faults.script(Fault.drop())
    async with fake.client() as http:
        url = f"/companies/{company_id}/sync/commerce/latest"
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, headers={"Idempotency-Key": key})
        replay = await http.post(url, headers={"Idempotency-Key": key})
    assert replay.status_code == 200
    assert fake.syncs_started(company_id) == 1
    assert "fake.syncs_started(company_id) == 1" in (testing.__doc__ or "")
