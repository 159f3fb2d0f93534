"""Check command-line values before any client exists, naming the flag in the error.

The SDK validates the same values again, but its messages name Python parameters
(``sync_to``); a CLI user typed ``--to``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from .._protocol import (
    canonical_company_id,
    canonical_sync_id,
    format_datetime,
    to_utc,
    validate_idempotency_key,
)

__all__ = ["check_inputs"]

#: Namespace attribute -> what the user typed.
_EXAMPLE = "8a210b68-6988-11ed-a1eb-0242ac120002"
_DATES = (("sync_to", "--to"), ("start", "--start"), ("finish", "--finish"))


def check_inputs(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the flag or argument of the first bad value."""
    moments: dict[str, datetime] = {}
    for attr, flag in _DATES:
        value = getattr(args, attr, None)
        if value is not None:
            moments[flag] = to_utc(value, flag)
    start, finish = moments.get("--start"), moments.get("--finish")
    if start is not None and finish is not None and start > finish:
        raise ValueError(
            f"--start ({format_datetime(start)}) is after --finish ({format_datetime(finish)})"
        )
    _uuid(args, "company_id", "COMPANY_ID", canonical_company_id)
    _uuid(args, "sync_id", "SYNC_ID", canonical_sync_id)
    _uuid(args, "idempotency_key", "--idempotency-key", validate_idempotency_key)


def _uuid(args: argparse.Namespace, attr: str, name: str, check: Callable[[str], object]) -> None:
    value: str | None = getattr(args, attr, None)
    if value is None:
        return
    try:
        check(value)
    except ValueError:
        raise ValueError(f"{name} must be a UUID such as {_EXAMPLE}, got {value!r}") from None
