"""The daily-quota policy: header parsing, merging out-of-order answers, the decision."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from codat_commerce_async import ConfigurationError, DailyQuotaExhaustedError
from codat_commerce_async._quota import (
    DailyQuota,
    QuotaSnapshot,
    decide,
    merge,
    parse_reset,
    snapshot_from_headers,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 4, 15, 12, 0, 0, tzinfo=UTC)
MIDNIGHT = dt.datetime(2026, 4, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Thu, 16 Apr 2026 00:00:00 GMT", MIDNIGHT),
        ("2026-04-16T00:00:00Z", MIDNIGHT),
        ("2026-04-16T02:00:00+02:00", MIDNIGHT),
        ("2026-04-16T00:00:00", MIDNIGHT),  # no zone: UTC, as Codat's dates are
        (str(int(MIDNIGHT.timestamp())), MIDNIGHT),  # epoch seconds
        ("43200", MIDNIGHT),  # a small number: seconds from now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("x" * 100, None),
    ],
)
def test_parse_reset(raw, expected):
    assert parse_reset(raw, NOW) == expected


def test_snapshot_from_headers():
    headers = httpx.Headers(
        {
            "X-Rate-Limit-Limit": "3000",
            "X-Rate-Limit-Remaining": "42",
            "X-Rate-Limit-Reset": "Thu, 16 Apr 2026 00:00:00 GMT",
        }
    )
    assert snapshot_from_headers(headers, NOW) == QuotaSnapshot(42, 3000, MIDNIGHT, MIDNIGHT)
    assert snapshot_from_headers(httpx.Headers({"X-Rate-Limit-Remaining": "-1"}), NOW) is None
    assert snapshot_from_headers(httpx.Headers({}), NOW) is None
    for odd in ("\u00b2", "12\u00b2", "1.5", " "):  # digits int() refuses: ignored, never raised
        assert snapshot_from_headers({"x-rate-limit-remaining": odd}, NOW) is None
    partial = snapshot_from_headers(httpx.Headers({"x-rate-limit-remaining": "7"}), NOW)

    assert partial == QuotaSnapshot(7, None, None)


def test_the_reset_is_read_against_codats_date_header():
    # Codat's clock is 2 hours behind ours: the reset is still 12 hours away.
    headers = httpx.Headers(
        {
            "x-rate-limit-remaining": "1",
            "x-rate-limit-reset": "Thu, 16 Apr 2026 00:00:00 GMT",
            "date": "Wed, 15 Apr 2026 10:00:00 GMT",
        }
    )
    seen = snapshot_from_headers(headers, NOW)
    assert seen is not None
    assert seen.reset_at == MIDNIGHT  # as Codat said it
    assert seen.due == NOW + dt.timedelta(hours=14)  # on our clock


TODAY_50 = QuotaSnapshot(50, 1000, MIDNIGHT)
TODAY_40 = QuotaSnapshot(40, 1000, MIDNIGHT)
TOMORROW_999 = QuotaSnapshot(999, 1000, MIDNIGHT + dt.timedelta(days=1))


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, TODAY_50, TODAY_50),
        (TODAY_50, TODAY_40, TODAY_40),  # same period: the smaller remaining wins
        (TODAY_40, TODAY_50, TODAY_40),  # a late answer does not raise it again
        (TODAY_40, TOMORROW_999, TOMORROW_999),  # a new period starts afresh
        (TOMORROW_999, TODAY_40, TOMORROW_999),  # a late answer from yesterday
        (TODAY_40, QuotaSnapshot(10, None, None), TODAY_40),  # no reset: older than any
    ],
)
def test_merge(current, new, expected):
    assert merge(current, new) == expected


@pytest.mark.parametrize(
    ("snapshot", "now", "action"),
    [
        (None, NOW, "go"),
        (QuotaSnapshot(101, 1000, MIDNIGHT), NOW, "go"),
        (QuotaSnapshot(100, 1000, MIDNIGHT), NOW, "stop"),  # at the reserve
        (QuotaSnapshot(0, 1000, MIDNIGHT), MIDNIGHT - dt.timedelta(seconds=61), "stop"),
        # The last minute is left to Codat's 429s and Retry-After.
        (QuotaSnapshot(0, 1000, MIDNIGHT), MIDNIGHT - dt.timedelta(seconds=30), "go"),
        (QuotaSnapshot(0, 1000, MIDNIGHT), MIDNIGHT, "go"),  # the reset has passed
        (QuotaSnapshot(0, 1000, None), NOW, "stop"),  # no reset known: stop
        # The due time (this machine's clock) decides, not Codat's stated reset.
        (QuotaSnapshot(0, 1000, NOW, MIDNIGHT), NOW, "stop"),
    ],
)
def test_decide(snapshot, now, action):
    assert decide(snapshot, now, reserve=100, grace=60.0).action == action


def test_daily_quota_tracks_the_lowest_remaining():
    quota = DailyQuota(reserve=10)
    for remaining in ("12", "9", "11"):  # answers out of order
        quota.observe(
            httpx.Headers(
                {"x-rate-limit-remaining": remaining, "x-rate-limit-reset": "2026-04-16T00:00:00Z"}
            ),
            NOW,
        )
    assert quota.snapshot == QuotaSnapshot(9, None, MIDNIGHT, MIDNIGHT)
    assert quota.decide(NOW).action == "stop"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_reserve_is_validated(bad):
    with pytest.raises(ConfigurationError, match="quota_reserve"):
        DailyQuota(reserve=bad)


def test_quota_error_says_why():
    error = DailyQuotaExhaustedError(
        company_id="c",
        remaining=3,
        limit=1000,
        reset_at=MIDNIGHT,
        reserve=100,
        idempotency_key="k",
    )
    assert "3 requests left" in str(error) and "2026-04-16 00:00:00 UTC" in str(error)
    assert (error.attempts, error.status_code, error.idempotency_key) == (0, None, "k")
