"""A virtual clock for tests: give the same one to a client and to the fake Codat."""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import sniffio

__all__ = ["ManualClock"]


class ManualClock:
    """A monotonic clock that moves only when told to, or when the code under test sleeps.

    It is a :class:`codat_commerce_async.Clock`, so ``AsyncSyncClient(clock=clock)``
    runs retries, rate limits, deadlines and waits in virtual time, and a
    ``FakeCodat(clock=clock)`` sees the same time::

        clock = ManualClock()
        async with AsyncSyncClient(api_key=..., transport=..., clock=clock) as client:
            ...
        assert clock.sleeps == [...]        # every sleep the client asked for

    By default a sleep moves the clock forward at once (without yielding to other
    tasks), which is exact for one task.
    When many tasks sleep at the same time, run them inside ``async with
    clock.autojump():`` instead: sleeps then overlap, and the clock jumps to the
    earliest wake-up whenever every task is blocked (like trio's autojump clock).
    ``random()`` is seeded (``seed=1234``) so jitter is the same on every run.
    """

    def __init__(self, start: float = 0.0, *, seed: int = 1234) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._random = random.Random(seed)
        self._heap: list[tuple[float, int, anyio.Event]] = []
        self._seq = 0
        self._autojump = False
        #: Every sleep asked for, in seconds, in order.
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The current reading."""
        with self._lock:
            return self._now

    __call__ = now  # ``FakeCodat(clock=...)`` takes a plain callable

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new reading."""
        if not seconds >= 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += seconds
            return self._now

    def random(self) -> float:
        """The next draw of the seeded random source."""
        return self._random.random()

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, then move the clock (or, in autojump mode, wait for it)."""
        self.sleeps.append(seconds)
        if not self._autojump:
            self.advance(max(0.0, seconds))  # no checkpoint: time passes, nothing else
            return
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._heap, (self.now() + seconds, self._seq, wake))
        self._seq += 1
        await wake.wait()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[ManualClock]:
        """Overlapping sleeps inside the block: jump to the next wake-up whenever
        every task is blocked."""
        self._autojump = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drive)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._autojump = False

    async def _drive(self) -> None:
        while True:
            await _all_tasks_blocked()
            if self._heap:
                when, _, wake = heapq.heappop(self._heap)
                with self._lock:
                    self._now = max(self._now, when)
                wake.set()
            else:
                await anyio.sleep(0.0005)  # nothing sleeps: let real I/O (if any) progress

    def __repr__(self) -> str:
        return f"ManualClock({self.now():g})"


async def _all_tasks_blocked() -> None:
    """``anyio.wait_all_tasks_blocked``, minus its 0.1 s polling sleep on asyncio."""
    if sniffio.current_async_library() == "trio":
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    import asyncio

    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        for task in asyncio.all_tasks():
            if task is this:
                continue
            # asyncio has no public "is this task blocked?"; a task waits on _fut_waiter.
            waiter = task._fut_waiter  # type: ignore[attr-defined]
            if waiter is None or waiter.done():
                break
        else:
            return
