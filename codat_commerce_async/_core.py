"""What a client shares with its ``with_options`` copies, split by concern:

- the connection pool (:class:`~._send.HttpPool`, the HTTP library seam) with fork handling
  and loop binding (:class:`Core` here);
- the limits (:mod:`._limits`: 429 gate, request rate, in-flight cap, bulk's
  per-company registry);
- the clock, the event hooks and the retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import Mapping

import sniffio

from ._clock import Clock, Jitter
from ._events import CallEvent, EventHook
from ._limits import InProcessLimits
from ._retry import RetryBudget
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
        limits: InProcessLimits,
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

    def emit(self, event: CallEvent) -> None:
        for hook in self.hooks:
            hook(event)

    def check_usable(self) -> None:
        """Refuse a closed client or another event loop; start afresh after a fork."""
        if self.closed:
            raise RuntimeError("this AsyncSyncClient is closed; create a new one")
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
        self.loop = None
        self.pid = os.getpid()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
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
