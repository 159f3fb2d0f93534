"""``codat-commerce sync request|range|status|wait``: one company at a time."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .._client import AsyncSyncClient
from .._exceptions import SyncWaitTimeoutError
from .._models import CompanySyncStatus, SyncStatus, SyncSummary
from ._main import EXIT_FAILED, EXIT_OK, auth_header, base_url
from ._output import emit, note

__all__ = ["company_status", "date_range", "request", "status", "wait"]

T = TypeVar("T")


def client_for(args: argparse.Namespace, **options: Any) -> AsyncSyncClient:
    """An async client from ``--api-key`` / ``--base-url`` (or the environment)."""
    return AsyncSyncClient(auth_header=auth_header(args), base_url=base_url(args), **options)


def run_with_client(
    args: argparse.Namespace, work: Callable[[AsyncSyncClient], Awaitable[T]], **options: Any
) -> T:
    """Build the client (errors before any loop starts), then run ``work`` on asyncio."""
    client = client_for(args, **options)

    async def main() -> T:
        async with client:
            return await work(client)

    return anyio.run(main)


def summary_record(summary: SyncSummary) -> dict[str, Any]:
    """The fields of a trigger's answer worth showing."""
    window = summary.sync_date_range_utc
    return {
        "company_id": summary.company_id,
        "sync_id": summary.commerce_sync_id,
        "status_code": summary.sync_status_code,
        "status": summary.sync_status,
        "window_start": window.start if window else None,
        "window_finish": window.finish if window else None,
        "sync_utc": summary.sync_utc,
    }


def status_record(status: CompanySyncStatus) -> dict[str, Any]:
    """The fields of a status worth showing."""
    return {
        "company_id": status.company_id,
        "sync_id": status.sync_id,
        "status_code": status.sync_status_code,
        "status": status.sync_status,
        "state": status.state.value if status.state else None,
        "error": status.error_message,
        "sync_utc": status.sync_utc,
        "data_pushed": status.data_pushed,
    }


def request(args: argparse.Namespace) -> int:
    """``sync request COMPANY_ID [--to DATE]``."""

    async def work(client: AsyncSyncClient) -> SyncSummary:
        return await client.sync.request_sync(
            args.company_id, sync_to=args.sync_to, idempotency_key=args.idempotency_key
        )

    summary = run_with_client(args, work)
    emit(summary_record(summary), as_json=args.json, title="sync requested")
    return EXIT_FAILED if summary.failed else EXIT_OK


def date_range(args: argparse.Namespace) -> int:
    """``sync range COMPANY_ID --start DATE --finish DATE``."""

    async def work(client: AsyncSyncClient) -> SyncSummary:
        return await client.sync.request_sync_for_date_range(
            args.company_id,
            start=args.start,
            finish=args.finish,
            idempotency_key=args.idempotency_key,
        )

    summary = run_with_client(args, work)
    emit(summary_record(summary), as_json=args.json, title="sync requested")
    return EXIT_FAILED if summary.failed else EXIT_OK


def status(args: argparse.Namespace) -> int:
    """``sync status COMPANY_ID [SYNC_ID]``: exit 1 when the sync failed."""

    async def work(client: AsyncSyncClient) -> CompanySyncStatus:
        if args.sync_id:
            return await client.sync.get_sync_status(args.company_id, args.sync_id)
        return await client.sync.get_latest_sync(args.company_id)

    found = run_with_client(args, work)
    emit(status_record(found), as_json=args.json, title="sync status")
    return EXIT_FAILED if found.failed else EXIT_OK


def company_status(args: argparse.Namespace) -> int:
    """``sync company-status COMPANY_ID``: exit 1 when the sync failed."""

    async def work(client: AsyncSyncClient) -> SyncStatus:
        return await client.sync.get_status(args.company_id)

    found = run_with_client(args, work)
    record = {
        "company_id": found.company_id,
        "sync_id": found.commerce_sync_id or found.sync_id,
        "status_code": found.sync_status_code,
        "status": found.sync_status,
        "state": found.state.value if found.state else None,
        "error": found.error_message,
        "sync_utc": found.sync_utc,
        "data_pushed": found.data_pushed,
        "connections": ", ".join(
            f"{c.platform_name or c.integration_key} ({c.status})"
            for c in found.data_connections or ()
        ),
    }
    emit(record, as_json=args.json, title="company sync status")
    return EXIT_FAILED if found.failed else EXIT_OK


def wait(args: argparse.Namespace) -> int:
    """``sync wait COMPANY_ID [SYNC_ID]``: exit 0 only when the sync succeeded."""

    async def work(client: AsyncSyncClient) -> CompanySyncStatus:
        return await client.sync.wait_for_sync(
            args.company_id,
            args.sync_id,
            poll_interval=args.poll_interval,
            max_poll_interval=max(args.max_poll_interval, args.poll_interval),
            timeout=args.timeout,
        )

    try:
        final = run_with_client(args, work)
    except SyncWaitTimeoutError as exc:
        if exc.last_status is not None:
            emit(status_record(exc.last_status), as_json=args.json, title="still running")
        raise
    emit(status_record(final), as_json=args.json, title="sync finished")
    if not final.succeeded:
        note(f"the sync failed: {final.error_message or final.sync_status}")
        return EXIT_FAILED
    return EXIT_OK
