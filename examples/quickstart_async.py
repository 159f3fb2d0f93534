"""Trigger a sync for one company with the async client.

Install:                pip install codat-commerce-async
Run against Codat:      CODAT_API_KEY=... python examples/quickstart_async.py COMPANY_ID
Run against the fake:   pip install 'codat-commerce-async[cli]', start
                        ``codat-commerce fake-server``, then
                        CODAT_BASE_URL=http://127.0.0.1:8000 CODAT_API_KEY=fake-api-key ...
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone

from codat_commerce_async import APIStatusError, AsyncSyncClient


async def main(company_id: str) -> int:
    async with AsyncSyncClient() as client:  # reads CODAT_API_KEY / CODAT_BASE_URL
        try:
            summary = await client.sync.request_sync(company_id, sync_to=datetime.now(timezone.utc))
        except APIStatusError as exc:
            print(f"Codat refused: {exc}", file=sys.stderr)
            return 1
    print(f"sync {summary.commerce_sync_id} for {summary.company_id}: {summary.sync_status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1])))
