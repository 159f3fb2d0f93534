"""Raw access to a call's HTTP response alongside its parsed model."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from ._types import Headers, Response

__all__ = ["APIResponse"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class APIResponse(Generic[T]):
    """The HTTP response of a call together with its parsed model.

    Returned by ``client.sync.with_raw_response.<method>(...)``. The body has been
    read, so ``http_response.content`` and ``.json()`` work.
    """

    http_response: Response
    """The final response (of the last attempt): an ``httpx.Response``, or an
    ``httpx2.Response`` on a client that runs on httpx2."""
    parsed: T
    """The validated model."""
    attempts: int
    """How many attempts the call took."""
    idempotency_key: str | None
    """The ``Idempotency-Key`` sent with every attempt (None for reads)."""

    def parse(self) -> T:
        """The validated model (same as ``parsed``)."""
        return self.parsed

    @property
    def status_code(self) -> int:
        """The HTTP status."""
        return self.http_response.status_code

    @property
    def headers(self) -> Headers:
        """The response headers, e.g. ``X-Rate-Limit-Remaining``."""
        return self.http_response.headers

    @property
    def elapsed(self) -> _dt.timedelta:
        """Time taken by the last attempt, from sending to the end of the body."""
        return self.http_response.elapsed

    @property
    def rate_limit_remaining(self) -> int | None:
        """Codat's ``X-Rate-Limit-Remaining`` as an int, if present."""
        return ascii_int(self.http_response.headers.get("x-rate-limit-remaining"))


def ascii_int(value: str | None) -> int | None:
    """A header's non-negative decimal integer, or None: never raises. ASCII digits only,
    because ``str.isdigit()`` also accepts characters like ``²`` that ``int()`` refuses."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else None
