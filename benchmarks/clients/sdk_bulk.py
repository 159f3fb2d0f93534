"""(bulk) our bulk engine: ``client.sync.request_sync_many`` over a generator of ids.

Measures throughput and peak-RSS growth (peak RSS minus RSS after warm-up) for a
large id stream: 100,000 in the runner's ``bulk`` profile. The run's rate limit is
lifted (``requests_per_minute=None``; the default would be Codat's 900 a minute) and
its concurrency is the profile's. ``sdk_bulk_aiohttp`` runs it over AiohttpTransport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import httpx

from ._harness import (
    API_KEY,
    Options,
    Tally,
    company_ids,
    cpu_seconds,
    max_rss_kb,
    parse_options,
    report,
)
from ._sdk import SYNC_TO


async def _bulk(client: object, ids: Iterable[str], opts: Options, tally: Tally) -> None:
    run = client.sync.request_sync_many(  # type: ignore[attr-defined]
        ids, sync_to=SYNC_TO, concurrency=opts.concurrency, requests_per_minute=None
    )
    async with run as results:
        async for result in results:
            if result.error is not None:
                tally.fail(f"{type(result.error).__name__}: {result.error}")


TransportFactory = Callable[[int], httpx.AsyncBaseTransport]


async def _main(opts: Options, name: str, transport: TransportFactory | None) -> None:
    from codat_commerce_async import AsyncSyncClient

    async with AsyncSyncClient(
        api_key=API_KEY,
        base_url=opts.url,
        max_concurrency=opts.concurrency,
        transport=None if transport is None else transport(opts.concurrency),
    ) as client:
        await _bulk(client, company_ids(opts.warmup), opts, Tally())
        rss0, tally = max_rss_kb(), Tally()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await _bulk(client, company_ids(opts.calls), opts, tally)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    report(name, opts, seconds, cpu, rss0, tally)


def run_bulk(name: str, transport: TransportFactory | None = None) -> None:
    """Entry point: parse the harness options and run one bulk measurement."""
    asyncio.run(_main(parse_options(), name, transport))


if __name__ == "__main__":
    run_bulk("sdk_bulk")
