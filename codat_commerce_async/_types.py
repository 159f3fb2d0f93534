"""Small shared types: the "not given" sentinel and the accepted input shapes."""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Final, Literal

import httpx

__all__ = [
    "NOT_GIVEN",
    "CompanyId",
    "DateInput",
    "NotGiven",
    "TimeoutTypes",
]


class NotGiven:
    """The type of :data:`NOT_GIVEN`: "use the client's default".

    Per-call overrides default to ``NOT_GIVEN`` rather than ``None`` because
    ``None`` already has a meaning there (``timeout=None`` means "no timeout").
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

#: A company id: a :class:`uuid.UUID` or a string that parses as one.
CompanyId = uuid.UUID | str
#: A point in time: an aware ``datetime``, a ``date`` (midnight UTC) or an ISO-8601 string.
DateInput = _dt.datetime | _dt.date | str
#: A timeout: seconds, an :class:`httpx.Timeout`, or ``None`` for no timeout.
TimeoutTypes = float | httpx.Timeout | None
