"""Small shared types: the "not given" sentinel and the accepted input shapes."""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

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


if TYPE_CHECKING:
    import httpx2

    # The objects of whichever HTTP library a client runs on (see ``http_library``).
    Request: TypeAlias = httpx.Request | httpx2.Request
    Response: TypeAlias = httpx.Response | httpx2.Response
    Headers: TypeAlias = httpx.Headers | httpx2.Headers
    URL: TypeAlias = httpx.URL | httpx2.URL
    Timeout: TypeAlias = httpx.Timeout | httpx2.Timeout
    AsyncClient: TypeAlias = httpx.AsyncClient | httpx2.AsyncClient
    AsyncBaseTransport: TypeAlias = httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport

    #: A timeout: seconds, an ``httpx.Timeout`` or ``httpx2.Timeout``, or ``None`` for none.
    TimeoutTypes: TypeAlias = float | httpx.Timeout | httpx2.Timeout | None
else:
    # httpx2 is an optional extra: at run time the alias names httpx only (an
    # httpx2.Timeout is accepted all the same).
    TimeoutTypes = float | httpx.Timeout | None
