"""Models of the sync operations' responses: ``SyncSummary`` and what it embeds.

Date-times stay strings, as in Codat's spec: Codat sends several ISO-8601 forms
(``...Z``, offsets, local time, bare dates) and a stricter type would turn a
successful sync into a validation error.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ._base import CodatModel

__all__ = [
    "CompanySyncStatus",
    "Connection",
    "DataConnectionError",
    "SyncDateRange",
    "SyncState",
    "SyncStatus",
    "SyncSummary",
]


class SyncDateRange(CodatModel):
    """The window a sync covers."""

    start: str | None = None
    """Start of the window (ISO-8601)."""
    finish: str | None = None
    """End of the window (ISO-8601)."""


class DataConnectionError(CodatModel):
    """An error recorded on a data connection."""

    status_code: str | None = None
    status_text: str | None = None
    error_message: str | None = None
    errored_on_utc: str | None = None


class Connection(CodatModel):
    """A company's connection to a data source (accounting, banking or commerce)."""

    id: str | None = None
    """Codat's id of the connection."""
    integration_id: str | None = None
    integration_key: str | None = None
    """The four-character platform key."""
    source_id: str | None = None
    platform_name: str | None = None
    link_url: str | None = None
    status: str | None = None
    """``PendingAuth``, ``Linked``, ``Unlinked`` or ``Deauthorized`` (kept as text)."""
    last_sync: str | None = None
    created: str | None = None
    source_type: str | None = None
    """``Accounting``, ``Banking``, ``Commerce``, ``Other`` or ``Unknown`` (kept as text)."""
    data_connection_errors: list[DataConnectionError] | None = None
    connection_info: dict[str, Any] | None = None


class SyncState(str, Enum):
    """The phase a ``syncStatusCode`` belongs to (1xxx, 2xxx, or 4xxx/5xxx)."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def from_code(cls, code: int | None) -> SyncState | None:
        """Classify a status code; None when there is no code or it is unknown."""
        if code is None:
            return None
        band = code // 1000
        if band == 1:
            return cls.IN_PROGRESS
        if band == 2:
            return cls.SUCCEEDED
        if band in (4, 5):
            return cls.FAILED
        return None


class _SyncStateMixin(CodatModel):
    sync_status_code: int | None = None
    """Codat's numeric status: 1xxx in progress, 2xxx succeeded, 4xxx/5xxx failed."""

    @property
    def state(self) -> SyncState | None:
        """The phase of the sync derived from ``sync_status_code``."""
        return SyncState.from_code(self.sync_status_code)

    @property
    def is_in_progress(self) -> bool:
        """True while the sync runs (codes 1000 and 1010)."""
        return self.state is SyncState.IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        """True when the sync finished successfully (2xxx)."""
        return self.state is SyncState.SUCCEEDED

    @property
    def failed(self) -> bool:
        """True when the sync finished with an error (4xxx or 5xxx)."""
        return self.state is SyncState.FAILED

    @property
    def is_terminal(self) -> bool:
        """True once the sync has finished, either way."""
        return self.state in (SyncState.SUCCEEDED, SyncState.FAILED)


class SyncSummary(_SyncStateMixin):
    """What Codat returns when a sync is requested."""

    sync_date_range_utc: SyncDateRange | None = None
    """The window the sync covers."""
    company_id: str | None = None
    """The company's id."""
    commerce_sync_id: str | None = None
    """Codat's id of this sync."""
    sync_status: str | None = None
    """Text status tied to the code (e.g. ``"Complete"``)."""
    error_message: str | None = None
    """A friendly error message, when the sync failed."""
    sync_exception_message: str | None = None
    sync_utc: str | None = None
    """When the sync ran (UTC, ISO-8601)."""
    data_connections: list[Connection] | None = None
    data_pushed: bool | None = None
    """Whether the sync pushed any data."""


class CompanySyncStatus(_SyncStateMixin):
    """The status of one sync of a company."""

    company_id: str | None = None
    sync_id: str | None = None
    """Codat's id of the sync."""
    sync_status: str | None = None
    error_message: str | None = None
    sync_exception_message: str | None = None
    sync_utc: str | None = None
    data_pushed: bool | None = None


class SyncStatus(CompanySyncStatus):
    """The status of syncing for a company and its connections (``get-sync-status``):
    a :class:`CompanySyncStatus` with the sync's ``commerce_sync_id`` and the company's
    data connections."""

    commerce_sync_id: str | None = None
    """Codat's id of the sync (as in :class:`SyncSummary`)."""
    data_connections: list[Connection] | None = None
