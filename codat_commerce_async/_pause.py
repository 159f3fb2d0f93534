"""A client-wide pause of bulk runs (for Codat's daily quota webhooks).

``client.rateLimit.reached`` says the day's quota is spent until ``expiryDate``; every
request until then is a 429 that also counts against the per-IP limit. While paused, bulk
runs take no new company (triggers and waits alike); calls already in flight finish
through their own retries. The pause ends at its deadline or on :meth:`PauseGate.resume`
(``client.rateLimit.reset``), whichever comes first.

Used on the client's event loop only (the blocking facade dispatches to its loop).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["PauseGate"]


class PauseGate:
    """Paused (until a monotonic deadline, or indefinitely) or open."""

    def __init__(self) -> None:
        self._paused = False
        self._until: float | None = None
        self._opened: anyio.Event | None = None
        self.pauses = 0
        """How many times :meth:`pause` was called (for observability and tests)."""

    def pause(self, until: float | None) -> None:
        """Hold bulk runs until ``until`` (a reading of the client's clock) or resume."""
        self._paused = True
        self._until = until
        self.pauses += 1
        self._wake()  # waiters re-read the new deadline

    def resume(self) -> None:
        """Let bulk runs go on now."""
        self._paused = False
        self._until = None
        self._wake()

    def paused(self, now: float) -> bool:
        """True while paused at clock reading ``now`` (an expired pause ends here)."""
        if self._paused and self._until is not None and now >= self._until:
            self.resume()
        return self._paused

    async def wait(self, clock: Callable[[], float]) -> None:
        """Return at once when open; else when resumed or the deadline passes."""
        while self.paused(clock()):
            if self._opened is None:
                self._opened = anyio.Event()
            opened = self._opened
            if self._until is None:
                await opened.wait()
            else:
                with anyio.move_on_after(max(0.0, self._until - clock())):
                    await opened.wait()

    def _wake(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.set()
