"""Property tests (hypothesis) for rows 8, 24 and 25: whatever Codat (or something in
between) sends back, whatever a caller passes as an id, whatever a Retry-After says,
the SDK answers with a model or one of its own errors, never anything else, and never
sleeps longer than its cap. Bodies and ids go over a real loopback socket, through
the async client (driven from a blocking portal) and the blocking facade."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import math
import random
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from email.utils import format_datetime
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codat_commerce_async import (
    AsyncSyncClient,
    CodatError,
    RateLimitError,
    RetryPolicy,
    SyncClient,
    SyncSummary,
)
from codat_commerce_async._exceptions import make_status_error, parse_retry_after
from codat_commerce_async._retry import compute_wait, should_stop

from .._http import httpx
from .._sockets import MisbehavingServer, answer
from ..conftest import CANARY_KEY, SUMMARY
from ._harness import CANARY, FAST, FULL_SCALE, MODES

#: Socket round trips: 100 examples a run, 200 at full scale (``RELIABILITY_REPORT``).
PROPERTY = settings(
    max_examples=200 if FULL_SCALE else 100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Call = Callable[..., Any]


@pytest.fixture(scope="module")
def prop_server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer(keep=4) as srv:
        yield srv


@pytest.fixture(scope="module", params=MODES)
def caller(request: pytest.FixtureRequest, prop_server: MisbehavingServer) -> Iterator[Call]:
    """``request_sync`` of a long-lived client of either flavour, as a blocking call."""
    options: dict[str, Any] = {
        "api_key": CANARY_KEY,
        "base_url": prop_server.url,
        "max_retries": 0,
        "retry_policy": FAST,
        "max_response_size": 64 * 1024,
    }
    if request.param == "blocking":
        with SyncClient(**options) as client:
            yield client.sync.request_sync
        return
    with start_blocking_portal() as portal:
        engine = portal.call(_build, options)
        try:
            yield lambda *a, **kw: portal.call(
                functools.partial(engine.sync.request_sync, *a, **kw)
            )
        finally:
            portal.call(engine.aclose)


async def _build(options: dict[str, Any]) -> AsyncSyncClient:
    return AsyncSyncClient(**options)


# -- row 24: any bytes as a response body ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
summary_like = st.fixed_dictionaries({}, optional=dict.fromkeys(SUMMARY, json_values)).map(
    lambda d: _json_bytes(d)
)
bodies = st.one_of(
    st.binary(max_size=1024),
    json_values.map(lambda v: _json_bytes(v)),
    summary_like,
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"syncStatusCode": ' + b"9" * 5000 + b"}"),
)
statuses = st.sampled_from([200, 200, 200, 201, 204, 400, 401, 404, 409, 422, 429, 500, 503])
encodings = st.sampled_from([None, "identity", "gzip", "deflate", "GZIP", "gzip, gzip", "br", "x"])


def _json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value, allow_nan=True).encode()


@PROPERTY
@given(body=bodies, status=statuses, encoding=encodings, compress=st.booleans())
def test_row24_any_body_gives_a_model_or_a_codat_error(
    caller: Call,
    prop_server: MisbehavingServer,
    body: bytes,
    status: int,
    encoding: str | None,
    compress: bool,
) -> None:
    # A fresh connection per example: a 204 or 1xx "with a body" leaves the body on the
    # wire, where it would poison the next test's request on a kept-alive connection.
    headers = {"Connection": "close"}
    wire = body
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if compress and encoding.lower() == "gzip":
            wire = gzip.compress(body)
        elif compress and encoding == "deflate":
            wire = zlib.compress(body)
    prop_server.then(answer(status, wire, headers, close=True))
    try:
        result = caller(str(uuid.uuid4()))
    except CodatError as exc:
        CANARY.scan_exception(exc, "property body")
    else:
        assert isinstance(result, SyncSummary)
        assert 200 <= status < 300


# -- row 25: any string as a company id --------------------------------------------------

_STRICT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _mangle(value: uuid.UUID, how: int, rng: random.Random) -> str:
    text = str(value)
    forms = [
        text,
        text.upper(),
        "{" + text + "}",
        text.replace("-", ""),
        "urn:uuid:" + text,
        text + rng.choice(["/", "?", "#", "\r\n", "\x00", " ", "%2e", "/../x"]),
        rng.choice(["../", "/", " ", "%2F"]) + text,
        text[: rng.randrange(len(text))],
        text.replace("-", rng.choice(["_", "/", ".", ""]), 1),
    ]
    return forms[how % len(forms)]


company_ids = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789abcdefABCDEF-{}/", max_size=40),
    st.builds(_mangle, st.uuids(), st.integers(0, 100), st.randoms()),
    st.binary(max_size=40),
    st.integers(),
    st.none(),
)


@PROPERTY
@given(company_id=company_ids)
def test_row25_any_company_id_is_canonical_or_refused_before_io(
    caller: Call, prop_server: MisbehavingServer, company_id: object
) -> None:
    before = prop_server.requests
    try:
        caller(company_id)
    except ValueError as exc:
        assert prop_server.requests == before  # nothing was sent
        assert not (isinstance(company_id, str) and _STRICT.fullmatch(company_id))
        CANARY.scan_exception(exc, "property id")
        return
    assert prop_server.requests == before + 1
    canonical = str(uuid.UUID(str(company_id)))
    assert prop_server.seen[-1].path == f"/companies/{canonical}/sync/commerce/latest"


# -- row 8: any Retry-After ---------------------------------------------------------------

_NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

retry_after_values = st.one_of(
    st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.just(dt.timezone.utc),
    ).map(lambda d: format_datetime(d, usegmt=True)),
    st.sampled_from(
        [
            "Sat, 01 Jan 100000 00:00:00 GMT",
            "Mon, 32 Foo 2026 99:99:99 GMT",
            "1e999",
            "-0",
            "+5",
            ".5",
            "0x10",
            "5 ",
            " 5",
            "NaN",
            "Infinity",
        ]
    ),
)
policies = st.builds(
    RetryPolicy,
    max_retry_after=st.sampled_from([0.0, 0.5, 1.0, 60.0, 3600.0]),
    retry_after_jitter=st.sampled_from([0.0, 0.1, 1.0, 10.0]),
)


@settings(max_examples=300, deadline=None)
@given(
    value=retry_after_values,
    policy=policies,
    attempt=st.integers(1, 40),
    remaining=st.none() | st.floats(0, 1e6),
    seed=st.integers(0, 2**32),
)
def test_row08_any_retry_after_never_crashes_or_exceeds_the_cap(
    value: str, policy: RetryPolicy, attempt: int, remaining: float | None, seed: int
) -> None:
    parsed = parse_retry_after(value, now=_NOW)
    assert parsed is None or (math.isfinite(parsed) and 0 <= parsed <= 1_000_000)
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8")
    request = httpx.Request("POST", "https://api.codat.io/x")
    response = httpx.Response(429, headers=[(b"retry-after", raw)], request=request)
    error = make_status_error(response, b"", None, idempotency_key=None, attempts=attempt)
    assert isinstance(error, RateLimitError)
    wait = compute_wait(error, attempt=attempt, policy=policy, rand=random.Random(seed))
    assert math.isfinite(wait) and wait >= 0
    stop = should_stop(
        error, attempt=attempt, max_retries=50, wait=wait, remaining=remaining, policy=policy
    )
    if not stop:
        # Whatever the header said, the SDK never sleeps past its cap (plus <= 1 s of
        # jitter) nor past the call's deadline.
        assert wait <= max(policy.max_retry_after + 1.0, policy.backoff_cap)
        if error.retry_after is not None:
            assert wait <= policy.max_retry_after + min(1.0, policy.max_retry_after * 10)
        assert remaining is None or wait < remaining
