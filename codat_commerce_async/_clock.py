"""Time as a seam: where the SDK reads the time, sleeps and draws jitter.

A client takes ``clock=`` (anything with these three methods); the default is the
system's monotonic clock, :func:`anyio.sleep` and a private random source. Tests give
it a virtual clock (:class:`codat_commerce_async.testing.ManualClock`), so retries,
rate limits, deadlines and waits run without real time passing.
"""

from __future__ import annotations

import random
import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the SDK needs from time: a monotonic reading, a sleep and randomness."""

    def now(self) -> float:
        """Monotonic seconds (any origin)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` on this clock."""
        ...

    def random(self) -> float:
        """A float in ``[0, 1)``, used for jitter."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`anyio.sleep`, :mod:`random`."""

    __slots__ = ("random",)

    def __init__(self, seed: int | None = None) -> None:
        self.random = random.Random(seed).random

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class Jitter(random.Random):
    """A :class:`random.Random` whose draws come from a clock's ``random()``, so the
    pure decision functions (which take a ``random.Random``) use the clock's source."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._draw = clock.random

    def random(self) -> float:
        return self._draw()
