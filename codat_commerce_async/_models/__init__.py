"""Pydantic v2 models of Codat's payloads."""

from .errors import ErrorMessage, ErrorValidation, ErrorValidationItem
from .sync import (
    CompanySyncStatus,
    Connection,
    DataConnectionError,
    SyncDateRange,
    SyncState,
    SyncStatus,
    SyncSummary,
)

__all__ = [
    "CompanySyncStatus",
    "Connection",
    "DataConnectionError",
    "ErrorMessage",
    "ErrorValidation",
    "ErrorValidationItem",
    "SyncDateRange",
    "SyncState",
    "SyncStatus",
    "SyncSummary",
]
