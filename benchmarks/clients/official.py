"""(h) Codat's official ``codat-sync-for-commerce==6.1.0`` (run from benchmarks/.venv-official).

Its async client is an ``httpx.AsyncClient`` we pass in with the same 64-connection pool
as client (a); the Idempotency-Key goes in ``http_headers`` (the SDK has no such option).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from codat_sync_for_commerce import CodatSyncCommerce  # type: ignore[import-not-found]
from codat_sync_for_commerce.models import shared  # type: ignore[import-not-found]

from ._harness import AUTH_HEADER, SYNC_TO, AsyncCall, Options, run_async


@asynccontextmanager
async def open_client(opts: Options) -> AsyncIterator[AsyncCall]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        sdk = CodatSyncCommerce(
            security=shared.Security(auth_header=AUTH_HEADER),
            server_url=opts.url,
            async_client=http,
        )

        async def call(company_id: str) -> bool:
            summary = await sdk.sync.request_async(
                request={"company_id": company_id, "sync_to_latest_args": {"sync_to": SYNC_TO}},
                http_headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            return summary is not None

        yield call


if __name__ == "__main__":
    run_async("official", open_client)
