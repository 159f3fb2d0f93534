"""Our ``AsyncSyncClient`` / ``SyncClient`` as benchmark clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone

import httpx

from ._harness import API_KEY, AsyncCall, AsyncFactory, BlockingCall, Options

SYNC_TO = datetime(2024, 6, 30, tzinfo=timezone.utc)
# The SDK's default of 2 retries loses ~0.3% of calls when 15% of answers fail;
# the flaky profile checks that enough retries end with zero failures.
FLAKY_RETRIES = 8


def retry_policy() -> object:
    """``CODAT_BENCH_BACKOFF_BASE=0.05`` runs our clients with a smaller backoff base, to
    show how much of the flaky profile's cost is the (deliberate) 503 backoff."""
    from codat_commerce_async import RetryPolicy

    base = os.environ.get("CODAT_BENCH_BACKOFF_BASE")
    return RetryPolicy() if base is None else RetryPolicy(backoff_base=float(base))


def retries(opts: Options) -> int:
    from codat_commerce_async import DEFAULT_MAX_RETRIES

    return FLAKY_RETRIES if opts.mode == "flaky" else DEFAULT_MAX_RETRIES


def async_factory(
    transport: Callable[[int], httpx.AsyncBaseTransport] | None = None,
    *,
    size_to_load: bool = False,
    http_library: str | None = None,
) -> AsyncFactory:
    """``AsyncSyncClient`` as a user would configure it.

    With the default httpx transport the client keeps its default in-flight cap (the
    64 workers queue inside the SDK); with ``transport(concurrency)`` (the aiohttp
    transport) or ``size_to_load=True`` the cap is raised to the number of workers.
    ``CODAT_BENCH_MAX_CONCURRENCY=N`` sets the cap instead (to measure pool sizing).
    ``http_library`` is passed to the client (``"httpx2"``: the SDK on httpx2).
    """

    @asynccontextmanager
    async def open_client(opts: Options) -> AsyncIterator[AsyncCall]:
        from codat_commerce_async import AsyncSyncClient

        sized = transport is not None or size_to_load
        extra: dict[str, object] = {"max_concurrency": opts.concurrency} if sized else {}
        cap = os.environ.get("CODAT_BENCH_MAX_CONCURRENCY")
        if cap:
            extra["max_concurrency"] = int(cap)
        if http_library is not None:
            extra["http_library"] = http_library
        async with AsyncSyncClient(
            api_key=API_KEY,
            base_url=opts.url,
            max_retries=retries(opts),
            retry_policy=retry_policy(),  # type: ignore[arg-type]
            transport=None if transport is None else transport(opts.concurrency),
            **extra,  # type: ignore[arg-type]
        ) as client:

            async def call(company_id: str) -> bool:
                await client.sync.request_sync(company_id, sync_to=SYNC_TO)
                return True

            yield call

    return open_client


@contextmanager
def open_blocking(opts: Options) -> Iterator[BlockingCall]:
    """``SyncClient``: one call at a time."""
    from codat_commerce_async import SyncClient

    with SyncClient(
        api_key=API_KEY,
        base_url=opts.url,
        max_retries=retries(opts),
        retry_policy=retry_policy(),  # type: ignore[arg-type]
    ) as client:

        def call(company_id: str) -> bool:
            client.sync.request_sync(company_id, sync_to=SYNC_TO)
            return True

        yield call
