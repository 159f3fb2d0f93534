"""Pure decisions, table by table: status -> class, Retry-After, classify, wait, stop."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from codat_commerce_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    AuthenticationError,
    BadRequestError,
    CodatError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryPolicy,
    UnexpectedRedirectError,
    UnprocessableEntityError,
)
from codat_commerce_async._exceptions import (
    make_status_error,
    parse_retry_after,
    status_error_class,
)
from codat_commerce_async._protocol import parse_error_body
from codat_commerce_async._retry import (
    backoff_ceiling,
    compute_wait,
    is_key_in_progress,
    is_retryable,
    may_resend_with_new_key,
    should_stop,
)

from ._http import httpx

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (301, UnexpectedRedirectError),
        (302, UnexpectedRedirectError),
        (307, UnexpectedRedirectError),
        (308, UnexpectedRedirectError),
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (408, APIStatusError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (418, APIStatusError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
        (599, InternalServerError),
    ],
)
def test_status_maps_to_one_class(status: int, cls: type[APIStatusError]) -> None:
    assert status_error_class(status) is cls
    assert issubclass(cls, APIStatusError) and issubclass(cls, CodatError)


def test_tree_shape() -> None:
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APITLSError, APIConnectionError)
    for cls in (APIConnectionError, APIStatusError, ResponseValidationError, ResponseTooLargeError):
        assert issubclass(cls, APIError) and issubclass(cls, CodatError)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("120", 120.0),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("1e999", None),
        ("garbage", None),
        ("3 seconds", None),
        ("9" * 100, None),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Wed, 31 Dec 2025 00:00:00 GMT", 0.0),
        ("Fri, 01 Jan 100000 00:00:00 GMT", None),
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def _status_error(
    status: int, *, body: bytes = b"", headers: dict[str, str] | None = None, attempts: int = 1
) -> APIStatusError:
    response = httpx.Response(
        status,
        headers=headers or {},
        content=body,
        request=httpx.Request("POST", "https://api.codat.io/x"),
    )
    return make_status_error(
        response, body, parse_error_body(body), idempotency_key="k", attempts=attempts
    )


def test_status_error_carries_what_a_user_needs() -> None:
    body = b'{"statusCode":404,"error":"Company not found","correlationId":"abc-123"}'
    error = _status_error(404, body=body, attempts=3)
    assert isinstance(error, NotFoundError)
    assert error.status_code == 404 and error.correlation_id == "abc-123"
    assert error.idempotency_key == "k" and error.attempts == 3
    assert error.error is not None and error.error.error == "Company not found"
    assert error.body == body and error.response.status_code == 404
    text = str(error)
    assert "404" in text and "Company not found" in text and "abc-123" in text and "k" in text


def test_html_error_body_gives_no_parsed_error() -> None:
    error = _status_error(502, body=b"<html>Bad gateway</html>")
    assert isinstance(error, InternalServerError) and error.error is None
    assert error.correlation_id is None and error.body.startswith(b"<html>")


def test_rate_limit_error_exposes_retry_after() -> None:
    error = _status_error(429, headers={"Retry-After": "7"})
    assert isinstance(error, RateLimitError) and error.retry_after == 7.0


def test_redirect_error_names_the_location_but_never_follows() -> None:
    error = _status_error(302, headers={"Location": "https://evil.example/"})
    assert isinstance(error, UnexpectedRedirectError) and "evil.example" in str(error)


def _can_be_retried(value: str) -> bytes:
    return json.dumps({"canBeRetried": value}).encode()


RETRY_TABLE = [
    # (error, attempt, idempotent, retry?)
    (_status_error(408), 1, False, True),
    (_status_error(429), 1, False, True),
    (_status_error(502), 1, False, True),
    (_status_error(503), 1, False, True),
    (_status_error(504), 1, False, True),
    (_status_error(500), 1, False, False),  # Codat replays a cached 500 for the key
    (_status_error(500), 1, True, True),  # a GET may retry it
    (_status_error(409), 1, False, False),  # first attempt: a real conflict
    (_status_error(409), 2, False, True),  # retry: our own first attempt still runs
    (_status_error(409), 2, True, False),
    (_status_error(400), 1, False, False),
    (_status_error(401), 1, False, False),
    (_status_error(402), 1, False, False),
    (_status_error(403), 1, False, False),
    (_status_error(404), 1, False, False),
    (_status_error(422), 2, False, False),
    (_status_error(302), 1, False, False),
    (_status_error(503, body=_can_be_retried("False")), 1, False, False),
    (_status_error(429, body=_can_be_retried("false")), 1, False, False),
    (_status_error(503, body=_can_be_retried("True")), 1, False, True),
    (_status_error(503, body=_can_be_retried("Unknown")), 1, False, True),
    (APIConnectionError("reset"), 1, False, True),
    (APIConnectionError("refused", request_sent=False), 1, False, True),
    (APITimeoutError("read"), 1, False, True),
    (APITimeoutError("attempt", phase="attempt"), 1, False, True),
    (APITimeoutError("deadline", phase="deadline"), 1, False, False),
    (APITLSError("bad cert"), 1, False, False),
    (ResponseTooLargeError("big"), 1, False, False),
    (ValueError("bug"), 1, False, False),
    (KeyboardInterrupt(), 1, False, False),
    (None, 1, False, False),
]


@pytest.mark.parametrize(("error", "attempt", "idempotent", "expected"), RETRY_TABLE)
def test_is_retryable(
    error: BaseException | None, attempt: int, idempotent: bool, expected: bool
) -> None:
    assert is_retryable(error, attempt=attempt, idempotent=idempotent) is expected


RESEND_TABLE = [
    # (error, may a rerun use a *new* idempotency key?)
    (_status_error(400), True),  # Codat refused: nothing started
    (_status_error(401), True),
    (_status_error(404), True),
    (_status_error(422), True),
    (_status_error(408), False),  # may have reached Codat first
    (_status_error(409), False),  # the first request may still run
    (_status_error(429), False),
    (_status_error(500), False),
    (_status_error(503), False),
    (APIConnectionError("refused", request_sent=False, attempts=1), True),
    (APIConnectionError("refused", request_sent=False, attempts=2), False),  # 1st was sent
    (APIConnectionError("reset", request_sent=True), False),
    (APITimeoutError("deadline", phase="deadline", request_sent=False, attempts=0), True),
    (APITimeoutError("read"), False),
    (APITLSError("bad cert", request_sent=False), True),
    (ResponseTooLargeError("big"), False),  # a success body we could not read
    (ValueError("bad company id"), True),  # raised before any I/O
]


@pytest.mark.parametrize(("error", "expected"), RESEND_TABLE)
def test_may_resend_with_new_key(error: BaseException, expected: bool) -> None:
    assert may_resend_with_new_key(error) is expected


def test_not_retried_because_says_why() -> None:
    assert APIConnectionError("reset").not_retried_because is None
    refused = APIConnectionError("odd", not_retried_because="it would fail the same way")
    assert not is_retryable(refused, attempt=1, idempotent=True)
    assert refused.not_retried_because == "it would fail the same way"
    assert APITLSError("bad cert").not_retried_because


def test_cancellation_is_never_retried() -> None:
    import asyncio

    assert not is_retryable(asyncio.CancelledError(), attempt=1, idempotent=True)


POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (100, 8.0)]
)
def test_backoff_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt, POLICY) == ceiling


def test_backoff_is_full_jitter_within_the_ceiling() -> None:
    rand = random.Random(7)
    waits = [
        compute_wait(APIConnectionError(), attempt=3, policy=POLICY, rand=rand) for _ in range(2000)
    ]
    assert 0 <= min(waits) < 0.1 and 1.9 < max(waits) <= 2.0


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [("0", 0.0, 0.0), ("3", 3.0, 3.3), ("30", 30.0, 31.0), ("60", 60.0, 61.0)],
)
def test_retry_after_is_honoured_with_small_jitter(
    retry_after: str, low: float, high: float
) -> None:
    error = _status_error(429, headers={"Retry-After": retry_after})
    for seed in range(50):
        wait = compute_wait(error, attempt=1, policy=POLICY, rand=random.Random(seed))
        assert low <= wait <= high


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    error = _status_error(429, headers={"Retry-After": "soon"})
    wait = compute_wait(error, attempt=1, policy=POLICY, rand=random.Random(1))
    assert 0 <= wait <= 0.5


def test_retry_after_on_503_is_honoured() -> None:
    error = _status_error(503, headers={"Retry-After": "2"})
    assert 2.0 <= compute_wait(error, attempt=1, policy=POLICY, rand=random.Random(1)) <= 2.2


@pytest.mark.parametrize(
    ("error", "attempt", "max_retries", "wait", "remaining", "stop"),
    [
        (APIConnectionError(), 1, 2, 0.3, 100.0, False),
        (APIConnectionError(), 2, 2, 0.3, 100.0, False),
        (APIConnectionError(), 3, 2, 0.3, 100.0, True),  # attempts used up
        (APIConnectionError(), 1, 0, 0.3, 100.0, True),
        (APIConnectionError(), 1, 2, 0.3, None, False),  # no deadline
        (APIConnectionError(), 1, 2, 5.0, 4.0, True),  # the wait would pass the deadline
        (_status_error(429, headers={"Retry-After": "61"}), 1, 2, 61.0, 100.0, True),
        (_status_error(429, headers={"Retry-After": "60"}), 1, 2, 60.5, 100.0, False),
        (_status_error(429, headers={"Retry-After": "30"}), 1, 2, 30.2, 20.0, True),
    ],
)
def test_should_stop(
    error: BaseException,
    attempt: int,
    max_retries: int,
    wait: float,
    remaining: float | None,
    stop: bool,
) -> None:
    assert (
        should_stop(
            error,
            attempt=attempt,
            max_retries=max_retries,
            wait=wait,
            remaining=remaining,
            policy=POLICY,
        )
        is stop
    )


KEY_IN_PROGRESS_TABLE = [
    # (error, attempt, idempotent, key from the caller, a key still in progress?)
    (_status_error(409), 1, False, False, False),  # a fresh key: a real conflict
    (_status_error(409), 1, False, True, True),  # the caller's key: an earlier call runs
    (_status_error(409), 2, False, False, True),  # our own first attempt runs
    (_status_error(409), 2, True, True, False),  # reads carry no key
    (_status_error(409, body=_can_be_retried("False")), 1, False, True, False),
    (_status_error(503), 2, False, True, False),
    (APIConnectionError(), 2, False, True, False),
]


@pytest.mark.parametrize(
    ("error", "attempt", "idempotent", "from_caller", "expected"), KEY_IN_PROGRESS_TABLE
)
def test_a_409_is_a_key_in_progress_only_where_the_key_may_be_held(
    error: BaseException, attempt: int, idempotent: bool, from_caller: bool, expected: bool
) -> None:
    decided = is_key_in_progress(
        error, attempt=attempt, idempotent=idempotent, key_from_caller=from_caller
    )
    assert decided is expected
    retry = is_retryable(error, attempt=attempt, idempotent=idempotent, key_from_caller=from_caller)
    if error is not None and getattr(error, "status_code", None) == 409:
        assert retry is expected  # a 409 is retried exactly when it is a key in progress


@pytest.mark.parametrize(
    ("attempt", "max_retries", "wait", "remaining", "stop"),
    [
        (3, 2, 0.3, 100.0, False),  # attempts used up, but the answer is on its way
        (30, 2, 0.3, 100.0, False),
        (3, 2, 5.0, 4.0, True),  # the wait would pass the deadline
        (3, 2, 0.3, None, True),  # no deadline: max_retries bounds the wait
        (2, 2, 0.3, None, False),
    ],
)
def test_a_key_in_progress_is_waited_out_until_the_deadline(
    attempt: int, max_retries: int, wait: float, remaining: float | None, stop: bool
) -> None:
    decided = should_stop(
        _status_error(409),
        attempt=attempt,
        max_retries=max_retries,
        wait=wait,
        remaining=remaining,
        policy=POLICY,
        key_in_progress=True,
    )
    assert decided is stop


def test_retry_policy_validates() -> None:
    from codat_commerce_async import ConfigurationError

    with pytest.raises(ConfigurationError):
        RetryPolicy(backoff_cap=-1)
