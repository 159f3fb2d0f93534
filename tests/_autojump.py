"""A virtual clock for concurrent tests: sleeps take no real time, yet overlap.

``FakeClock`` (conftest) adds every sleep to the time, which is right for one task but
inflates time when many tasks sleep at once. Here a driver task waits until every task
is blocked, then jumps to the earliest wake-up, like trio's autojump ``MockClock``,
on asyncio and trio alike.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import sniffio

from codat_commerce_async import AsyncSyncClient


class AutojumpClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, anyio.Event]] = []
        self._seq = 0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._heap, (self.now + seconds, self._seq, wake))
        self._seq += 1
        await wake.wait()

    async def _drive(self) -> None:
        while True:
            await _all_tasks_blocked()
            if self._heap:
                when, _, wake = heapq.heappop(self._heap)
                self.now = max(self.now, when)
                wake.set()
            else:
                await anyio.sleep(0.0005)  # nothing sleeps: let real I/O (if any) progress

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AutojumpClock]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drive)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


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
            waiter = task._fut_waiter  # type: ignore[attr-defined]
            if waiter is None or waiter.done():
                break
        else:
            return


def install_autojump(client: AsyncSyncClient, clock: AutojumpClock) -> AutojumpClock:
    client._core.clock = clock
    client._core.sleep = clock.sleep
    client._core.random.seed(1234)
    return clock
