"""Every error the SDK raises, in one tree.

```
CodatError
├── ConfigurationError            bad client settings (also a ValueError)
│   └── RetryPolicyError          a retry strategy of yours raised or answered nonsense
├── SyncWaitTimeoutError          a sync still running when ``wait_for_sync`` gave up
├── DailyQuotaExhaustedError      a bulk run stopped starting triggers: the daily quota is low
├── LimitsUnavailableError        the shared limits store (Redis) cannot be used at start
├── WebhookError                  a webhook body that is not a Codat event
│   └── WebhookVerificationError  bad signature, timestamp, headers or secret
└── APIError                      something went wrong talking to Codat
    ├── APIConnectionError        no usable HTTP response
    │   ├── APITimeoutError       a timeout, the per-attempt bound or the call deadline
    │   └── APITLSError           TLS handshake or certificate failure (never retried)
    ├── APIStatusError            Codat answered with an error status
    │   ├── UnexpectedRedirectError   3xx (redirects are never followed)
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PaymentRequiredError      402
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429
    │   └── InternalServerError       >= 500
    ├── ResponseValidationError   a success body that is not what the spec promises
    ├── ResponseTooLargeError     a body above ``max_response_size`` (raw or decoded)
    ├── RetryBudgetExhaustedError the client-wide retry budget is empty
    └── ClientClosedError         the client was closed (also a RuntimeError)
```

Every :class:`APIError` carries the ``idempotency_key`` sent with the call (when
there was one) and the number of ``attempts`` made, so a caller can retry safely
with the same key or check the sync's status.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models.errors import ErrorMessage
    from ._models.sync import CompanySyncStatus
    from ._types import Request, Response

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITLSError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "CodatError",
    "ConfigurationError",
    "ConflictError",
    "DailyQuotaExhaustedError",
    "InternalServerError",
    "LimitsUnavailableError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudgetExhaustedError",
    "RetryPolicyError",
    "SyncWaitTimeoutError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "WebhookError",
    "WebhookVerificationError",
]


class CodatError(Exception):
    """The root of every error raised by this SDK."""


class ConfigurationError(CodatError, ValueError):
    """The client's settings are missing or invalid (raised at construction)."""


class RetryPolicyError(ConfigurationError):
    """A strategy of the call's ``retry_policy`` raised (``__cause__`` is what it raised)
    or returned something unusable, so the call failed instead of retrying blindly.

    Attributes:
        idempotency_key: the key sent with every attempt so far (reuse it to resend).
        attempts: how many attempts were made.
    """

    def __init__(self, message: str, *, idempotency_key: str | None, attempts: int) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.attempts = attempts


#: True while a user's ``before_sleep``/``after`` callback runs: ``str(error)`` then leaves
#: the idempotency key out, so a log line built from it (``before_sleep_log``) never has it.
KEY_HIDDEN: ContextVar[bool] = ContextVar("codat_key_hidden", default=False)


class WebhookError(CodatError, ValueError):
    """A webhook that cannot be used: its body is not a Codat event (see the subclass
    for signature problems). Answer the delivery with a 4xx."""


class WebhookVerificationError(WebhookError):
    """A webhook whose signature does not verify: never act on its body.

    Attributes:
        reason: ``"headers"`` (a ``webhook-*`` header missing or malformed),
            ``"timestamp"`` (more than 5 minutes from now: a replay, or a wrong clock),
            ``"signature"`` (no signature matches: wrong secret or altered body),
            ``"body"`` (not a raw body: a str that is not valid text, or a parsed object) or
            ``"secret"`` (the secret itself is not a ``whsec_`` base64 secret).
    """

    reason: str

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SyncWaitTimeoutError(CodatError, TimeoutError):
    """A sync was still running when ``wait_for_sync`` (or ``wait_for_many``) gave up.

    Nothing failed at Codat: the sync may still finish. Wait again, or check later.

    Attributes:
        company_id: the company whose sync was polled.
        sync_id: the sync polled by id, or None when the latest sync was polled.
        last_status: the last status read (None if no poll answered).
        timeout: the seconds waited.
    """

    company_id: str
    sync_id: str | None
    last_status: CompanySyncStatus | None
    timeout: float

    def __init__(
        self,
        *,
        company_id: str,
        sync_id: str | None,
        last_status: CompanySyncStatus | None,
        timeout: float,
    ) -> None:
        seen = "no status read"
        if last_status is not None:
            seen = f"last status {last_status.sync_status_code} {last_status.sync_status or ''}"
        which = f"sync {sync_id}" if sync_id else "the latest sync"
        super().__init__(
            f"{which} of company {company_id} was still running after {timeout:g} s "
            f"({seen.rstrip()})"
        )
        self.company_id = company_id
        self.sync_id = sync_id
        self.last_status = last_status
        self.timeout = timeout


class DailyQuotaExhaustedError(CodatError):
    """Codat's daily quota is (nearly) spent, so a bulk run did not trigger this company.

    Nothing was sent for it: trigger it again after ``reset_at`` with the same
    ``idempotency_key``. The run keeps ``reserve`` requests for interactive calls.

    Attributes:
        company_id: the company that was not triggered.
        remaining: ``X-Rate-Limit-Remaining`` as last seen.
        limit: ``X-Rate-Limit-Limit`` as last seen (None if absent).
        reset_at: when Codat resets the quota (UTC), from ``X-Rate-Limit-Reset``.
        reserve: the requests kept back for interactive calls.
        idempotency_key: the key the trigger would have sent.
        attempts: always 0 (nothing was sent).
    """

    status_code: None = None
    correlation_id: None = None
    attempts: int = 0

    def __init__(
        self,
        *,
        company_id: str,
        remaining: int,
        limit: int | None,
        reset_at: _dt.datetime | None,
        reserve: int,
        idempotency_key: str | None = None,
    ) -> None:
        when = reset_at.strftime("%Y-%m-%d %H:%M:%S UTC") if reset_at else "an unknown time"
        super().__init__(
            f"not triggered: Codat's daily quota has {remaining} requests left (the run keeps "
            f"{reserve} for interactive calls) and resets at {when}"
        )
        self.company_id = company_id
        self.remaining = remaining
        self.limit = limit
        self.reset_at = reset_at
        self.reserve = reserve
        self.idempotency_key = idempotency_key


class LimitsUnavailableError(CodatError):
    """The shared limits store (Redis) could not be used when the client started:
    unreachable, a wrong password, or refusing writes (a read-only replica, ``maxmemory``).

    Raised before any request is sent, so a misconfigured fleet fails fast instead of
    every process assuming it owns the whole rate. (Once Redis has taken a write, any
    later Redis error falls back to in-process limits with a warning.) Chains nothing:
    redis-py's error would carry the connection's settings.
    """


class APIError(CodatError):
    """A call to Codat failed.

    Attributes:
        message: what went wrong, without any credential.
        request: the last ``httpx.Request`` or ``httpx2.Request`` sent (``None`` if nothing
            was built).
        idempotency_key: the ``Idempotency-Key`` sent with every attempt of the call.
        attempts: how many attempts were made before giving up.
    """

    message: str
    request: Request | None
    idempotency_key: str | None
    attempts: int

    def __init__(
        self,
        message: str,
        *,
        request: Request | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.idempotency_key = idempotency_key
        self.attempts = attempts

    def __str__(self) -> str:
        extra = [f"attempts={self.attempts}"]
        if self.idempotency_key is not None and not KEY_HIDDEN.get():
            extra.append(f"idempotency_key={self.idempotency_key}")
        return f"{self.message} ({', '.join(extra)})"


class ClientClosedError(APIError, RuntimeError):
    """The client was closed: before this call, or while it was in flight (no attempt
    starts after close begins). ``attempts`` and ``idempotency_key`` say what may have
    reached Codat; reuse the key with a new client to reconcile."""


class APIConnectionError(APIError):
    """No usable response arrived: connection refused, reset, or a broken response.

    ``request_sent`` is False when the failure happened before the request could
    have reached Codat (connection refused, DNS), so it certainly had no effect.
    ``not_retried_because`` says why the SDK does not retry this failure when another
    attempt would fail the same way (None: it is retried as attempts and time allow).
    """

    request_sent: bool
    not_retried_because: str | None

    def __init__(
        self,
        message: str = "Connection error",
        *,
        request: Request | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
        request_sent: bool = True,
        not_retried_because: str | None = None,
    ) -> None:
        super().__init__(
            message, request=request, idempotency_key=idempotency_key, attempts=attempts
        )
        self.request_sent = request_sent
        self.not_retried_because = not_retried_because


class APITimeoutError(APIConnectionError):
    """A timeout: connect, read, write, pool, the per-attempt bound or the call deadline.

    ``phase`` says which: ``"connect"``, ``"read"``, ``"write"``, ``"pool"``,
    ``"attempt"`` or ``"deadline"``.
    """

    phase: str

    def __init__(
        self,
        message: str = "Request timed out",
        *,
        request: Request | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
        phase: str = "read",
        request_sent: bool = True,
        not_retried_because: str | None = None,
    ) -> None:
        super().__init__(
            message,
            request=request,
            idempotency_key=idempotency_key,
            attempts=attempts,
            request_sent=request_sent,
            not_retried_because=not_retried_because,
        )
        self.phase = phase


class APITLSError(APIConnectionError):
    """The TLS handshake failed (bad or untrusted certificate). Never retried."""

    def __init__(self, message: str = "TLS failure", **kwargs: Any) -> None:
        kwargs.setdefault("not_retried_because", "a TLS failure repeats on every attempt")
        super().__init__(message, **kwargs)


class ResponseTooLargeError(APIError):
    """The response body exceeded ``max_response_size`` (raw or decompressed)."""


class RetryBudgetExhaustedError(APIError):
    """The client-wide retry budget is empty, so a failed call was not retried.

    The budget refills as calls succeed; ``__cause__`` is the last failure.
    """


class ResponseValidationError(APIError):
    """Codat answered with success, but the body is not the documented shape.

    The request did take effect: ``body`` keeps the raw bytes and ``response``
    the HTTP response, so nothing the caller asked for is lost.
    """

    response: Response
    body: bytes

    def __init__(
        self,
        message: str,
        *,
        response: Response,
        body: bytes,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message,
            request=response.request,
            idempotency_key=idempotency_key,
            attempts=attempts,
        )
        self.response = response
        self.body = body

    @property
    def status_code(self) -> int:
        """The HTTP status of the response."""
        return self.response.status_code


class APIStatusError(APIError):
    """Codat answered with a non-success status.

    Attributes:
        status_code: the HTTP status.
        response: the ``httpx.Response`` or ``httpx2.Response`` (its body already read).
        body: the raw response body.
        error: Codat's parsed ``ErrorMessage``, or ``None`` when the body was not one.
        correlation_id: Codat's ``correlationId``, to quote to Codat support.
    """

    status_code: int
    response: Response
    body: bytes
    error: ErrorMessage | None

    def __init__(
        self,
        message: str,
        *,
        response: Response,
        body: bytes = b"",
        error: ErrorMessage | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message,
            request=response.request,
            idempotency_key=idempotency_key,
            attempts=attempts,
        )
        self.response = response
        self.status_code = response.status_code
        self.body = body
        self.error = error

    @property
    def correlation_id(self) -> str | None:
        """Codat's ``correlationId`` for this error, if it sent one."""
        return self.error.correlation_id if self.error is not None else None

    @property
    def can_be_retried(self) -> bool | None:
        """Codat's ``canBeRetried`` hint: True, False, or None when unknown."""
        raw = self.error.can_be_retried if self.error is not None else None
        if raw is None:
            return None
        value = raw.strip().lower()
        if value == "true":
            return True
        if value == "false":
            return False
        return None

    def __str__(self) -> str:
        extra = [f"status={self.status_code}"]
        if self.correlation_id:
            extra.append(f"correlation_id={self.correlation_id}")
        extra.append(f"attempts={self.attempts}")
        if self.idempotency_key is not None and not KEY_HIDDEN.get():
            extra.append(f"idempotency_key={self.idempotency_key}")
        return f"{self.message} ({', '.join(extra)})"


class UnexpectedRedirectError(APIStatusError):
    """Codat answered with a redirect. Redirects are never followed, so the
    ``Authorization`` header is never sent anywhere but ``base_url``."""


class BadRequestError(APIStatusError):
    """400: Codat rejected the request (see ``error.validation``)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong. The message says where the key comes from."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}: Codat refused the API key; check the key given as "
            "api_key=... (SDK), --api-key (CLI) or the CODAT_API_KEY environment variable"
        )


class PaymentRequiredError(APIStatusError):
    """402: an account limit was reached (for example the free plan's)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not access this resource."""


class NotFoundError(APIStatusError):
    """404: the company (or sync) does not exist."""


class ConflictError(APIStatusError):
    """409: a request with the same idempotency key is still running at Codat."""


class UnprocessableEntityError(APIStatusError):
    """422: the idempotency key was already used with a different request."""


class RateLimitError(APIStatusError):
    """429: rate limited. ``retry_after`` is Codat's ``Retry-After`` in seconds, if known."""

    retry_after: float | None

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # Parsed once: an HTTP-date would otherwise mean less each time it was read.
        self.retry_after = parse_retry_after(self.response.headers.get("retry-after"))


class InternalServerError(APIStatusError):
    """5xx: a server-side failure at Codat (or a gateway in front of it)."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status: the one status -> class map."""
    if status_code >= 500:
        return InternalServerError
    if 300 <= status_code < 400:
        return UnexpectedRedirectError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


# A longer Retry-After (about 11.5 days) is reported as this: still "longer than we
# wait" (so it raises at once with ``retry_after`` set), and it keeps the clock maths sane.
_RETRY_AFTER_CEILING = 1_000_000.0


def parse_retry_after(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header into seconds (>= 0), or None if absent or invalid.

    Accepts delta-seconds (integer or decimal) and HTTP-dates. Garbage, NaN,
    infinities and negative numbers give None; a date in the past gives 0; a
    value above about 11.5 days gives that ceiling (never None: it is a real,
    long Retry-After).
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text[0].isdigit() or text[0] in "+-.":
        try:
            seconds = float(text)
        except ValueError:
            return None
        if seconds != seconds or seconds < 0 or seconds == float("inf"):
            return None
        return min(seconds, _RETRY_AFTER_CEILING)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    current = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        delta = (when - current).total_seconds()
    except OverflowError:
        return None
    return min(max(0.0, delta), _RETRY_AFTER_CEILING)


# "//" up to the last "@" of a run without spaces: a URL's userinfo, even one whose
# password holds "/", "?" or "#" (which end the authority for a URL parser).
_USERINFO = re.compile(r"//[^\s]*@")


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every credential form and any URL userinfo replaced (servers may
    echo what they got). Scrub before cutting: a cut may split a secret."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "<redacted>")
    return _USERINFO.sub("//<redacted>@", text)


def _scrubbed_excerpt(text: str, secrets: Sequence[str], limit: int) -> str:
    return redact(text, secrets)[:limit]


def _status_message(
    status_code: int, response: Response, error: Any, secrets: Sequence[str]
) -> str:
    reason = response.reason_phrase or "error"
    detail = getattr(error, "error", None) if error is not None else None
    text = f"Codat answered {status_code} {reason}"
    if 300 <= status_code < 400:
        location = response.headers.get("location")
        text += " (redirects are never followed"
        text += f"; Location: {_scrubbed_excerpt(location, secrets, 200)})" if location else ")"
    if detail:
        text += f": {_scrubbed_excerpt(str(detail), secrets, 500)}"
    return redact(text, secrets)


def make_status_error(
    response: Response,
    body: bytes,
    error: ErrorMessage | None,
    *,
    idempotency_key: str | None,
    attempts: int,
    secrets: Sequence[str] = (),
) -> APIStatusError:
    """Build the right :class:`APIStatusError` subclass for an error response.

    ``secrets`` are scrubbed from the message: Codat's text may echo the request.
    """
    cls = status_error_class(response.status_code)
    return cls(
        _status_message(response.status_code, response, error, secrets),
        response=response,
        body=body,
        error=error,
        idempotency_key=idempotency_key,
        attempts=attempts,
    )
