"""The original SDK's ``models.operations`` for the two sync triggers.

The responses keep the original's fields. ``raw_response`` is an :class:`httpx.Response`
(the original's was a ``requests.Response``; ``status_code``, ``headers``, ``text`` and
``json()`` work alike). Two fields are new: ``idempotency_key``, the key sent with every
attempt (retry with it to get the original result back, never a second sync), and
``error``, the :class:`~codat_commerce_async.APIStatusError` behind a non-2xx status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._exceptions import APIStatusError
from .shared import SyncRange, SyncSummary, SyncToLatestArgs

if TYPE_CHECKING:
    from ..._types import Response

__all__ = [
    "RequestSyncForDateRangeRequest",
    "RequestSyncForDateRangeResponse",
    "RequestSyncRequest",
    "RequestSyncResponse",
]


@dataclass
class RequestSyncRequest:
    """``request_sync``: the company (a UUID) and, optionally, how far to sync."""

    company_id: str | uuid.UUID
    sync_to_latest_args: SyncToLatestArgs | None = None


@dataclass
class RequestSyncForDateRangeRequest:
    """``request_sync_for_date_range``: the company and the window (required here)."""

    company_id: str | uuid.UUID
    sync_range: SyncRange | None = None


@dataclass
class _SyncResponse:
    content_type: str | None
    """The response's ``Content-Type`` (None if it had none)."""
    status_code: int
    """The HTTP status of the last attempt."""
    raw_response: Response | None = None
    """The HTTP response (an ``httpx.Response``; an ``httpx2.Response`` on httpx2)."""
    sync_summary: SyncSummary | None = None
    """The parsed ``SyncSummary`` on success, otherwise None."""
    idempotency_key: str | None = None
    """New: the ``Idempotency-Key`` sent with every attempt of this call."""
    error: APIStatusError | None = None
    """New: the typed error behind a non-success status (None on success)."""


@dataclass
class RequestSyncResponse(_SyncResponse):
    """What ``request_sync`` returns (it raises only if no HTTP response arrived)."""


@dataclass
class RequestSyncForDateRangeResponse(_SyncResponse):
    """What ``request_sync_for_date_range`` returns (it raises only without a response)."""
