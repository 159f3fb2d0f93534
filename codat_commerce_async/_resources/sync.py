"""The sync operations: trigger a sync, read sync statuses, wait, and do it in bulk."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sized
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _protocol
from .._bulk import (
    DEFAULT_BULK_CONCURRENCY,
    DEFAULT_WAIT_CONCURRENCY,
    BulkResult,
    BulkRun,
    IdempotencyKeys,
    ProgressCallback,
    key_for,
    label,
    one_trigger_per_company,
    trigger_slots,
)
from .._config import RetryPolicy, positive_int
from .._exceptions import CodatError, SyncWaitTimeoutError
from .._models import CompanySyncStatus, SyncStatus, SyncSummary
from .._ratelimit import validate_rate
from .._response import APIResponse
from .._types import NOT_GIVEN, CompanyId, DateInput, NotGiven, TimeoutTypes
from .._waiting import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    validate_poll_settings,
    wait_until_terminal,
)
from ._wrap import raw_twin

if TYPE_CHECKING:
    from .._client import AsyncSyncClient

__all__ = ["AsyncSyncResource", "AsyncSyncResourceWithRawResponse"]

T = TypeVar("T")

#: Validates the dates of a bulk run before any I/O (the id itself is never sent).
_PROBE_COMPANY = "00000000-0000-0000-0000-000000000000"

#: What ``wait_for_many`` accepts for one sync.
WaitTarget = (
    BulkResult | SyncSummary | tuple[CompanyId, "CompanyId | SyncSummary | None"] | CompanyId
)


class AsyncSyncResource:
    """``client.sync``: request syncs and read their status.

    Every method validates its input before any I/O (a bad company id or date
    raises ``ValueError`` with nothing sent) and takes per-call overrides:
    ``timeout``, ``max_retries``, ``deadline``, ``extra_headers`` and, for the
    two POSTs, ``idempotency_key``. ``extra_headers`` are checked as the
    constructor's ``default_headers`` are: ``Authorization`` and
    ``Idempotency-Key`` cannot be set this way (use ``idempotency_key=``).
    """

    def __init__(self, client: AsyncSyncClient, *, raw: bool = False) -> None:
        self._client = client
        self._raw = raw

    @cached_property
    def with_raw_response(self) -> AsyncSyncResourceWithRawResponse:
        """The same methods, returning an :class:`APIResponse` (HTTP response, attempts,
        idempotency key and the parsed model)."""
        return AsyncSyncResourceWithRawResponse(self._client)

    async def _run(
        self,
        op: _protocol.Operation[T],
        timeout: TimeoutTypes | NotGiven,
        max_retries: int | NotGiven,
        deadline: float | NotGiven | None,
        extra_headers: Mapping[str, str] | None,
        *,
        idempotency_key: str | uuid.UUID | None = None,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
    ) -> Any:
        client = self._client
        key = (
            None if idempotency_key is None else _protocol.validate_idempotency_key(idempotency_key)
        )
        settings = client._settings.with_overrides(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry_policy=retry_policy,
            extra_headers=extra_headers,
        )
        response = await client._call(op, idempotency_key=key, settings=settings)
        return response if self._raw else response.parsed

    async def request_sync(
        self,
        company_id: CompanyId,
        *,
        sync_to: DateInput | None = None,
        idempotency_key: str | uuid.UUID | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> SyncSummary:
        """Sync a company from its last successful sync up to ``sync_to`` (or now).

        ``POST /companies/{companyId}/sync/commerce/latest``. ``sync_to`` is an aware
        datetime, a date (midnight UTC) or an ISO-8601 string. One idempotency key
        (yours, or a fresh uuid4) goes with every attempt, so retries never start a
        second sync.
        """
        op = _protocol.request_sync(company_id, sync_to)
        result: SyncSummary = await self._run(
            op, timeout, max_retries, deadline, extra_headers, idempotency_key=idempotency_key
        )
        return result

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
        extra_headers: Mapping[str, str] | None = None,
    ) -> SyncSummary:
        """Sync a company for the window ``start`` to ``finish``.

        ``POST /meta/companies/{companyId}/sync/commerce/historic``. ``start`` after
        ``finish`` raises ``ValueError`` before anything is sent.
        """
        op = _protocol.request_sync_for_date_range(company_id, start, finish)
        result: SyncSummary = await self._run(
            op, timeout, max_retries, deadline, extra_headers, idempotency_key=idempotency_key
        )
        return result

    async def get_sync_status(
        self,
        company_id: CompanyId,
        sync_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CompanySyncStatus:
        """The status of one sync: ``GET .../syncs/{syncId}/status``."""
        op = _protocol.sync_status(company_id, _protocol.canonical_sync_id(sync_id))
        result: CompanySyncStatus = await self._run(
            op, timeout, max_retries, deadline, extra_headers
        )
        return result

    async def get_latest_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CompanySyncStatus:
        """The status of the company's most recent sync: ``GET .../syncs/latest/status``."""
        op = _protocol.sync_status(company_id, "latest")
        result: CompanySyncStatus = await self._run(
            op, timeout, max_retries, deadline, extra_headers
        )
        return result

    async def get_last_successful_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CompanySyncStatus:
        """The status of the last successful sync: ``GET .../syncs/lastSuccessful/status``."""
        op = _protocol.sync_status(company_id, "lastSuccessful")
        result: CompanySyncStatus = await self._run(
            op, timeout, max_retries, deadline, extra_headers
        )
        return result

    async def list_syncs(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> list[CompanySyncStatus]:
        """Every sync of the company: ``GET .../syncs/list/status``."""
        op = _protocol.list_syncs(company_id)
        result: list[CompanySyncStatus] = await self._run(
            op, timeout, max_retries, deadline, extra_headers
        )
        return result

    async def get_status(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> SyncStatus:
        """The company's sync status with its data connections:
        ``GET /meta/companies/{companyId}/sync/commerce/status`` (``get-sync-status``;
        Codat's SDK calls it ``get_status``). A GET: retried like the other reads."""
        op = _protocol.company_sync_status(company_id)
        result: SyncStatus = await self._run(op, timeout, max_retries, deadline, extra_headers)
        return result

    # -- waiting --------------------------------------------------------------

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
        first, cap, limit = validate_poll_settings(poll_interval, max_poll_interval, timeout)
        company = _protocol.canonical_company_id(company_id)
        sleep_first = False
        if isinstance(sync_id, SyncSummary):
            sleep_first = sync_id.is_in_progress
            sync_id = sync_id.commerce_sync_id
        sync = None if sync_id is None else _protocol.canonical_sync_id(sync_id)
        reader = AsyncSyncResource(self._client)._with_headers(extra_headers)
        core = self._client._core

        async def by_id(which: str) -> CompanySyncStatus:
            return await reader.get_sync_status(company, which)

        async def latest() -> CompanySyncStatus:
            return await reader.get_latest_sync(company)

        return await wait_until_terminal(
            company_id=company,
            sync_id=sync,
            by_id=by_id,
            latest=latest,
            poll_interval=first,
            max_poll_interval=cap,
            timeout=limit,
            sleep_first=sleep_first,
            clock=core.clock,
            sleep=core.sleep,
            rand=core.random,
        )

    # -- bulk -----------------------------------------------------------------

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
        wait_concurrency: int = DEFAULT_WAIT_CONCURRENCY,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
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
        - ``on_progress``: called with a :class:`BulkProgress` after each result.
        - ``wait=True``: also wait for each sync to finish (``wait_for_sync`` with
          ``poll_interval``, ``max_poll_interval`` and ``wait_timeout``), up to
          ``wait_concurrency`` at once; results then carry the final ``status``.

        - ``extra_headers``: added to every request of the run (validated first).

        One company's failure never stops the others: it is a result with ``error``.
        Other per-call settings come from the client (use ``client.with_options(...)``).
        """
        _protocol.request_sync(_PROBE_COMPANY, sync_to)
        owner = self._with_headers(extra_headers)
        client = owner._client

        async def send(company: str, key: str) -> APIResponse[SyncSummary]:
            return await client._call(_protocol.request_sync(company, sync_to), idempotency_key=key)

        return owner._trigger_run(
            company_ids,
            send,
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            idempotency_keys=idempotency_keys,
            on_progress=on_progress,
            wait=wait,
            wait_concurrency=wait_concurrency,
            poll=(poll_interval, max_poll_interval, wait_timeout),
        )

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
        wait_concurrency: int = DEFAULT_WAIT_CONCURRENCY,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BulkRun:
        """``request_sync_for_date_range`` for many companies: the same window for each.

        Works like :meth:`request_sync_many` (same options, same results); a bad window
        raises ``ValueError`` here, before anything is sent.
        """
        _protocol.request_sync_for_date_range(_PROBE_COMPANY, start, finish)
        owner = self._with_headers(extra_headers)
        client = owner._client

        async def send(company: str, key: str) -> APIResponse[SyncSummary]:
            op = _protocol.request_sync_for_date_range(company, start, finish)
            return await client._call(op, idempotency_key=key)

        return owner._trigger_run(
            company_ids,
            send,
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            idempotency_keys=idempotency_keys,
            on_progress=on_progress,
            wait=wait,
            wait_concurrency=wait_concurrency,
            poll=(poll_interval, max_poll_interval, wait_timeout),
        )

    def wait_for_many(
        self,
        syncs: Iterable[WaitTarget] | AsyncIterable[WaitTarget],
        *,
        concurrency: int = DEFAULT_WAIT_CONCURRENCY,
        requests_per_minute: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BulkRun:
        """:meth:`wait_for_sync` for many syncs; final statuses in completion order.

        Each item is a :class:`BulkResult` (failed triggers pass straight through), a
        :class:`SyncSummary`, a ``(company_id, sync_id_or_summary)`` pair, or a company
        id (its latest sync). Results carry ``status`` (the last one seen on a timeout,
        with a :class:`SyncWaitTimeoutError`). ``concurrency`` bounds the waits; their
        polls share the client's in-flight cap, and ``requests_per_minute`` works as
        in :meth:`request_sync_many`.
        """
        poll = validate_poll_settings(poll_interval, max_poll_interval, timeout)
        workers = positive_int("concurrency", concurrency)
        owner = self._with_headers(extra_headers)

        def make_job() -> Callable[[Any], Awaitable[BulkResult]]:
            async def job(item: Any) -> BulkResult:
                try:
                    base, target = _wait_target(item)
                except ValueError as exc:
                    return BulkResult(company_id=label(item), error=exc)
                if base.error is not None:
                    return base
                return await owner._wait_result(base, target, poll)

            return job

        return owner._bulk_run(syncs, make_job, workers, requests_per_minute, on_progress)

    def _with_headers(self, extra_headers: Mapping[str, str] | None) -> AsyncSyncResource:
        """This resource, or one on a client copy sending ``extra_headers`` too
        (validated here, before any I/O)."""
        if extra_headers is None:
            return self
        return AsyncSyncResource(self._client.with_options(default_headers=extra_headers))

    def _bulk_run(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        make_job: Callable[[], Callable[[Any], Awaitable[BulkResult]]],
        workers: int,
        requests_per_minute: float | NotGiven | None,
        on_progress: ProgressCallback | None,
    ) -> BulkRun:
        if isinstance(items, (str, bytes)):
            raise TypeError("pass an iterable of company ids, not a single string")
        if not isinstance(items, (Iterable, AsyncIterable)):
            raise TypeError(f"expected an iterable or async iterable, got {type(items).__name__}")
        rate = (
            requests_per_minute
            if isinstance(requests_per_minute, NotGiven)
            else validate_rate("requests_per_minute", requests_per_minute)
        )
        return BulkRun(
            self._client._core,
            items,
            make_job=make_job,
            workers=workers,
            requests_per_minute=rate,
            on_progress=on_progress,
            total=len(items) if isinstance(items, Sized) else None,
        )

    def _trigger_run(
        self,
        company_ids: Iterable[CompanyId] | AsyncIterable[CompanyId],
        send: Callable[[str, str], Awaitable[APIResponse[SyncSummary]]],
        *,
        concurrency: int,
        requests_per_minute: float | NotGiven | None,
        idempotency_keys: IdempotencyKeys | None,
        on_progress: ProgressCallback | None,
        wait: bool,
        wait_concurrency: int,
        poll: tuple[float, float, float | None],
    ) -> BulkRun:
        core = self._client._core
        triggers = min(positive_int("concurrency", concurrency), core.max_concurrency)
        settings = validate_poll_settings(*poll) if wait else poll
        workers = positive_int("wait_concurrency", wait_concurrency) if wait else triggers

        def make_job() -> Callable[[Any], Awaitable[BulkResult]]:
            # Waiting runs have more workers than trigger slots: a worker holds a slot
            # only while its trigger is in flight, then waits for the sync without it.
            slots = trigger_slots(triggers) if wait else None

            async def job(item: Any) -> BulkResult:
                try:
                    company = _protocol.canonical_company_id(item)
                except ValueError as exc:
                    return BulkResult(company_id=label(item), error=exc)
                try:
                    key = key_for(idempotency_keys, company)
                except ValueError as exc:
                    return BulkResult(company_id=company, error=exc)
                try:
                    async with one_trigger_per_company(core, company):
                        if slots is None:
                            response = await send(company, key)
                        else:
                            async with slots:
                                response = await send(company, key)
                except CodatError as exc:
                    attempts = getattr(exc, "attempts", 0)
                    return BulkResult(company, error=exc, attempts=attempts, idempotency_key=key)
                result = BulkResult(
                    company,
                    summary=response.parsed,
                    attempts=response.attempts,
                    idempotency_key=key,
                )
                if not wait:
                    return result
                return await self._wait_result(result, response.parsed, settings)

            return job

        return self._bulk_run(company_ids, make_job, workers, requests_per_minute, on_progress)

    async def _wait_result(
        self,
        base: BulkResult,
        target: CompanyId | SyncSummary | None,
        poll: tuple[float, float, float | None],
    ) -> BulkResult:
        interval, cap, timeout = poll
        try:
            status = await self.wait_for_sync(
                base.company_id,
                target,
                poll_interval=interval,
                max_poll_interval=cap,
                timeout=timeout,
            )
        except SyncWaitTimeoutError as exc:
            return dataclasses.replace(base, error=exc, status=exc.last_status)
        except (CodatError, ValueError) as exc:
            return dataclasses.replace(base, error=exc)
        return dataclasses.replace(base, status=status)


def _wait_target(item: Any) -> tuple[BulkResult, CompanyId | SyncSummary | None]:
    """What to wait for: the result to extend and the sync (summary, id or None)."""
    if isinstance(item, BulkResult):
        return item, item.summary
    if isinstance(item, SyncSummary):
        if not item.company_id:
            raise ValueError("this SyncSummary has no companyId; pass (company_id, summary)")
        company = _protocol.canonical_company_id(item.company_id)
        return BulkResult(company, summary=item), item
    if isinstance(item, tuple) and len(item) == 2:
        company = _protocol.canonical_company_id(item[0])
        summary = item[1] if isinstance(item[1], SyncSummary) else None
        return BulkResult(company, summary=summary), item[1]
    return BulkResult(_protocol.canonical_company_id(item)), None


class AsyncSyncResourceWithRawResponse:
    """``client.sync.with_raw_response``: each method returns an :class:`APIResponse`."""

    def __init__(self, client: AsyncSyncClient) -> None:
        self._target = AsyncSyncResource(client, raw=True)

    request_sync = raw_twin(AsyncSyncResource.request_sync)
    request_sync_for_date_range = raw_twin(AsyncSyncResource.request_sync_for_date_range)
    get_sync_status = raw_twin(AsyncSyncResource.get_sync_status)
    get_latest_sync = raw_twin(AsyncSyncResource.get_latest_sync)
    get_last_successful_sync = raw_twin(AsyncSyncResource.get_last_successful_sync)
    list_syncs = raw_twin(AsyncSyncResource.list_syncs)
    get_status = raw_twin(AsyncSyncResource.get_status)
