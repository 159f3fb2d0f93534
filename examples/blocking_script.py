"""Trigger a date-range sync from a plain (blocking) script, e.g. a cron job.

Install and run (nothing beyond the SDK)::

    pip install codat-commerce-async
    CODAT_API_KEY=... python examples/blocking_script.py COMPANY_ID 2024-06-01 2024-06-30
"""

from __future__ import annotations

import sys

from codat_commerce_async import CodatError, SyncClient


def main(company_id: str, start: str, finish: str) -> int:
    with SyncClient() as client:  # reads CODAT_API_KEY / CODAT_BASE_URL
        try:
            summary = client.sync.request_sync_for_date_range(
                company_id, start=start, finish=finish
            )
        except CodatError as exc:
            print(f"failed: {exc}", file=sys.stderr)
            return 1
    window = summary.sync_date_range_utc
    print(
        f"sync {summary.commerce_sync_id}: {window.start if window else '?'} -> "
        f"{window.finish if window else '?'} ({summary.sync_status})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
