"""A clock tests move by hand."""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]


class ManualClock:
    """A monotonic clock that only moves when told to; pass it as ``FakeCodat(clock=...)``."""

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new reading."""
        if not seconds >= 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self():g})"
