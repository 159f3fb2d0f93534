"""AsyncSyncClient over AiohttpTransport: the SDK sees httpx behaviour end to end."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from datetime import datetime, timezone

import pytest

from codat_commerce_async import APITimeoutError, APITLSError, AsyncSyncClient, SyncSummary
from codat_commerce_async.transports import AiohttpTransport

from .._http import httpx
from .._sockets import MisbehavingServer

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # aiohttp runs on asyncio

COMPANY = "f4637ec9-9fc0-4a02-8df0-c90d6dc86208"


async def test_request_sync_round_trip(server: MisbehavingServer) -> None:
    async with AsyncSyncClient(
        api_key="k", base_url=server.url, transport=AiohttpTransport()
    ) as client:
        summary = await client.sync.request_sync(
            COMPANY, sync_to=datetime(2024, 6, 30, tzinfo=timezone.utc)
        )
    assert isinstance(summary, SyncSummary)
    received = server.seen[0]
    assert received.path == f"/companies/{COMPANY}/sync/commerce/latest"
    headers = {name.lower(): value for name, value in received.raw_headers}
    uuid.UUID(headers["idempotency-key"])
    assert headers["authorization"].startswith("Basic ")
    assert b"2024-06-30" in received.body


async def test_read_timeout_becomes_sdk_timeout(server: MisbehavingServer) -> None:
    async with AsyncSyncClient(
        api_key="k",
        base_url=server.url + "/hang",
        transport=AiohttpTransport(),
        timeout=httpx.Timeout(5.0, read=0.2),
        max_retries=0,
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.sync.request_sync(COMPANY)


async def test_untrusted_certificate_becomes_tls_error() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    tls_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = tls_server.sockets[0].getsockname()[1]
    try:
        async with AsyncSyncClient(
            api_key="k",
            base_url=f"https://127.0.0.1:{port}",
            transport=AiohttpTransport(),
            max_retries=0,
        ) as client:
            with pytest.raises(APITLSError):
                await client.sync.request_sync(COMPANY)
    finally:
        tls_server.close()
        await tls_server.wait_closed()
