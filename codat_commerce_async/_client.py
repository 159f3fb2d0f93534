"""``AsyncSyncClient``: the public async client. It validates its settings, builds the
shared state (:mod:`._core`) and hands out ``client.sync``; calls run in
:mod:`._call` (one call), :mod:`._retry` (the loop) and :mod:`._send` (httpx or httpx2)."""

from __future__ import annotations

import copy
import datetime
import os
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    CallSettings,
    RetryPolicy,
    non_negative_int,
    optional_seconds,
    positive_int,
    resolve_auth_header,
    resolve_base_url,
    resolve_timeout,
    resolve_verify,
    secret_forms,
    user_agent,
    validate_headers,
)
from ._core import Core
from ._events import EventHook, validate_hooks
from ._exceptions import ConfigurationError
from ._fleet_limits import FleetLimits
from ._http_library import HttpLibraryName, resolve_library
from ._limits import ClientLimits, InProcessLimits
from ._logging import setup_from_env
from ._quota import DEFAULT_QUOTA_RESERVE, validate_reserve
from ._ratelimit import validate_rate
from ._redis_limits import RedisLimits, refuse_non_asyncio
from ._resources.sync import AsyncSyncResource
from ._retry import RetryBudget
from ._send import HttpPool
from ._types import NOT_GIVEN, NotGiven, TimeoutTypes

if TYPE_CHECKING:
    from ._types import URL, AsyncBaseTransport, AsyncClient, Timeout

__all__ = ["AsyncSyncClient"]

setup_from_env()


class AsyncSyncClient:
    """Async client for Codat's Sync for Commerce sync API.

    Use it as an async context manager, one per application (or event loop)::

        async with AsyncSyncClient(api_key="...") as client:
            summary = await client.sync.request_sync(company_id)

    Args:
        api_key: your Codat API key; sent as ``Basic <base64(key)>``.
            Defaults to the ``CODAT_API_KEY`` environment variable.
        auth_header: a ready-made ``Authorization`` value, sent verbatim
            (instead of ``api_key``).
        base_url: defaults to ``CODAT_BASE_URL`` or ``https://api.codat.io``.
            Must be https, except on loopback hosts.
        timeout: seconds, an ``httpx.Timeout`` or an ``httpx2.Timeout``; ``None`` means no
            timeout.
            Default: connect 5 s, read 30 s, write 30 s, pool 10 s.
        max_retries: retries after the first attempt (default 2).
        deadline: wall-clock bound on a whole call, retries and waits included
            (default 120 s; ``None`` for none).
        attempt_timeout: wall-clock bound on one attempt (default 30 s; ``None`` for none).
        max_concurrency: requests in flight at once (default 10), never above the pool size
            (of the SDK's pool, or of an httpx/httpx2 ``http_client``/``transport`` you pass).
        max_response_size: the largest body accepted, raw or decompressed (default 1 MiB).
        default_headers: extra headers for every request.
        http_client: an ``httpx.AsyncClient`` or ``httpx2.AsyncClient`` you own; the SDK
            never closes it, and runs on its library.
        transport: an httpx or httpx2 ``AsyncBaseTransport`` for the client the SDK builds.
        http_library: ``"httpx"`` or ``"httpx2"`` (``pip install
            'codat-commerce-async[httpx2]'``). Default: the library of ``http_client`` or
            ``transport``, else the ``CODAT_HTTP_LIBRARY`` environment variable, else httpx.
            Never chosen just because a library is installed.
        verify: a CA bundle path or an ``ssl.SSLContext`` (verification is always on).
        retry_policy: backoff and ``Retry-After`` settings (see :class:`RetryPolicy`).
        event_hooks: callables that receive a :class:`CallEvent` at each step of a call.
        retry_budget: the client-wide :class:`RetryBudget` (default: 500 tokens, 5 per
            retry); ``None`` turns it off.
        requests_per_minute: a client-side rate limit on every attempt (a token bucket;
            default None: no limit). Codat allows 1,000 requests a minute per IP.
        clock: where the client reads the time, sleeps and draws jitter (a
            :class:`Clock`); tests pass :class:`~codat_commerce_async.testing.ManualClock`.
        limits: a :class:`RedisLimits` shared by every process of a fleet (the request
            rate per IP, the 429 gate, per-company leases, the daily quota); default
            None: this client's own limits. asyncio only.
        quota_reserve: daily-quota requests bulk runs leave for interactive calls
            (default 100; with ``limits=`` the :class:`RedisLimits` setting applies).
    """

    sync: AsyncSyncResource
    """The sync operations."""

    _core: Core
    _settings: CallSettings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        auth_header: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = DEFAULT_DEADLINE,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        default_headers: Mapping[str, str] | None = None,
        http_client: AsyncClient | None = None,
        transport: AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | os.PathLike[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        event_hooks: Sequence[EventHook] | None = None,
        retry_budget: RetryBudget | NotGiven | None = NOT_GIVEN,
        requests_per_minute: float | None = None,
        clock: Clock | None = None,
        limits: RedisLimits | None = None,
        quota_reserve: int = DEFAULT_QUOTA_RESERVE,
        http_library: HttpLibraryName | None = None,
    ) -> None:
        auth = resolve_auth_header(api_key, auth_header)
        quota_reserve = validate_reserve(quota_reserve)
        if limits is not None:
            if not isinstance(limits, RedisLimits):
                raise ConfigurationError("limits must be a RedisLimits or None")
            refuse_non_asyncio(f"limits={limits!r}")
        rate = validate_rate("requests_per_minute", requests_per_minute)
        hooks = validate_hooks(event_hooks)
        url = resolve_base_url(base_url)
        extra = validate_headers(default_headers)
        settings = CallSettings(
            timeout=resolve_timeout(timeout),
            max_retries=non_negative_int("max_retries", max_retries),
            deadline=optional_seconds("deadline", deadline),
            attempt_timeout=optional_seconds("attempt_timeout", attempt_timeout),
            retry_policy=RetryPolicy(),
        ).with_overrides(retry_policy=retry_policy if retry_policy is not None else NOT_GIVEN)
        concurrency = positive_int("max_concurrency", max_concurrency)
        size_cap = positive_int("max_response_size", max_response_size)
        if clock is None:
            clock = SystemClock()
        elif not isinstance(clock, Clock):
            raise ConfigurationError("clock must have now(), sleep() and random() methods")
        library = resolve_library(http_library, http_client=http_client, transport=transport)
        if http_client is not None:
            if transport is not None or verify is not None:
                raise ConfigurationError(
                    "transport= and verify= configure the client the SDK builds; "
                    "with http_client= configure your own client instead"
                )
        elif transport is not None and verify is not None:
            raise ConfigurationError(
                "verify= configures the SDK's own transport; with transport= set TLS "
                "options on your transport"
            )
        pool = HttpPool(
            library=library,
            http_client=http_client,
            transport=transport,
            verify=resolve_verify(verify) if http_client is None and transport is None else True,
            timeout=settings.timeout,
            max_connections=concurrency,
        )
        # The cap follows the pool, however it was supplied: requests never queue
        # inside httpcore (encode/httpcore#1093).
        concurrency = min(concurrency, pool.max_connections() or concurrency)
        headers = {
            "Authorization": auth,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": user_agent(library.name, library.version),
            **extra,
        }
        core = Core(
            pool=pool,
            base_url=str(url),
            headers=headers,
            secrets=secret_forms(auth),
            max_response_size=size_cap,
            limits=InProcessLimits(
                clock=clock,
                max_concurrency=concurrency,
                requests_per_minute=rate,
                quota_reserve=quota_reserve,
            )
            if limits is None
            else FleetLimits(
                limits, clock=clock, max_concurrency=concurrency, requests_per_minute=rate
            ),
            clock=clock,
            hooks=hooks,
            retry_budget=_check_budget(retry_budget),
        )
        self._bind(core, settings)

    def _bind(self, core: Core, settings: CallSettings) -> None:
        self._core = core
        self._settings = settings
        self._base_url: URL = core.pool.library.module.URL(core.requests.url_prefix)
        self.sync = AsyncSyncResource(core, settings)

    # -- configuration -------------------------------------------------------

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        attempt_timeout: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
    ) -> AsyncSyncClient:
        """A copy with other call settings that shares this client's connection pool
        and limits. Closing either closes the shared pool.

        ``default_headers`` are added to this client's headers (a name already set is
        replaced), validated as the constructor's are."""
        settings = self._settings.with_overrides(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            attempt_timeout=attempt_timeout,
            retry_policy=retry_policy,
            extra_headers=default_headers,
        )
        other = copy.copy(self)
        other._bind(self._core, settings)
        return other

    def pause_bulk_runs(self, *, until: datetime.datetime | None = None) -> None:
        """Hold this client's bulk runs (and its ``with_options`` copies') until
        ``until`` (an aware datetime; None: until :meth:`resume_bulk_runs`).

        Meant for Codat's ``client.rateLimit.reached`` webhook (see
        :func:`codat_commerce_async.webhooks.apply_rate_limit`): while paused, runs take
        no new company; calls in flight finish. Call it on the client's event loop.
        """
        seconds = None
        if until is not None:
            if until.tzinfo is None or until.utcoffset() is None:
                raise ConfigurationError("until must be an aware datetime (e.g. in UTC)")
            seconds = (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        self._core.limits.pause_bulk_runs(seconds)

    def resume_bulk_runs(self) -> None:
        """End a :meth:`pause_bulk_runs` now (Codat's ``client.rateLimit.reset``)."""
        self._core.limits.resume_bulk_runs()

    @property
    def bulk_runs_paused(self) -> bool:
        """True while :meth:`pause_bulk_runs` holds this client's bulk runs."""
        return self._core.limits.bulk_runs_paused

    @property
    def base_url(self) -> URL:
        """The URL every request goes to (a URL of the client's HTTP library)."""
        return self._base_url

    @property
    def timeout(self) -> Timeout:
        """The timeout of each attempt (a Timeout of the client's HTTP library)."""
        return self._core.pool.library.timeout(self._settings.timeout)

    @property
    def http_library(self) -> HttpLibraryName:
        """The HTTP library this client runs on: ``"httpx"`` or ``"httpx2"``."""
        return self._core.pool.library.name

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._settings.max_retries

    @property
    def deadline(self) -> float | None:
        """Wall-clock bound on a whole call, in seconds."""
        return self._settings.deadline

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once."""
        return self._core.limits.max_concurrency

    @property
    def limits(self) -> ClientLimits:
        """The limits shared by every call of this client and its copies (429 gate,
        request rate, in-flight cap, bulk runs' per-company guard)."""
        return self._core.limits

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The client-wide :class:`RetryBudget` (None: retries are not budgeted)."""
        return self._core.retry_budget

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` has run."""
        return self._core.closed

    def __repr__(self) -> str:
        return (
            f"AsyncSyncClient(base_url={str(self._base_url)!r}, "
            f"max_retries={self._settings.max_retries}, auth=<redacted>)"
        )

    # -- lifecycle -----------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``).
        Safe to call more than once."""
        await self._core.aclose()

    async def __aenter__(self) -> AsyncSyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _check_budget(budget: RetryBudget | NotGiven | None) -> RetryBudget | None:
    if isinstance(budget, NotGiven):
        return RetryBudget()
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ConfigurationError("retry_budget must be a RetryBudget or None")
    return budget

