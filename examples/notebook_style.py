"""Jupyter-style use: calls made from code that already runs inside an event loop.

In a notebook cell, IPython runs your code inside its event loop, so ``asyncio.run`` fails
there ("cannot be called from a running event loop"). Two ways that work:

1. ``await`` the async client directly (top-level ``await`` works in a cell)::

       client = AsyncSyncClient()                  # one for the notebook's session
       summary = await client.sync.request_sync(COMPANY_ID)
       ...
       await client.aclose()                       # when done

2. Call the blocking ``SyncClient``: it runs its own loop in a background thread, so it does
   not care that the notebook's loop is running (it does block the cell while it waits)::

       client = SyncClient()
       summary = client.sync.request_sync(COMPANY_ID)
       client.close()

This script shows both from inside a running loop, as a notebook would run them. Install
and run (nothing beyond the SDK)::

    pip install codat-commerce-async
    CODAT_API_KEY=... python examples/notebook_style.py COMPANY_ID
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from codat_commerce_async import AsyncSyncClient, SyncClient, SyncSummary


async def cell_with_await(company_id: str, **client_options: Any) -> SyncSummary:
    """A cell using top-level ``await`` with the async client."""
    async with AsyncSyncClient(**client_options) as client:
        summary = await client.sync.request_sync(company_id)
        latest = await client.sync.get_latest_sync(company_id)
        print(f"[await] {summary.commerce_sync_id}: {latest.sync_status}")
        return summary


def cell_with_blocking_client(company_id: str, **client_options: Any) -> SyncSummary:
    """A cell calling the blocking client, although a loop is running in this thread."""
    asyncio.get_running_loop()  # proves the point: we are inside a running loop
    with SyncClient(**client_options) as client:
        summary = client.sync.request_sync_for_date_range(
            company_id, start="2024-06-01", finish="2024-06-30"
        )
        print(f"[blocking] {summary.commerce_sync_id}: {summary.sync_status}")
        return summary


async def notebook(company_id: str, **client_options: Any) -> list[SyncSummary]:
    """Both cells, run the way a notebook runs them: inside its event loop."""
    first = await cell_with_await(company_id, **client_options)
    second = cell_with_blocking_client(company_id, **client_options)
    return [first, second]


if __name__ == "__main__":
    asyncio.run(notebook(sys.argv[1]))
