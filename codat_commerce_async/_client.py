"""``AsyncSyncClient``: the engine. It owns (or borrows) the ``httpx.AsyncClient``,
the limits shared by every call, and the retry loop around each attempt."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import random
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import httpx
import sniffio
from tenacity import RetryCallState

from . import _protocol
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
    user_agent,
    validate_headers,
)
from ._events import CallEvent, EventHook, EventKind, validate_hooks
from ._exceptions import (
    APIError,
    APITimeoutError,
    ConfigurationError,
    RateLimitError,
    RetryBudgetExhaustedError,
)
from ._http_library import HttpLibrary, HttpLibraryName, resolve_library
from ._logging import logger, setup_from_env
from ._pause import PauseGate
from ._ratelimit import RateLimiter, validate_rate
from ._response import APIResponse
from ._retry import RetryAccount, RetryBudget, build_retrying, is_retryable
from ._send import send_attempt
from ._types import NOT_GIVEN, NotGiven, TimeoutTypes

if TYPE_CHECKING:
    from ._resources.sync import AsyncSyncResource
    from ._types import URL, AsyncBaseTransport, AsyncClient, Request, Response, Timeout

__all__ = ["AsyncSyncClient"]

T = TypeVar("T")

setup_from_env()


def _loop_identity() -> object:
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop()
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return library


def _pool_size(http: AsyncClient) -> int | None:
    """Best effort: the connection limit of an injected client's default transport."""
    pool = getattr(getattr(http, "_transport", None), "_pool", None)
    size = getattr(pool, "_max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


class _Core:
    """What a client shares with its ``with_options`` copies: the connection pool,
    the in-flight limit, the rate-limit gate, the optional token bucket, the
    companies with a bulk trigger in flight, and the clock, sleep and randomness
    (replaceable in tests)."""

    def __init__(
        self,
        *,
        library: HttpLibrary,
        http: AsyncClient,
        transport: AsyncBaseTransport | None,
        base_url: httpx.URL,
        auth_header: str,
        headers: dict[str, str],
        max_concurrency: int,
        max_response_size: int,
        hooks: tuple[EventHook, ...] = (),
        retry_budget: RetryBudget | None = None,
        rebuild: Callable[[], tuple[AsyncClient, AsyncBaseTransport]] | None = None,
        requests_per_minute: float | None = None,
    ) -> None:
        self.library = library
        self.hooks = hooks
        self.retry_budget = retry_budget
        self.rebuild = rebuild
        self.pid = os.getpid()
        self.owns_http = transport is not None
        self._use_pool(http, transport)
        self.base_url = base_url
        self.url_prefix = str(base_url)
        # Normalised once; each call copies it (a list copy) and adds its key.
        self.headers = library.headers(headers)
        self.secrets = _secret_forms(auth_header)
        self.max_concurrency = max_concurrency
        self.max_response_size = max_response_size
        self.limiter = anyio.Semaphore(max_concurrency)
        self.gate_until = 0.0
        self.bulk_pause = PauseGate()
        self.closed = False
        self.loop: object | None = None
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self.random = random.Random()
        # The bucket every attempt takes a token from (None: no client-side limit, and
        # then no cost on the call path). Bulk runs push their own for their duration.
        self.base_rate_limiter = (
            None if requests_per_minute is None else self.new_rate_limiter(requests_per_minute)
        )
        self.rate_limiter: RateLimiter | None = self.base_rate_limiter
        self._run_limiters: list[RateLimiter] = []
        # Companies with a bulk trigger in flight: at most one per company per client.
        self.triggers_in_flight: dict[str, anyio.Event] = {}

    def new_rate_limiter(self, requests_per_minute: float) -> RateLimiter:
        """A token bucket on this core's clock and sleep (read at each use, so a test
        may replace them after construction)."""
        return RateLimiter(
            requests_per_minute,
            clock=lambda: self.clock(),
            sleep=lambda seconds: self.sleep(seconds),
        )

    def push_rate_limiter(self, limiter: RateLimiter) -> None:
        """Make ``limiter`` govern every request until :meth:`pop_rate_limiter`."""
        self._run_limiters.append(limiter)
        self.rate_limiter = limiter

    def pop_rate_limiter(self, limiter: RateLimiter) -> None:
        """Undo :meth:`push_rate_limiter` (runs may end in any order)."""
        with contextlib.suppress(ValueError):
            self._run_limiters.remove(limiter)
        self.rate_limiter = self._run_limiters[-1] if self._run_limiters else self.base_rate_limiter

    def emit(self, event: CallEvent) -> None:
        for hook in self.hooks:
            hook(event)

    def check_usable(self) -> None:
        if self.closed:
            raise RuntimeError("this AsyncSyncClient is closed; create a new one")
        if self.pid != os.getpid():
            self._after_fork()
        loop = _loop_identity()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise RuntimeError(
                "this AsyncSyncClient was first used on another event loop; its connection "
                "pool belongs to that loop. Create one client per event loop (for example "
                "inside your app's lifespan), or use the blocking SyncClient."
            )

    def _use_pool(self, http: AsyncClient, transport: AsyncBaseTransport | None) -> None:
        self.http = http
        # Our own pool: call its transport directly. httpx.AsyncClient.send adds auth,
        # redirect, cookie and hook handling we never want, at ~40% of the CPU of a call.
        # A borrowed client keeps its own send (its mounts, proxies and event hooks).
        self.send: Callable[[Request], Awaitable[Response]] = (
            transport.handle_async_request  # type: ignore[assignment]
            if transport is not None
            else functools.partial(http.send, stream=True, follow_redirects=False, auth=None)
        )

    def _after_fork(self) -> None:
        """In a forked child, never touch the parent's sockets: start a fresh pool
        (when the SDK built it) or refuse (when it was passed in)."""
        if self.rebuild is None:
            raise RuntimeError(
                "this AsyncSyncClient was created in another process (before os.fork()) "
                "with your own http_client or transport; create the client (and its "
                "transport) in the child process"
            )
        # The parent's pool is abandoned, not closed: closing would end its connections.
        self._use_pool(*self.rebuild())
        self.limiter = anyio.Semaphore(self.max_concurrency)
        self.gate_until = 0.0
        self.triggers_in_flight = {}
        self.loop = None
        self.pid = os.getpid()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owns_http:
            await self.http.aclose()

    def __del__(self) -> None:
        if getattr(self, "owns_http", False) and not getattr(self, "closed", True):
            with contextlib.suppress(Exception):  # at interpreter shutdown warnings may be gone
                warnings.warn(
                    "AsyncSyncClient was garbage-collected without being closed; use "
                    "'async with AsyncSyncClient(...)' or 'await client.aclose()'",
                    ResourceWarning,
                    stacklevel=1,
                    source=self,
                )


def _secret_forms(auth_header: str) -> tuple[str, ...]:
    """Every form of the credential that must never appear in a message."""
    forms = {auth_header}
    scheme, _, token = auth_header.partition(" ")
    if token:
        forms.add(token)
        if scheme.lower() == "basic":
            import base64
            import binascii

            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                forms.add(base64.b64decode(token, validate=True).decode("utf-8"))
    return tuple(sorted((form for form in forms if len(form) >= 4), key=len, reverse=True))


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
        max_concurrency: requests in flight at once (default 10), never above the pool size.
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
    """

    sync: AsyncSyncResource
    """The sync operations."""

    _core: _Core
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
        http_library: HttpLibraryName | None = None,
    ) -> None:
        auth = resolve_auth_header(api_key, auth_header)
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
        library = resolve_library(http_library, http_client=http_client, transport=transport)
        rebuild = None
        if http_client is not None:
            if transport is not None or verify is not None:
                raise ConfigurationError(
                    "transport= and verify= configure the client the SDK builds; "
                    "with http_client= configure your own client instead"
                )
            pool = _pool_size(http_client)
            if pool is not None:
                concurrency = min(concurrency, pool)
            http, own_transport = http_client, None
        elif transport is not None:
            if verify is not None:
                raise ConfigurationError(
                    "verify= configures the SDK's own transport; with transport= set TLS "
                    "options on your transport"
                )
            http = library.lifecycle_client(transport, settings.timeout)
            own_transport = transport
        else:
            rebuild = _pool_factory(library, concurrency, settings.timeout, verify)
            http, own_transport = rebuild()
        headers = {
            "Authorization": auth,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": user_agent(library.name, library.version),
            **extra,
        }
        self._core = _Core(
            library=library,
            http=http,
            transport=own_transport,
            base_url=url,
            auth_header=auth,
            headers=headers,
            max_concurrency=concurrency,
            max_response_size=size_cap,
            hooks=hooks,
            retry_budget=_check_budget(retry_budget),
            rebuild=rebuild,
            requests_per_minute=rate,
        )
        self._settings = settings
        self._init_resources()

    def _init_resources(self) -> None:
        from ._resources.sync import AsyncSyncResource

        self.sync = AsyncSyncResource(self)

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
        copy = object.__new__(AsyncSyncClient)
        copy._core = self._core
        copy._settings = self._settings.with_overrides(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            attempt_timeout=attempt_timeout,
            retry_policy=retry_policy,
            extra_headers=default_headers,
        )
        copy._init_resources()
        return copy

    def pause_bulk_runs(self, *, until: datetime.datetime | None = None) -> None:
        """Hold this client's bulk runs (and its ``with_options`` copies') until
        ``until`` (an aware datetime; None: until :meth:`resume_bulk_runs`).

        Meant for Codat's ``client.rateLimit.reached`` webhook (see
        :func:`codat_commerce_async.webhooks.apply_rate_limit`): while paused, runs take
        no new company; calls in flight finish. Call it on the client's event loop.
        """
        core = self._core
        deadline = None
        if until is not None:
            if until.tzinfo is None or until.utcoffset() is None:
                raise ConfigurationError("until must be an aware datetime (e.g. in UTC)")
            left = (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
            deadline = core.clock() + left
        core.bulk_pause.pause(deadline)

    def resume_bulk_runs(self) -> None:
        """End a :meth:`pause_bulk_runs` now (Codat's ``client.rateLimit.reset``)."""
        self._core.bulk_pause.resume()

    @property
    def bulk_runs_paused(self) -> bool:
        """True while :meth:`pause_bulk_runs` holds this client's bulk runs."""
        return self._core.bulk_pause.paused(self._core.clock())

    @property
    def base_url(self) -> URL:
        """The URL every request goes to (a URL of the client's HTTP library)."""
        core = self._core
        if core.library.module is httpx:
            return core.base_url
        return core.library.module.URL(str(core.base_url))  # type: ignore[no-any-return]

    @property
    def timeout(self) -> Timeout:
        """The timeout of each attempt (a Timeout of the client's HTTP library)."""
        return self._core.library.timeout(self._settings.timeout)

    @property
    def http_library(self) -> HttpLibraryName:
        """The HTTP library this client runs on: ``"httpx"`` or ``"httpx2"``."""
        return self._core.library.name

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
        return self._core.max_concurrency

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` has run."""
        return self._core.closed

    def __repr__(self) -> str:
        return (
            f"AsyncSyncClient(base_url={str(self._core.base_url)!r}, "
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

    # -- the call path -------------------------------------------------------

    async def _call(
        self,
        op: _protocol.Operation[T],
        *,
        idempotency_key: str | None = None,
        settings: CallSettings | None = None,
    ) -> APIResponse[T]:
        """Send ``op`` with retries; return the parsed response or raise a typed error."""
        core = self._core
        core.check_usable()
        call = settings or self._settings
        key = None if op.idempotent else (idempotency_key or _protocol.new_idempotency_key())
        headers = core.headers.copy()
        for name, value in call.extra_headers:
            headers[name] = value
        if key is not None:
            headers["Idempotency-Key"] = key
        request = core.library.request(
            op.method,
            core.url_prefix + op.path,
            headers=headers,
            content=op.body,
            extensions={"timeout": call.timeout.as_dict()},
        )
        clock = core.clock
        started = clock()
        deadline = call.deadline

        def remaining() -> float | None:
            return None if deadline is None else deadline - (clock() - started)

        attempts = 0

        async def attempt() -> APIResponse[T]:
            nonlocal attempts
            attempts += 1
            return await self._attempt(op, request, key, attempts, call, remaining, started)

        if not core.hooks:
            return await self._run_attempts(op, call, attempt, remaining, key, started)
        try:
            result = await self._run_attempts(op, call, attempt, remaining, key, started)
        except BaseException as exc:  # cancellation too: a tracer must close its span
            status = getattr(exc, "status_code", None)
            made = getattr(exc, "attempts", attempts)  # 0 if the deadline passed unsent
            core.emit(self._event("call_finished", op, key, made, started, status, exc))
            raise
        core.emit(self._event("call_finished", op, key, attempts, started, result.status_code))
        return result

    async def _run_attempts(
        self,
        op: _protocol.Operation[T],
        call: CallSettings,
        attempt: Callable[[], Awaitable[APIResponse[T]]],
        remaining: Callable[[], float | None],
        key: str | None,
        started: float,
    ) -> APIResponse[T]:
        budget = self._core.retry_budget
        # Most calls succeed first time: run attempt 1 directly and build the tenacity
        # controller only when a retry may be needed (it costs tens of microseconds).
        try:
            result = await attempt()
        except APIError as exc:
            if call.max_retries == 0 or not is_retryable(exc, attempt=1, idempotent=op.idempotent):
                raise
            first_failure: APIError | None = exc
        else:
            if budget is not None:
                budget.release(0)
            return result

        async def replay_then_attempt() -> APIResponse[T]:
            # tenacity sees the first failure as its attempt 1, so every decision
            # (wait, stop, budget) is made by the same code as for later attempts.
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await attempt()

        account = RetryAccount()
        retrying = build_retrying(
            max_retries=call.max_retries,
            policy=call.retry_policy,
            idempotent=op.idempotent,
            remaining=remaining,
            rand=self._core.random,
            sleep=self._core.sleep,
            before_sleep=self._before_sleep(op, call.max_retries, key, started),
            budget=budget,
            account=account,
        )
        try:
            result = await retrying(replay_then_attempt)
        except APIError as exc:
            if account.refused:
                raise RetryBudgetExhaustedError(
                    "the client's retry budget is empty, so this call was not retried "
                    f"(last error: {type(exc).__name__}: {exc.message})",
                    request=exc.request,
                    idempotency_key=exc.idempotency_key,
                    attempts=exc.attempts,
                ) from exc
            raise
        if budget is not None:
            budget.release(account.paid)
        return result

    def _event(
        self,
        kind: EventKind,
        op: _protocol.Operation[Any],
        key: str | None,
        attempt: int,
        started: float,
        status_code: int | None = None,
        error: BaseException | None = None,
        wait: float | None = None,
    ) -> CallEvent:
        return CallEvent(
            kind=kind,
            method=op.method,
            path=op.path,
            company_id=op.company_id,
            attempt=attempt,
            idempotency_key=key,
            status_code=status_code,
            error=error,
            wait=wait,
            elapsed=self._core.clock() - started,
        )

    def _before_sleep(
        self, op: _protocol.Operation[Any], max_retries: int, key: str | None, started: float
    ) -> Callable[[RetryCallState], None]:
        core = self._core

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if core.hooks:
                status = getattr(exc, "status_code", None)
                core.emit(
                    self._event(
                        "retry_scheduled",
                        op,
                        key,
                        state.attempt_number,
                        started,
                        status,
                        exc,
                        state.upcoming_sleep,
                    )
                )
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "%s %s failed (%s) on attempt %d of %d; retrying in %.2f s",
                    op.method,
                    op.path,
                    type(exc).__name__,
                    state.attempt_number,
                    max_retries + 1,
                    state.upcoming_sleep,
                    extra={
                        "codat_method": op.method,
                        "codat_path": op.path,
                        "codat_attempt": state.attempt_number,
                        "codat_error": type(exc).__name__,
                        "codat_wait": state.upcoming_sleep,
                    },
                )

        return before_sleep

    async def _attempt(
        self,
        op: _protocol.Operation[T],
        request: Request,
        key: str | None,
        number: int,
        call: CallSettings,
        remaining: Callable[[], float | None],
        started: float,
    ) -> APIResponse[T]:
        core = self._core
        await self._wait_at_gate(remaining)
        if core.rate_limiter is not None:
            await self._throttle(core.rate_limiter, request, key, number, call, remaining)
        self._time_limit(call, remaining, request, key, number)  # past the deadline: raise
        # Waiting for an in-flight slot counts against the call's deadline too.
        await self._acquire_slot(call, remaining, request, key, number)
        try:
            # Cancelled while queued (taking a free slot is not a cancellation point):
            # start nothing.
            await anyio.lowlevel.checkpoint_if_cancelled()
            # A 429 may have closed the gate while this attempt queued for a slot: the
            # queued attempts must wait as well, or the gate would only hold new calls.
            await self._wait_at_gate(remaining)
            limit, phase = self._time_limit(call, remaining, request, key, number)
            if core.hooks:
                core.emit(self._event("request_sent", op, key, number, started))
            try:
                response, body = await send_attempt(
                    core.send,
                    request,
                    max_response_size=core.max_response_size,
                    time_limit=limit,
                    limit_phase=phase,
                    secrets=core.secrets,
                    errors=core.library.errors,
                )
            except APIError as exc:
                exc.idempotency_key = key
                exc.attempts = number
                if logger.isEnabledFor(logging.DEBUG):
                    _log_attempt(op, type(exc).__name__, number)
                raise
        finally:
            core.limiter.release()
        status = response.status_code
        if core.hooks:
            core.emit(self._event("response_received", op, key, number, started, status))
        if logger.isEnabledFor(logging.DEBUG):
            _log_attempt(op, status, number)
        if 200 <= status < 300:
            parsed = _protocol.parse_success(
                op.model, response, body, idempotency_key=key, attempts=number
            )
            return APIResponse(response, parsed, number, key)
        error = _protocol.error_for_response(
            response, body, idempotency_key=key, attempts=number, secrets=core.secrets
        )
        if (
            isinstance(error, RateLimitError)
            and error.retry_after
            and error.retry_after <= call.retry_policy.max_retry_after
        ):
            core.gate_until = max(core.gate_until, core.clock() + error.retry_after)
        raise error

    async def _wait_at_gate(self, remaining: Callable[[], float | None]) -> None:
        """Sleep while the client-wide 429 gate is closed (never past the deadline)."""
        core = self._core
        gate = core.gate_until - core.clock()
        if gate > 0:
            # Another call was told to back off: Codat counts our requests per IP.
            left = remaining()
            await core.sleep(gate if left is None else max(0.0, min(gate, left)))

    def _time_limit(
        self,
        call: CallSettings,
        remaining: Callable[[], float | None],
        request: Request,
        key: str | None,
        number: int,
    ) -> tuple[float | None, str]:
        """The wall-clock bound of the attempt about to be sent and its name; raises
        :class:`APITimeoutError` if the call's deadline has already passed."""
        left = remaining()
        limit, phase = call.attempt_timeout, "attempt"
        if left is not None and (limit is None or left < limit):
            limit, phase = left, "deadline"
            if left <= 0:
                raise _deadline_passed(call, request, key, number)
        return limit, phase

    async def _acquire_slot(
        self,
        call: CallSettings,
        remaining: Callable[[], float | None],
        request: Request,
        key: str | None,
        number: int,
    ) -> None:
        """Take an in-flight slot, waiting no longer than the call's deadline allows."""
        limiter = self._core.limiter
        # No acquire_nowait() shortcut: with one, cancelling 20 calls queued on a pool
        # of 10 left httpcore's pool stuck in half the runs of
        # tests/test_hygiene.py::test_cancelling_under_pool_contention (#1093's symptom).
        left = remaining()
        if left is None:
            await limiter.acquire()
            return
        acquired = False
        with anyio.move_on_after(max(0.0, left)):
            await limiter.acquire()
            acquired = True
        if not acquired:
            raise _deadline_passed(call, request, key, number)

    async def _throttle(
        self,
        limiter: RateLimiter,
        request: Request,
        key: str | None,
        number: int,
        call: CallSettings,
        remaining: Callable[[], float | None],
    ) -> None:
        """Take a token from the client-side bucket, or fail at once if waiting for it
        would outlast the call's deadline (the gate is checked again after the slot)."""
        if not await limiter.acquire(max_wait=remaining()):
            raise APITimeoutError(
                f"the client-side rate limit ({limiter.requests_per_minute:g} requests a "
                f"minute) would delay this request past the call deadline of "
                f"{call.deadline:g} s",
                request=request,
                idempotency_key=key,
                attempts=number - 1,
                phase="deadline",
                request_sent=number > 1,
            )


def _deadline_passed(
    call: CallSettings, request: Request, key: str | None, number: int
) -> APITimeoutError:
    """The error for a call whose deadline passed before attempt ``number`` was sent."""
    return APITimeoutError(
        f"the call deadline of {call.deadline:g} s passed",
        request=request,
        idempotency_key=key,
        attempts=number - 1,
        phase="deadline",
        request_sent=number > 1,
    )


def _log_attempt(op: _protocol.Operation[Any], outcome: int | str, attempt: int) -> None:
    logger.debug(
        "%s %s -> %s (attempt %d)",
        op.method,
        op.path,
        outcome,
        attempt,
        extra={
            "codat_method": op.method,
            "codat_path": op.path,
            "codat_outcome": outcome,
            "codat_attempt": attempt,
        },
    )


def _check_budget(budget: RetryBudget | NotGiven | None) -> RetryBudget | None:
    if isinstance(budget, NotGiven):
        return RetryBudget()
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ConfigurationError("retry_budget must be a RetryBudget or None")
    return budget


def _pool_factory(
    library: HttpLibrary,
    concurrency: int,
    timeout: httpx.Timeout,
    verify: ssl.SSLContext | str | os.PathLike[str] | None,
) -> Callable[[], tuple[AsyncClient, AsyncBaseTransport]]:
    """How the SDK builds its own pool (again after a fork): sized to the in-flight
    cap so requests never queue inside httpcore (encode/httpcore#1093)."""
    tls = resolve_verify(verify)

    def build() -> tuple[AsyncClient, AsyncBaseTransport]:
        transport = library.pool_transport(
            verify=tls, max_connections=concurrency, keepalive_expiry=30.0
        )
        return library.lifecycle_client(transport, timeout), transport

    return build
