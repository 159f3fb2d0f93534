"""The sync operations: trigger a sync and read sync statuses."""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _protocol
from .._config import RetryPolicy
from .._models import CompanySyncStatus, SyncSummary
from .._types import NOT_GIVEN, CompanyId, DateInput, NotGiven, TimeoutTypes
from ._wrap import raw_twin

if TYPE_CHECKING:
    from .._client import AsyncSyncClient

__all__ = ["AsyncSyncResource", "AsyncSyncResourceWithRawResponse"]

T = TypeVar("T")


class AsyncSyncResource:
    """``client.sync``: request syncs and read their status.

    Every method validates its input before any I/O (a bad company id or date
    raises ``ValueError`` with nothing sent) and takes per-call overrides:
    ``timeout``, ``max_retries``, ``deadline`` and, for the two POSTs,
    ``idempotency_key``.
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
        *,
        idempotency_key: str | uuid.UUID | None,
        timeout: TimeoutTypes | NotGiven,
        max_retries: int | NotGiven,
        deadline: float | NotGiven | None,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
    ) -> Any:
        client = self._client
        key = (
            None if idempotency_key is None else _protocol.validate_idempotency_key(idempotency_key)
        )
        settings = client._settings.with_overrides(
            timeout=timeout, max_retries=max_retries, deadline=deadline, retry_policy=retry_policy
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
    ) -> SyncSummary:
        """Sync a company from its last successful sync up to ``sync_to`` (or now).

        ``POST /companies/{companyId}/sync/commerce/latest``. ``sync_to`` is an aware
        datetime, a date (midnight UTC) or an ISO-8601 string. One idempotency key
        (yours, or a fresh uuid4) goes with every attempt, so retries never start a
        second sync.
        """
        op = _protocol.request_sync(company_id, sync_to)
        result: SyncSummary = await self._run(
            op,
            idempotency_key=idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
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
    ) -> SyncSummary:
        """Sync a company for the window ``start`` to ``finish``.

        ``POST /meta/companies/{companyId}/sync/commerce/historic``. ``start`` after
        ``finish`` raises ``ValueError`` before anything is sent.
        """
        op = _protocol.request_sync_for_date_range(company_id, start, finish)
        result: SyncSummary = await self._run(
            op,
            idempotency_key=idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
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
    ) -> CompanySyncStatus:
        """The status of one sync: ``GET .../syncs/{syncId}/status``."""
        op = _protocol.sync_status(company_id, _protocol.canonical_sync_id(sync_id))
        result: CompanySyncStatus = await self._run(
            op, idempotency_key=None, timeout=timeout, max_retries=max_retries, deadline=deadline
        )
        return result

    async def get_latest_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
    ) -> CompanySyncStatus:
        """The status of the company's most recent sync: ``GET .../syncs/latest/status``."""
        op = _protocol.sync_status(company_id, "latest")
        result: CompanySyncStatus = await self._run(
            op, idempotency_key=None, timeout=timeout, max_retries=max_retries, deadline=deadline
        )
        return result

    async def get_last_successful_sync(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
    ) -> CompanySyncStatus:
        """The status of the last successful sync: ``GET .../syncs/lastSuccessful/status``."""
        op = _protocol.sync_status(company_id, "lastSuccessful")
        result: CompanySyncStatus = await self._run(
            op, idempotency_key=None, timeout=timeout, max_retries=max_retries, deadline=deadline
        )
        return result

    async def list_syncs(
        self,
        company_id: CompanyId,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
    ) -> list[CompanySyncStatus]:
        """Every sync of the company: ``GET .../syncs/list/status``."""
        op = _protocol.list_syncs(company_id)
        result: list[CompanySyncStatus] = await self._run(
            op, idempotency_key=None, timeout=timeout, max_retries=max_retries, deadline=deadline
        )
        return result


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
