"""Client settings as small immutable objects, their defaults, and their validation.

Everything here runs before any I/O: a bad key, URL or header is reported at
construction (or before a call), with a message that never contains the key.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import platform
import re
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ._exceptions import ConfigurationError
from ._types import NOT_GIVEN, NotGiven, TimeoutTypes
from ._version import __version__

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "RetryPolicy",
]

DEFAULT_BASE_URL: Final = "https://api.codat.io"
#: connect 5 s, read 30 s, write 30 s, waiting for a pooled connection 10 s.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)
#: Retries after the first attempt (so 3 attempts in all).
DEFAULT_MAX_RETRIES: Final = 2
#: Wall-clock bound on one attempt: a server dripping bytes defeats per-read timeouts.
DEFAULT_ATTEMPT_TIMEOUT: Final = 30.0
#: Wall-clock bound on a whole call: every attempt and every wait between them.
DEFAULT_DEADLINE: Final = 120.0
#: Requests in flight per client; Codat allows 10 concurrent requests per company.
DEFAULT_MAX_CONCURRENCY: Final = 10
#: Largest response body accepted, raw and decompressed alike (1 MiB).
DEFAULT_MAX_RESPONSE_SIZE: Final = 1024 * 1024

ENV_API_KEY: Final = "CODAT_API_KEY"
ENV_BASE_URL: Final = "CODAT_BASE_URL"


#: A tenacity strategy: called with a ``tenacity.RetryCallState``; may return an awaitable.
Strategy = Callable[[Any], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How the SDK retries: numbers for its own strategies, or tenacity strategies of yours.

    The numbers (a shorthand for ``wait=wait_codat(...)``):

    Attributes:
        backoff_base: the first backoff ceiling in seconds; it doubles per retry.
        backoff_cap: the largest backoff ceiling; waits are drawn from ``U(0, ceiling)``
            ("full jitter").
        max_retry_after: the longest ``Retry-After`` honoured; a longer one (or one past
            the call's deadline) raises :class:`RateLimitError` at once. Always applies.
        retry_after_jitter: the extra random wait added to a ``Retry-After``, as a
            fraction of it (at most 1 s), so clients released together do not stampede.

    The strategies, in tenacity's words (``None``: the SDK's own; the mapping is in
    docs/retries-and-idempotency.md):

    Attributes:
        stop: e.g. ``stop_after_attempt(5) | stop_after_delay(30)``; the SDK's
            :func:`stop_codat` (``max_retries``, the deadline, the ``Retry-After`` cap, the
            retry budget) applies as well, so yours can only stop sooner.
        wait: e.g. ``wait_codat() + wait_random(0, 1)``; default :func:`wait_codat`.
        retry: e.g. ``retry_if_exception_type(RateLimitError)``; asked only about errors
            the SDK considers safe to retry, so it can only narrow them.
        before_sleep: e.g. ``before_sleep_log(logger, logging.INFO)``.
        after: called after each failed attempt that will be retried.

    A strategy may be a coroutine function; it is awaited. One that raises fails the call
    with :class:`RetryPolicyError`.
    """

    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = 60.0
    retry_after_jitter: float = 0.1
    stop: Strategy | None = None
    wait: Strategy | None = None
    retry: Strategy | None = None
    before_sleep: Strategy | None = None
    after: Strategy | None = None

    def __post_init__(self) -> None:
        for name in ("backoff_base", "backoff_cap", "max_retry_after", "retry_after_jitter"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number >= 0")
        for name in ("stop", "wait", "retry", "before_sleep", "after"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(
                    f"RetryPolicy.{name} must be a tenacity strategy (a callable) or None"
                )

    @property
    def has_strategies(self) -> bool:
        """Whether any tenacity strategy was given (else the SDK's own decide alone)."""
        return not (
            self.stop is None
            and self.wait is None
            and self.retry is None
            and self.before_sleep is None
            and self.after is None
        )


def user_agent(library: str, version: str) -> str:
    """Our ``User-Agent``: SDK, Python and the HTTP library the client runs on."""
    return (
        f"codat-commerce-async/{__version__} "
        f"Python/{platform.python_version()} {library}/{version}"
    )

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Header names we set ourselves; letting a caller override them would break the contract.
_RESERVED_HEADERS: Final = frozenset(
    {"authorization", "idempotency-key", "content-length", "host", "transfer-encoding"}
)
_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _has_control_chars(value: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _is_visible_ascii(value: str) -> bool:
    return all(0x20 <= ord(ch) < 0x7F for ch in value)


def resolve_auth_header(api_key: str | None, auth_header: str | None) -> str:
    """The ``Authorization`` value, from a raw key, a ready-made header or ``CODAT_API_KEY``.

    The raw key is sent as ``Basic <base64(key)>``; a ready-made header verbatim.
    Messages name the problem, never the value.
    """
    if api_key is not None and auth_header is not None:
        raise ConfigurationError("pass either api_key or auth_header, not both")
    if auth_header is not None:
        if not isinstance(auth_header, str):
            raise ConfigurationError("auth_header must be a string")
        value = auth_header.strip()
        if not value:
            raise ConfigurationError("auth_header is empty")
        if _has_control_chars(value) or not _is_visible_ascii(value):
            raise ConfigurationError(
                "auth_header contains control or non-ASCII characters (value not shown)"
            )
        return value
    source = "api_key"
    if api_key is None:
        api_key = os.environ.get(ENV_API_KEY)
        source = ENV_API_KEY
    if api_key is None:
        raise ConfigurationError(
            f"no Codat credentials: pass api_key=... or auth_header=..., "
            f"or set the {ENV_API_KEY} environment variable"
        )
    if not isinstance(api_key, str):
        raise ConfigurationError("api_key must be a string")
    key = api_key.strip()  # keys pasted from files or env vars often end in a newline
    if not key:
        raise ConfigurationError(f"{source} is empty")
    if _has_control_chars(key):
        raise ConfigurationError(f"{source} contains control characters (value not shown)")
    encoded = base64.b64encode(key.encode("utf-8")).decode("ascii")
    return f"Basic {encoded}"


def resolve_base_url(base_url: str | None) -> httpx.URL:
    """Validate ``base_url`` (argument, then ``CODAT_BASE_URL``, then the default).

    It must be ``https``, except on loopback hosts (for the fake server and tests);
    it may not carry credentials, a query or a fragment.
    """
    raw = base_url if base_url is not None else os.environ.get(ENV_BASE_URL, DEFAULT_BASE_URL)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigurationError("base_url must be a non-empty string")
    if _has_control_chars(raw):
        raise ConfigurationError("base_url contains control characters")
    if "@" in raw:
        # Checked before parsing: a password with "/", "?" or "#" ends the authority
        # early and the parser's message ("Invalid port: ...") would quote part of it.
        raise ConfigurationError(
            "base_url must not contain credentials (user:password@); value not shown"
        )
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL{_url_hint(raw)}")
    if url.userinfo:
        raise ConfigurationError("base_url must not contain credentials (user:password@)")
    if url.query or url.fragment:
        raise ConfigurationError("base_url must not contain a query or fragment")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ConfigurationError(
            "base_url must use https (plain http is allowed only for loopback hosts)"
        )
    return url.copy_with(raw_path=url.raw_path.rstrip(b"/"))


def _url_hint(raw: str) -> str:
    """The value as given (credentials were refused before; a query is cut, as it could
    hold a token) and the likely fix, e.g. for a typo such as ``htps://``."""
    shown = re.split(r"[?#]", raw.strip(), maxsplit=1)[0][:100]
    scheme, _, rest = shown.rpartition("://") if "://" in shown else ("", "", shown)
    rest = re.sub(r"^(https?)?[:/]*", "", rest, flags=re.IGNORECASE)  # "https//...", ":/..."
    if scheme.lower() in ("http", "https") or not rest:
        return f" such as {DEFAULT_BASE_URL!r}, not {shown!r}"
    return f", not {shown!r}: did you mean {'https://' + rest!r}?"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Check extra headers: a mapping, token names, values of visible ASCII with no
    surrounding whitespace, not one of ours."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        # A list of pairs (which httpx takes, to repeat a name) is refused rather than
        # guessed at: these headers replace the client's by name, so a repeated name
        # has no meaning here.
        raise ConfigurationError(
            "default_headers / extra_headers must be a mapping of header name to value "
            f"(a dict), got {type(headers).__name__}; for (name, value) pairs pass dict(pairs)"
        )
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ConfigurationError(f"invalid header name {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigurationError(f"header {name!r} is set by the SDK and cannot be overridden")
        if not isinstance(value, str):
            raise ConfigurationError(f"header {name!r} must have a string value")
        if _has_control_chars(value) or not _is_visible_ascii(value):
            raise ConfigurationError(f"header {name!r} contains control or non-ASCII characters")
        if value != value.strip(" "):
            # h11 refuses such a value once a connection is open, aiohttp sends it: refuse
            # it here, before any I/O, on every transport.
            raise ConfigurationError(
                f"header {name!r} has leading or trailing whitespace (value not shown)"
            )
        clean[name] = value
    return clean


def resolve_timeout(timeout: TimeoutTypes | NotGiven) -> httpx.Timeout:
    """An :class:`httpx.Timeout` from seconds, an httpx or httpx2 Timeout, ``None`` (no
    timeout) or the default. Settings keep httpx's type whatever the client runs on."""
    if isinstance(timeout, NotGiven):
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    httpx2 = sys.modules.get("httpx2")  # an httpx2.Timeout cannot exist unless it is loaded
    if httpx2 is not None and isinstance(timeout, httpx2.Timeout):
        return httpx.Timeout(**timeout.as_dict())
    if timeout is None:
        return httpx.Timeout(None)
    return httpx.Timeout(_positive("timeout", timeout))


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return float(value)


def optional_seconds(name: str, value: float | None) -> float | None:
    """Validate a bound in seconds that may be ``None`` (no bound)."""
    return None if value is None else _positive(name, value)


def non_negative_int(name: str, value: int) -> int:
    """Validate a count such as ``max_retries``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an integer >= 0")
    return value


def positive_int(name: str, value: int) -> int:
    """Validate a size such as ``max_concurrency``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1")
    return value


def resolve_verify(
    verify: ssl.SSLContext | str | os.PathLike[str] | None,
) -> ssl.SSLContext | bool:
    """TLS verification is always on: None (``True``) is the HTTP library's default
    context, a path a CA bundle, an :class:`ssl.SSLContext` is used as given."""
    if verify is None:
        return True
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        if not os.fspath(verify).strip():
            # Often an unset env var; ssl would quietly fall back to the system store.
            raise ConfigurationError("verify is an empty CA bundle path")
        try:
            return ssl.create_default_context(cafile=os.fspath(verify))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the CA bundle: {exc}") from None
    raise ConfigurationError(
        "verify must be an ssl.SSLContext, a CA bundle path, or None "
        "(TLS verification cannot be turned off)"
    )


@dataclass(frozen=True)
class CallSettings:
    """The per-call knobs, resolved: client defaults with any overrides applied."""

    timeout: httpx.Timeout
    max_retries: int
    deadline: float | None
    attempt_timeout: float | None
    retry_policy: RetryPolicy
    extra_headers: tuple[tuple[str, str], ...] = ()
    """Headers added to (or replacing) the client's on every request of these calls."""

    def with_overrides(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        attempt_timeout: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CallSettings:
        """A copy with the given fields replaced and validated; ``extra_headers`` are
        validated as the constructor's ``default_headers`` and merged over these."""
        headers = self.extra_headers
        if extra_headers is not None:
            merged = {name.lower(): (name, value) for name, value in headers}
            for name, value in validate_headers(extra_headers).items():
                merged[name.lower()] = (name, value)
            headers = tuple(merged.values())
        if (
            isinstance(timeout, NotGiven)
            and isinstance(max_retries, NotGiven)
            and isinstance(deadline, NotGiven)
            and isinstance(attempt_timeout, NotGiven)
            and isinstance(retry_policy, NotGiven)
            and headers is self.extra_headers
        ):
            return self
        return CallSettings(
            extra_headers=headers,
            timeout=self.timeout if isinstance(timeout, NotGiven) else resolve_timeout(timeout),
            max_retries=self.max_retries
            if isinstance(max_retries, NotGiven)
            else non_negative_int("max_retries", max_retries),
            deadline=self.deadline
            if isinstance(deadline, NotGiven)
            else optional_seconds("deadline", deadline),
            attempt_timeout=self.attempt_timeout
            if isinstance(attempt_timeout, NotGiven)
            else optional_seconds("attempt_timeout", attempt_timeout),
            retry_policy=self.retry_policy
            if isinstance(retry_policy, NotGiven)
            else _check_policy(retry_policy),
        )


def _check_policy(policy: object) -> RetryPolicy:
    if not isinstance(policy, RetryPolicy):
        raise ConfigurationError("retry_policy must be a RetryPolicy")
    return policy


class SecretForms(tuple[str, ...]):
    """The forms of a credential, as a tuple whose repr never shows them.

    Error reporters (Sentry, rich, ``pytest -l``) render the local variables of every
    frame in a traceback; this is what they print for it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretForms(<{len(self)} redacted>)"

    __str__ = __repr__


def secret_forms(auth_header: str) -> SecretForms:
    """Every form of the credential that must never appear in a message."""
    forms = {auth_header}
    scheme, _, token = auth_header.partition(" ")
    if token:
        forms.add(token)
        if scheme.lower() == "basic":
            import binascii

            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                forms.add(base64.b64decode(token, validate=True).decode("utf-8"))
    return SecretForms(sorted((form for form in forms if len(form) >= 4), key=len, reverse=True))
