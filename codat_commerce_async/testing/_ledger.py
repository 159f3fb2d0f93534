"""The ``Idempotency-Key`` ledger, following Codat's documented rules.

* The first response for a key is stored and replayed for 90 minutes (status, headers, body).
* The same key while the first request is still being processed: 409.
* The same key with a different method, path or body: 422.
* A 429 is not stored: the key is released so the caller can retry with it.
* Every other response, 4xx and 5xx included, is stored.

Expired entries are dropped as time passes (oldest first, O(1) per request), so a long run
holds at most 90 minutes of keys.

The ledger's own 409 and 422 answers are not stored: they belong to the second request, while
the key belongs to the first.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ._wire import Response

__all__ = ["DEFAULT_TTL", "Decision", "IdempotencyLedger", "fingerprint"]

DEFAULT_TTL = 90 * 60.0


def fingerprint(method: str, target: str, body: bytes) -> str:
    """Identify a request for key reuse checks.

    JSON bodies are compared by meaning (key order and whitespace do not matter); anything
    else byte for byte.
    """
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    # One digest of everything: a key's entry holds 64 characters, not the whole path.
    return hashlib.sha256(f"{method} {target}\n".encode() + canonical).hexdigest()


class _Entry:
    __slots__ = ("fingerprint", "response", "stored_at")

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.response: Response | None = None
        self.stored_at = 0.0


@dataclass(frozen=True)
class Decision:
    """What to do with a keyed request: proceed (holding ``token``), replay, or refuse."""

    action: Literal["proceed", "replay", "in_progress", "mismatch"]
    response: Response | None = None
    token: object | None = None


class IdempotencyLedger:
    """Thread-safe store of idempotency keys, timed with an injectable clock."""

    def __init__(self, clock: Callable[[], float], ttl: float = DEFAULT_TTL) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._expiry: deque[tuple[str, _Entry]] = deque()
        """Stored entries in the order they were stored, hence in the order they expire."""

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and now - expiry[0][1].stored_at >= self.ttl:
            key, entry = expiry.popleft()
            if self._entries.get(key) is entry:
                del self._entries[key]

    def begin(self, key: str, request_fingerprint: str) -> Decision:
        """Look ``key`` up; on "proceed" the key is reserved until :meth:`finish`."""
        with self._lock:
            self._expire(self._clock())
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(request_fingerprint)
                self._entries[key] = entry
                return Decision("proceed", token=entry)
            if entry.fingerprint != request_fingerprint:
                return Decision("mismatch")
            if entry.response is None:
                return Decision("in_progress")
            return Decision("replay", response=entry.response)

    def finish(self, key: str, token: object, response: Response | None) -> None:
        """Store ``response`` for ``key``, or release the key if it is None or a 429."""
        with self._lock:
            if self._entries.get(key) is not token:
                return  # cleared by reset() while the request ran
            if response is None or response.status == 429:
                del self._entries[key]
                return
            assert isinstance(token, _Entry)
            token.response = response
            token.stored_at = self._clock()
            self._expiry.append((key, token))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._entries.clear()
            self._expiry.clear()
