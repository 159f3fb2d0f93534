"""The original SDK's ``models.shared`` names used by the sync operations.

Request models are dataclasses with the original's fields (in the original's order, so
positional use keeps working). Response models are this SDK's pydantic models, which have
the same snake_case attributes; the original's ``to_dict()``/``to_json()`` become
``model_dump(by_alias=True)``/``model_dump_json(by_alias=True)``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import Enum

from ..._models import Connection, DataConnectionError, SyncDateRange, SyncSummary

__all__ = [
    "Connection",
    "ConnectionSourceType",
    "DataConnectionError",
    "DataConnectionStatus",
    "DateRange",
    "Security",
    "SyncRange",
    "SyncRangeDateRange",
    "SyncSummary",
    "SyncToLatestArgs",
]

#: The window of a ``SyncSummary`` (``sync_summary.sync_date_range_utc``).
DateRange = SyncDateRange

DateValue = str | _dt.datetime | _dt.date
"""An ISO-8601 string as in the original, or (new here) an aware datetime or a date."""


@dataclass
class Security:
    """How to authenticate: ``auth_header`` is sent verbatim as ``Authorization``
    (``"Basic <base64 of your API key>"``). It is never shown in ``repr``."""

    auth_header: str = field(repr=False)


@dataclass
class SyncToLatestArgs:
    """The body of ``request_sync``: sync up to ``sync_to`` (default: now)."""

    sync_to: DateValue | None = None


@dataclass
class SyncRangeDateRange:
    """The window of ``request_sync_for_date_range`` (both ends required)."""

    finish: DateValue
    start: DateValue


@dataclass
class SyncRange:
    """The body of ``request_sync_for_date_range``."""

    date_range: SyncRangeDateRange


class ConnectionSourceType(str, Enum):
    """The type of platform of a connection (compares equal to the text Codat sends)."""

    ACCOUNTING = "Accounting"
    BANKING = "Banking"
    COMMERCE = "Commerce"
    OTHER = "Other"
    UNKNOWN = "Unknown"


class DataConnectionStatus(str, Enum):
    """The authorization status of a data connection (compares equal to Codat's text)."""

    PENDING_AUTH = "PendingAuth"
    LINKED = "Linked"
    UNLINKED = "Unlinked"
    DEAUTHORIZED = "Deauthorized"
