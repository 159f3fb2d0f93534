"""The sync operations, each declared once: trigger a sync, read sync statuses,
wait, and do it in bulk. The async, raw-response and blocking surfaces are derived
from these declarations (see :mod:`._surface`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _bulk, _protocol
from .._bulk import (
    DEFAULT_BULK_CONCURRENCY,
    BulkRun,
    IdempotencyKeys,
    ProgressCallback,
    Waits,
    WaitTarget,
    polls_in_flight,
)
from .._call import Call
from .._config import CallSettings, RetryPolicy
from .._limits import Priority
from .._models import CompanySyncStatus, SyncStatus, SyncSummary
from .._response import APIResponse
from .._types import NOT_GIVEN, CompanyId, DateInput, NotGiven, TimeoutTypes
from .._waiting import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    validate_bulk_poll_settings,
    validate_poll_settings,
    wait_until_terminal,
)
from ._surface import (
    AsyncSurface,
    BlockingRawSurface,
    BlockingSurface,
    LoopCaller,
    RawSurface,
    bulk,
    endpoint,
    method,
)

if TYPE_CHECKING:
    from .._core import Core

__all__ = [
    "AsyncSyncResource",
    "AsyncSyncResourceWithRawResponse",
    "SyncResource",
    "SyncResourceWithRawResponse",
]

T = TypeVar("T")


class SyncAPI:
    """The declarations. ``self`` is always the async resource of a client copy."""

    _core: Core
    _settings: CallSettings

    async def _send(
        self,
        op: _protocol.Operation[T],
        *,
        idempotency_key: str | uuid.UUID | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        priority: Priority = Priority.FOREGROUND,
    ) -> APIResponse[T]:
        key = (
            None if idempotency_key is None else _protocol.validate_idempotency_key(idempotency_key)
        )
        settings = self._settings.with_overrides(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )
        self._core.check_usable()
        call = Call(self._core, op, settings, key, priority)
        if call.key_from_caller:  # a fresh key is nobody else's: nothing to wait for
            return await self._core.same_key.run(call)
        return await call.run()

    @endpoint
    async def request_sync(
        self,
        company_id: CompanyId,
        *,
        sync_to: DateInput | None = None,
        idempotency_key: str | uuid.UUID | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[SyncSummary]:
        """Sync a company from its last successful sync up to ``sync_to`` (or now).

        ``POST /companies/{companyId}/sync/commerce/latest``. ``sync_to`` is an aware
        datetime, a date (midnight UTC) or an ISO-8601 string. One idempotency key
        (yours, or a fresh uuid4) goes with every attempt, so retries never start a
        second sync.
        """
        return await self._send(
            _protocol.request_sync(company_id, sync_to),
            idempotency_key=idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def request_sync_for_date_range(
        self,
        company_id: CompanyId,
        *,
        start: DateInput,
        finish: DateInput,
        idempotency_key: str | uuid.UUID | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[SyncSummary]:
        """Sync a company for the window ``start`` to ``finish``.

        ``POST /meta/companies/{companyId}/sync/commerce/historic``. ``start`` after
        ``finish`` raises ``ValueError`` before anything is sent.
        """
        return await self._send(
            _protocol.request_sync_for_date_range(company_id, start, finish),
            idempotency_key=idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def get_sync_status(
        self,
        company_id: CompanyId,
        sync_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[CompanySyncStatus]:
        """The status of one sync: ``GET .../syncs/{syncId}/status``."""
        op = _protocol.sync_status(company_id, _protocol.canonical_sync_id(sync_id))
        return await self._send(
            op,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def get_latest_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[CompanySyncStatus]:
        """The status of the company's most recent sync: ``GET .../syncs/latest/status``."""
        op = _protocol.sync_status(company_id, "latest")
        return await self._send(
            op,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def get_last_successful_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[CompanySyncStatus]:
        """The status of the last successful sync: ``GET .../syncs/lastSuccessful/status``."""
        op = _protocol.sync_status(company_id, "lastSuccessful")
        return await self._send(
            op,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def list_syncs(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[list[CompanySyncStatus]]:
        """Every sync of the company: ``GET .../syncs/list/status``."""
        op = _protocol.list_syncs(company_id)
        return await self._send(
            op,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    @endpoint
    async def get_status(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[SyncStatus]:
        """The company's sync status with its data connections:
        ``GET /meta/companies/{companyId}/sync/commerce/status`` (``get-sync-status``;
        Codat's SDK calls it ``get_status``). A GET: retried like the other reads."""
        return await self._send(
            _protocol.company_sync_status(company_id),
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )

    # -- waiting --------------------------------------------------------------

    @method
    async def wait_for_sync(
        self,
        company_id: CompanyId,
        sync_id: CompanyId | SyncSummary | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CompanySyncStatus:
        """Poll a sync until it finishes; return its final :class:`CompanySyncStatus`.

        ``sync_id`` is a sync id, the :class:`SyncSummary` a trigger returned, or None
        for the company's latest sync. Check ``.succeeded`` / ``.failed`` on the result.

        Polls start ``poll_interval`` apart (5 s) and grow 1.5x per poll up to
        ``max_poll_interval`` (60 s), each drawn from ``U(interval/2, interval)``. Given
        a summary still in progress, the first poll waits one interval. Every poll goes
        through the client's retries, rate limit and 429 gate; an error that survives
        its retries is raised. After ``timeout`` seconds (1 hour; None for no limit)
        :class:`SyncWaitTimeoutError` is raised with the last status seen.

        The by-id endpoint is polled with ``commerceSyncId``; Codat does not document
        that this id is valid there, so on a 404 the wait falls back to the company's
        latest sync for the rest of the wait.
        """
        poll = validate_poll_settings(poll_interval, max_poll_interval, timeout)
        return await self._with_headers(extra_headers)._wait(company_id, sync_id, poll)

    # -- bulk -----------------------------------------------------------------

    @bulk
    def request_sync_many(
        self,
        company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
        *,
        sync_to: DateInput | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        requests_per_minute: float | NotGiven | None = NOT_GIVEN,
        idempotency_keys: IdempotencyKeys | None = None,
        on_progress: ProgressCallback | None = None,
        wait: bool = False,
        wait_concurrency: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float | None = None,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BulkRun:
        """``request_sync`` for many companies; results arrive in completion order::

            async with client.sync.request_sync_many(ids, sync_to=day) as results:
                async for result in results:      # BulkResult
                    ...

        ``company_ids``: any iterable or async iterable, consumed lazily (memory stays
        bounded by the concurrency, whatever the input's size).

        - ``concurrency``: triggers in flight (10, never above the client's
          ``max_concurrency``). At most one trigger per company is in flight per client:
          a repeated id waits for the first, then is sent too (with a mapping of
          ``idempotency_keys`` it reuses the key, so Codat replays the first answer).
        - ``requests_per_minute``: while the run is active, *every* request of the client
          goes through this token bucket. Default: the client's own limit if it has one,
          else 900 (Codat allows 1,000 a minute per IP); None: no run limit.
        - ``idempotency_keys``: a mapping or function from canonical company id to key
          (None or missing: a fresh uuid4), for runs that can be resumed safely.
        - ``on_progress``: called with a :class:`BulkProgress` at every change (a
          trigger, a sync seen finished, a result).
        - ``wait=True``: also wait for each sync to finish; results then carry the final
          ``status``. Triggers never wait for polls: started syncs go to one poll
          schedule that learns how long this run's syncs take and polls each near its
          expected end, using only the rate the triggers leave (see docs/waiting.md).
          ``poll_interval`` (5 s) is the shortest gap between two polls of a sync,
          ``max_poll_interval`` the longest (None: the schedule decides), and
          ``wait_timeout`` (1 hour from the trigger) ends a wait with
          :class:`SyncWaitTimeoutError` once a poll after it still finds it running.
          ``wait_concurrency`` is deprecated: it bounds only the polls in flight.
        - ``extra_headers``: added to every request of the run (validated first).

        One company's failure never stops the others: it is a result with ``error``.
        Other per-call settings come from the client (use ``client.with_options(...)``).
        """
        payload = _protocol.sync_to_payload(sync_to)
        owner = self._with_headers(extra_headers)
        return owner._trigger_run(
            company_ids,
            lambda company: _protocol.trigger_latest(company, payload),
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            idempotency_keys=idempotency_keys,
            on_progress=on_progress,
            waits=owner._waits(
                wait,
                concurrency,
                wait_concurrency,
                (poll_interval, max_poll_interval, wait_timeout),
            ),
        )

    @bulk
    def request_sync_for_date_range_many(
        self,
        company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
        *,
        start: DateInput,
        finish: DateInput,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        requests_per_minute: float | NotGiven | None = NOT_GIVEN,
        idempotency_keys: IdempotencyKeys | None = None,
        on_progress: ProgressCallback | None = None,
        wait: bool = False,
        wait_concurrency: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float | None = None,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BulkRun:
        """``request_sync_for_date_range`` for many companies: the same window for each.

        Works like :meth:`request_sync_many` (same options, same results); a bad window
        raises ``ValueError`` here, before anything is sent.
        """
        payload = _protocol.date_range_payload(start, finish)
        owner = self._with_headers(extra_headers)
        return owner._trigger_run(
            company_ids,
            lambda company: _protocol.trigger_historic(company, payload),
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            idempotency_keys=idempotency_keys,
            on_progress=on_progress,
            waits=owner._waits(
                wait,
                concurrency,
                wait_concurrency,
                (poll_interval, max_poll_interval, wait_timeout),
            ),
        )

    @bulk
    def wait_for_many(
        self,
        syncs: Iterable[WaitTarget] | AsyncIterable[WaitTarget],
        *,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        requests_per_minute: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float | None = None,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BulkRun:
        """:meth:`wait_for_sync` for many syncs; final statuses in completion order.

        Each item is a :class:`BulkResult` (failed triggers pass straight through), a
        :class:`SyncSummary`, a ``(company_id, sync_id_or_summary)`` pair, or a company
        id (its latest sync). Results carry ``status`` (the last one seen on a timeout,
        with a :class:`SyncWaitTimeoutError`). Any number of syncs is waited for at
        once, from one poll schedule (as with ``request_sync_many(..., wait=True)``);
        ``concurrency`` bounds the status polls in flight (10), and
        ``requests_per_minute`` works as in :meth:`request_sync_many`.
        """
        owner = self._with_headers(extra_headers)
        waits = owner._waits(True, concurrency, None, (poll_interval, max_poll_interval, timeout))
        assert waits is not None
        return _bulk.wait_run(
            syncs,
            limits=self._core.limits,
            on_enter=self._core.check_usable,
            requests_per_minute=requests_per_minute,
            on_progress=on_progress,
            waits=waits,
        )

    def _trigger_run(
        self,
        company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
        build: Any,
        **options: Any,
    ) -> BulkRun:
        async def send(company: str, key: str) -> APIResponse[SyncSummary]:
            return await self._send(build(company), idempotency_key=key)

        return _bulk.trigger_run(
            company_ids,
            send,
            limits=self._core.limits,
            on_enter=self._core.check_usable,
            max_concurrency=self._core.limits.max_concurrency,
            **options,
        )

    def _with_headers(self, extra_headers: Mapping[str, str] | None) -> SyncAPI:
        """This resource, or one whose calls send ``extra_headers`` too (validated
        here, before any I/O)."""
        if extra_headers is None:
            return self
        return AsyncSyncResource(
            self._core, self._settings.with_overrides(extra_headers=extra_headers)
        )

    def _waits(
        self,
        wait: bool,
        concurrency: int,
        wait_concurrency: int | None,
        poll: tuple[float, float | None, float | None],
    ) -> Waits | None:
        """How a bulk run waits (None: it does not), validated before any I/O."""
        if not wait:
            return None
        settings = validate_bulk_poll_settings(*poll)
        in_flight = polls_in_flight(
            concurrency, wait_concurrency, self._core.limits.max_concurrency
        )

        async def poll_once(company: str, sync_id: str | None) -> CompanySyncStatus:
            op = _protocol.sync_status(company, "latest" if sync_id is None else sync_id)
            return (await self._send(op, priority=Priority.BACKGROUND)).parsed

        return Waits(poll_once, settings, in_flight, self._core.clock)

    async def _wait(
        self,
        company_id: CompanyId,
        sync_id: CompanyId | SyncSummary | None,
        poll: tuple[float, float, float | None],
    ) -> CompanySyncStatus:
        """``wait_for_sync`` with validated poll settings."""
        first, cap, limit = poll
        company = _protocol.canonical_company_id(company_id)
        sleep_first = False
        if isinstance(sync_id, SyncSummary):
            sleep_first = sync_id.is_in_progress
            sync_id = sync_id.commerce_sync_id
        sync = None if sync_id is None else _protocol.canonical_sync_id(sync_id)

        async def by_id(which: str) -> CompanySyncStatus:
            return (await self._send(_protocol.sync_status(company, which))).parsed

        async def latest() -> CompanySyncStatus:
            return (await self._send(_protocol.sync_status(company, "latest"))).parsed

        clock = self._core.clock
        return await wait_until_terminal(
            company_id=company,
            sync_id=sync,
            by_id=by_id,
            latest=latest,
            poll_interval=first,
            max_poll_interval=cap,
            timeout=limit,
            sleep_first=sleep_first,
            clock=clock.now,
            sleep=clock.sleep,
            rand=self._core.jitter,
        )


class AsyncSyncResource(SyncAPI, AsyncSurface):
    """``client.sync``: request syncs and read their status.

    Every method validates its input before any I/O (a bad company id or date
    raises ``ValueError`` with nothing sent) and takes per-call overrides:
    ``timeout``, ``max_retries``, ``deadline``, ``retry_policy``, ``extra_headers`` and, for the
    two POSTs, ``idempotency_key``. ``extra_headers`` are checked as the
    constructor's ``default_headers`` are: ``Authorization`` and
    ``Idempotency-Key`` cannot be set this way (use ``idempotency_key=``).

    The HTTP calls are declared once, returning an :class:`APIResponse`; here they
    return its model (``.parsed``), and on ``with_raw_response`` the response itself.
    """

    def __init__(self, core: Core, settings: CallSettings) -> None:
        self._core = core
        self._settings = settings

    @cached_property
    def with_raw_response(self) -> AsyncSyncResourceWithRawResponse:
        """The same methods, returning an :class:`APIResponse` (HTTP response, attempts,
        idempotency key and the parsed model)."""
        return AsyncSyncResourceWithRawResponse(self)


class AsyncSyncResourceWithRawResponse(SyncAPI, RawSurface):
    """``client.sync.with_raw_response``: each method returns an :class:`APIResponse`."""

    def __init__(self, target: AsyncSyncResource) -> None:
        self._target = target


class SyncResource(SyncAPI, BlockingSurface):
    """``client.sync`` of the blocking client: the same methods as the async one."""

    def __init__(self, loop: LoopCaller, target: AsyncSyncResource) -> None:
        self._loop = loop
        self._target = target

    @cached_property
    def with_raw_response(self) -> SyncResourceWithRawResponse:
        """The same methods, returning an :class:`APIResponse`."""
        return SyncResourceWithRawResponse(self._loop, self._target)


class SyncResourceWithRawResponse(SyncAPI, BlockingRawSurface):
    """``client.sync.with_raw_response`` of the blocking client."""

    def __init__(self, loop: LoopCaller, target: AsyncSyncResource) -> None:
        self._loop = loop
        self._target = target
