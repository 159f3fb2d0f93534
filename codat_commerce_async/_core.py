"""What a client shares with its ``with_options`` copies, split by concern:

- the connection pool (:class:`~._send.HttpPool`, the HTTP library seam) with fork handling
  and loop binding (:class:`Core` here);
- the limits (:mod:`._limits`: 429 gate, request rate, in-flight cap, bulk's
  per-company registry);
- the clock, the event hooks and the retry budget.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

import anyio
import anyio.to_thread
import sniffio

from ._clock import Clock, Jitter
from ._events import CallEvent, EventHook
from ._exceptions import ClientClosedError
from ._limits import ClientLimits
from ._retry import RetryBudget
from ._same_key import SameKeyCalls
from ._send import HttpPool, RequestTemplate

__all__ = ["Core"]


def _loop_identity() -> object:
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop()
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return library


class Core:
    """The shared state of one client: pool, limits, clock, hooks, budget."""

    def __init__(
        self,
        *,
        pool: HttpPool,
        base_url: str,
        headers: Mapping[str, str],
        secrets: tuple[str, ...],
        max_response_size: int,
        limits: ClientLimits,
        clock: Clock,
        hooks: tuple[EventHook, ...],
        retry_budget: RetryBudget | None,
    ) -> None:
        self.pool = pool
        self.requests = RequestTemplate(base_url, headers, pool.library)
        self.secrets = secrets
        self.max_response_size = max_response_size
        self.limits = limits
        self.clock = clock
        self.jitter = Jitter(clock)
        self.hooks = hooks
        self.retry_budget = retry_budget
        self.pid = os.getpid()
        self.loop: object | None = None
        self.closed = False
        # The cancel scope of every call in flight: closing cancels them, so no
        # attempt starts (or retries) after close begins.
        self.calls: set[anyio.CancelScope] = set()
        # Calls in flight by the idempotency key their caller chose: a later one waits.
        self.same_key = SameKeyCalls()

    def emit(self, event: CallEvent) -> None:
        for hook in self.hooks:
            hook(event)

    def check_usable(self) -> None:
        """Refuse a closed client or another event loop; start afresh after a fork."""
        if self.closed:
            raise ClientClosedError("this AsyncSyncClient is closed; create a new one", attempts=0)
        if self.pid != os.getpid():
            self._after_fork()
        loop = _loop_identity()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise RuntimeError(
                "this AsyncSyncClient was first used on another event loop; its connection "
                "pool belongs to that loop. Create one client per event loop (for example "
                "inside your app's lifespan), or use the blocking SyncClient."
            )

    def _after_fork(self) -> None:
        """In a forked child, never touch the parent's sockets: start a fresh pool
        (when the SDK built it) or refuse (when it was passed in)."""
        if not self.pool.rebuild():
            raise RuntimeError(
                "this AsyncSyncClient was created in another process (before os.fork()) "
                "with your own http_client or transport; create the client (and its "
                "transport) in the child process"
            )
        self.limits.after_fork()
        self.same_key = SameKeyCalls()
        self.loop = None
        self.pid = os.getpid()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pid != os.getpid():
            return  # a forked child: the parent's sockets are not ours to end
        owner = self.loop
        if owner is None or _loop_identity() is owner:
            await self._close_here()
            return
        # Called on another event loop than the one that used the pool.
        if await _run_on_owner_loop(owner, self._close_here):
            return
        if self.pool.owned and not self.pool.shut_down_sockets():
            raise ClientClosedError(
                "this AsyncSyncClient was closed on another event loop than the one it "
                "was used on, which has ended; its connections could not be closed from "
                "here. Close a client on the loop that uses it.",
                attempts=0,
            )

    async def _close_here(self) -> None:
        """Cancel the calls in flight, then close the pool (on the loop that owns both)."""
        for scope in list(self.calls):
            scope.cancel()
        await self.limits.aclose()
        await self.pool.aclose()

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None and pool.owned and not getattr(self, "closed", True):
            with contextlib.suppress(Exception):  # at interpreter shutdown warnings may be gone
                warnings.warn(
                    "AsyncSyncClient was garbage-collected without being closed; use "
                    "'async with AsyncSyncClient(...)' or 'await client.aclose()'",
                    ResourceWarning,
                    stacklevel=1,
                    source=self,
                )


async def _run_on_owner_loop(owner: object, close: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """Run ``close`` on the event loop ``owner`` if it is still running (waiting in a
    worker thread); False if that loop has ended."""
    if isinstance(owner, asyncio.AbstractEventLoop):
        if owner.is_closed() or not owner.is_running():
            return False
        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(close(), owner)
        await anyio.to_thread.run_sync(future.result)
        return True
    if sniffio.current_async_library() == "trio" or type(owner).__module__.startswith("trio"):
        import trio

        try:
            await anyio.to_thread.run_sync(
                functools.partial(trio.from_thread.run, close, trio_token=cast(Any, owner))
            )
        except trio.RunFinishedError:
            return False
        return True
    return False
