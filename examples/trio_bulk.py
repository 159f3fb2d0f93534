"""Trigger syncs for many companies under trio (the SDK runs on anyio: asyncio or trio).

Install (trio is not a dependency of the SDK) and run::

    pip install codat-commerce-async trio
    CODAT_API_KEY=... python examples/trio_bulk.py companies.txt [2024-06-30T00:00:00Z]

``companies.txt`` holds one company id per line. One line per company is printed as each
trigger finishes; the exit status is 1 if any failed. Ctrl-C cancels what is in flight.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import trio

from codat_commerce_async import AsyncSyncClient, BulkResult


def read_ids(lines: Iterable[str]) -> Iterator[str]:
    """Company ids, one per line; blank lines and ``#`` comments are skipped."""
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            yield text


async def trigger_all(
    client: AsyncSyncClient, company_ids: Iterable[str], sync_to: str | None, out: TextIO
) -> list[BulkResult]:
    """Trigger every company's sync; report each outcome as it arrives."""
    outcomes: list[BulkResult] = []
    async with client.sync.request_sync_many(company_ids, sync_to=sync_to) as results:
        async for result in results:
            outcomes.append(result)
            if result.ok:
                print(f"ok     {result.company_id} sync {result.sync_id}", file=out)
            else:
                print(f"failed {result.company_id}: {result.error}", file=out)
    return outcomes


async def main(
    company_ids: Iterable[str],
    sync_to: str | None = None,
    *,
    out: TextIO = sys.stdout,
    **client_options: Any,
) -> int:
    """Run under ``trio.run``; ``client_options`` go to ``AsyncSyncClient`` (default: the
    environment's ``CODAT_API_KEY`` and ``CODAT_BASE_URL``)."""
    async with AsyncSyncClient(**client_options) as client:
        outcomes = await trigger_all(client, company_ids, sync_to, out)
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes) - failed} triggered, {failed} failed", file=out)
    return 1 if failed else 0


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        ids = list(read_ids(handle))
    until = sys.argv[2] if len(sys.argv) > 2 else None
    raise SystemExit(trio.run(functools.partial(main, ids, until)))
