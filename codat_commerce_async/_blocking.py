"""``SyncClient``: the blocking facade.

One long-lived event loop per facade runs in a background thread (an anyio
blocking portal) and owns one :class:`AsyncSyncClient`; every blocking method
hands its call to that loop and waits. So connections are pooled across calls,
any number of threads may call at once, and it works where a loop is already
running in the caller's thread (a Jupyter cell). Behaviour lives only in the
async client: the methods here are generated from it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import copy
import datetime
import itertools
import os
import ssl
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._bulk import BlockingBulkRun
from ._client import AsyncSyncClient
from ._clock import Clock
from ._config import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    RetryPolicy,
)
from ._events import EventHook
from ._exceptions import ClientClosedError
from ._http_library import HttpLibraryName
from ._limits import ClientLimits
from ._quota import DEFAULT_QUOTA_RESERVE
from ._redis_limits import RedisLimits
from ._resources.sync import SyncResource
from ._retry import RetryBudget
from ._types import NOT_GIVEN, NotGiven, TimeoutTypes

if TYPE_CHECKING:
    from ._types import URL, AsyncBaseTransport, AsyncClient

__all__ = ["BlockingBulkRun", "SyncClient"]  # BlockingBulkRun is defined in _bulk

T = TypeVar("T")


_Started = tuple[BlockingPortal, asyncio.AbstractEventLoop]
#: Shutdowns begun by finalisers (the loop keeps only weak references to tasks).
_SHUTDOWNS: set[asyncio.Task[None]] = set()
#: The finaliser of every facade not closed yet, by a serial number (run at exit).
_OPEN: dict[int, weakref.finalize[Any, Any]] = {}
_SERIAL = itertools.count()
#: Facades closed without a warning when dropped (the compat layer's: the original SDK
#: had nothing to close).
_QUIET: set[int] = set()
#: Loop threads shutting down after their facade was dropped unclosed (joined at exit).
_STOPPING: set[threading.Thread] = set()
#: How long interpreter exit waits for forgotten facades to close their connections.
_EXIT_GRACE = 5.0
_UNCLOSED = "SyncClient was left without being closed; use 'with SyncClient(...)' or call close()"


class _LoopThread:
    """An asyncio event loop in a daemon thread, run by an anyio blocking portal, and the
    :class:`AsyncSyncClient` it runs: the lifetime of one facade.

    Everything a :class:`SyncClient` hands out (its ``with_options`` copies, resources,
    raw-response views, bound methods and bulk runs) holds this object, so the loop and
    the pool live while any of them does: ``SyncClient(...).sync.request_sync(...)``
    works. When the last of them goes without ``close()``, a finaliser closes the client
    and stops the loop, with one ``ResourceWarning`` naming ``SyncClient``; facades still
    open at interpreter exit are closed then. A daemon thread, because a forgotten
    facade must not keep the interpreter from exiting.
    """

    def __init__(self) -> None:
        ready: concurrent.futures.Future[_Started] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="codat-commerce-async-loop", daemon=True
        )
        self._thread.start()
        self.portal, self._loop = ready.result()
        self._pid = os.getpid()
        self._tasks: set[asyncio.Task[Any]] = set()  # touched only on the loop thread
        self._lock = threading.Lock()
        self.closed = False
        self._serial = next(_SERIAL)

    @staticmethod
    def _run(
        ready: concurrent.futures.Future[tuple[BlockingPortal, asyncio.AbstractEventLoop]],
    ) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result((portal, asyncio.get_running_loop()))
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend="asyncio")
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                raise

    def adopt(self, client: AsyncSyncClient) -> None:
        """Own ``client``: close it when this object is dropped unclosed."""
        self.client = client
        # The finaliser holds what it closes, never this object.
        finalizer = weakref.finalize(
            self, _abandoned, self._serial, self._pid, self._thread, self._loop, self.portal, client
        )
        finalizer.atexit = False  # _close_forgotten runs it, then waits for the thread
        _OPEN[self._serial] = finalizer

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        if self.closed:
            raise _closed()
        return self._call(fn, *args, **kwargs)

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        if self._pid != os.getpid():
            # The loop thread was not copied by fork(): waiting on it would hang forever.
            raise RuntimeError(
                "this SyncClient was created before os.fork(); create a new SyncClient "
                "in the child process"
            )
        if self.in_loop_thread():
            raise RuntimeError("a SyncClient cannot be called from its own event loop thread")
        # A plain task started with call_soon_threadsafe and a bare lock to wait on, not
        # the portal's call(): far cheaper per call (docs/performance.md, item 5).
        done = threading.Lock()
        done.acquire()
        started: list[asyncio.Task[T]] = []

        def finish(task: asyncio.Task[T]) -> None:
            self._tasks.discard(task)
            if not task.cancelled():
                task.exception()  # mark it retrieved: the caller may have gone (Ctrl-C)
            done.release()

        def start() -> None:
            task: asyncio.Task[T] = self._loop.create_task(fn(*args, **kwargs))
            started.append(task)
            self._tasks.add(task)
            task.add_done_callback(finish)

        try:
            self._loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop has ended: closed by another thread just now
            if not self.closed:
                raise
            raise _closed() from None
        try:
            done.acquire()
        except BaseException:
            # Ctrl-C (or any interruption) in the caller cancels the work on the loop too;
            # start() was queued first, so the task exists when this runs.
            self._loop.call_soon_threadsafe(lambda: started[0].cancel())
            raise
        task = started[0]
        if task.cancelled():
            if self.closed:
                raise _closed("the SyncClient was closed while this call was in flight")
            raise concurrent.futures.CancelledError("the call was cancelled")
        return task.result()

    def wrap_async_context_manager(
        self, cm: AbstractAsyncContextManager[T]
    ) -> AbstractContextManager[T]:
        if self.closed:
            raise _closed()
        return _LoopContext(self, self.portal.wrap_async_context_manager(cm))

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Close the client, end what still runs on the loop, stop the loop. Idempotent."""
        with self._lock:
            if self.closed:
                return
            if self.in_loop_thread():
                raise RuntimeError("SyncClient.close() cannot be called from its own loop")
            self.closed = True
            _QUIET.discard(self._serial)
            finalizer = _OPEN.pop(self._serial, None)
            if finalizer is not None:
                finalizer.detach()
            try:
                self._call(self.client.aclose)
            finally:
                self.stop()

    def stop(self) -> None:
        """End the calls and bulk runs still running, then stop the loop and its thread."""
        self.portal.call(self._cancel_tasks)
        # cancel_remaining: a bulk run entered from a thread ends here, not when (if
        # ever) that thread leaves it.
        self.portal.call(self.portal.stop, True)
        self._thread.join()

    async def _cancel_tasks(self) -> None:
        """Calls still running when the client closes end with a cancellation."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _LoopContext(AbstractContextManager[T]):
    """A context manager run on the loop (a bulk run): if ``close()`` ended it first,
    leaving it says so with :class:`ClientClosedError` instead of failing on the loop."""

    def __init__(self, owner: _LoopThread, cm: AbstractContextManager[T]) -> None:
        self._owner = owner
        self._cm = cm

    def __enter__(self) -> T:
        return self._cm.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return self._cm.__exit__(exc_type, exc, tb)
        except (RuntimeError, concurrent.futures.CancelledError):
            # The portal stopped, or cancelled the block's task: close() got there first.
            if not self._owner.closed:
                raise
        if exc is None:
            raise _closed("the SyncClient was closed while this bulk run was in progress")
        return None  # the error that ended the block (the close) goes on


def _closed(message: str = "this SyncClient is closed; create a new one") -> ClientClosedError:
    return ClientClosedError(message, attempts=0)


def _abandoned(
    serial: int,
    pid: int,
    thread: threading.Thread,
    loop: asyncio.AbstractEventLoop,
    portal: BlockingPortal,
    client: AsyncSyncClient,
) -> None:
    """The finaliser of a facade dropped unclosed: close its client and stop its loop
    without waiting (it may run on any thread, the loop's own included)."""
    _OPEN.pop(serial, None)
    quiet = serial in _QUIET
    _QUIET.discard(serial)
    if pid != os.getpid():
        return  # a forked child: the loop thread and the sockets are the parent's
    try:
        if not sys.is_finalizing():  # afterwards the loop thread is frozen: do nothing

            def begin() -> None:
                task = loop.create_task(_shutdown(client, portal))
                _SHUTDOWNS.add(task)
                task.add_done_callback(_SHUTDOWNS.discard)

            loop.call_soon_threadsafe(begin)
            for ended in [t for t in list(_STOPPING) if not t.is_alive()]:
                _STOPPING.discard(ended)  # a long-lived process drops many clients
            _STOPPING.add(thread)
        if not quiet:
            warnings.warn(_UNCLOSED, ResourceWarning, stacklevel=1)
    except Exception:  # noqa: S110 - best effort at GC or interpreter shutdown
        pass


@atexit.register
def _close_forgotten() -> None:
    """At exit, close the facades still open (as if dropped) and give their loops a
    moment to close their connections, so nothing is left half-closed. (Not through
    weakref.finalize's own exit hook: once that has run, finalisers no longer call.)"""
    for finalizer in list(_OPEN.values()):
        alive = finalizer.detach()
        if alive is not None:
            _, func, args, _ = alive
            func(*args)
    deadline = time.monotonic() + _EXIT_GRACE
    for thread in list(_STOPPING):
        thread.join(max(0.0, deadline - time.monotonic()))
    _STOPPING.clear()


class SyncClient:
    """Blocking client for scripts: the same methods and errors as :class:`AsyncSyncClient`.

    ::

        with SyncClient(api_key="...") as client:
            summary = client.sync.request_sync(company_id)

    It takes the same arguments as :class:`AsyncSyncClient` (see there; event hooks
    run on the facade's background thread). Safe to use
    from many threads at once. Async code should use :class:`AsyncSyncClient`:
    a blocking call blocks the caller's event loop while it waits.
    """

    sync: SyncResource
    """The sync operations."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        auth_header: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = DEFAULT_DEADLINE,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        default_headers: Mapping[str, str] | None = None,
        http_client: AsyncClient | None = None,
        transport: AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | os.PathLike[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        event_hooks: Sequence[EventHook] | None = None,
        retry_budget: RetryBudget | NotGiven | None = NOT_GIVEN,
        requests_per_minute: float | None = None,
        clock: Clock | None = None,
        limits: RedisLimits | None = None,
        quota_reserve: int = DEFAULT_QUOTA_RESERVE,
        http_library: HttpLibraryName | None = None,
    ) -> None:
        # Validated by the AsyncSyncClient built on the loop thread; its error is
        # raised here, and the thread is stopped again.
        options: dict[str, Any] = {
            "api_key": api_key,
            "auth_header": auth_header,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "deadline": deadline,
            "attempt_timeout": attempt_timeout,
            "max_concurrency": max_concurrency,
            "max_response_size": max_response_size,
            "default_headers": default_headers,
            "http_client": http_client,
            "transport": transport,
            "verify": verify,
            "retry_policy": retry_policy,
            "event_hooks": event_hooks,
            "requests_per_minute": requests_per_minute,
            "retry_budget": retry_budget,
            "clock": clock,
            "limits": limits,
            "quota_reserve": quota_reserve,
            "http_library": http_library,
        }
        self._owner = True
        self._loop = _LoopThread()
        try:
            self._async: AsyncSyncClient = self._loop.call(_build_async, options)
        except BaseException:
            self._loop.stop()
            raise
        self._loop.adopt(self._async)
        self.sync = SyncResource(self._loop, self._async.sync)

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        attempt_timeout: float | NotGiven | None = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
    ) -> SyncClient:
        """A copy with other call settings sharing this client's loop, pool and limits.
        Only the original's :meth:`close` shuts them down."""
        other = copy.copy(self)
        other._owner = False
        other._async = self._async.with_options(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            attempt_timeout=attempt_timeout,
            retry_policy=retry_policy,
            default_headers=default_headers,
        )
        other.sync = SyncResource(self._loop, other._async.sync)
        return other

    def pause_bulk_runs(self, *, until: datetime.datetime | None = None) -> None:
        """As :meth:`AsyncSyncClient.pause_bulk_runs` (safe from any thread)."""
        self._loop.call(_on_loop, self._async.pause_bulk_runs, until=until)

    def resume_bulk_runs(self) -> None:
        """As :meth:`AsyncSyncClient.resume_bulk_runs` (safe from any thread)."""
        self._loop.call(_on_loop, self._async.resume_bulk_runs)

    @property
    def bulk_runs_paused(self) -> bool:
        """True while :meth:`pause_bulk_runs` holds this client's bulk runs."""
        return self._async.bulk_runs_paused

    @property
    def base_url(self) -> URL:
        """The URL every request goes to."""
        return self._async.base_url

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once."""
        return self._async.max_concurrency

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._async.max_retries

    @property
    def http_library(self) -> HttpLibraryName:
        """The HTTP library this client runs on: ``"httpx"`` or ``"httpx2"``."""
        return self._async.http_library

    @property
    def limits(self) -> ClientLimits:
        """The limits shared by every call of this client (see :class:`AsyncSyncClient`)."""
        return self._async.limits

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._loop.closed or self._async.is_closed

    def close(self) -> None:
        """Close the connection pool and stop the background loop; calls and bulk runs
        still running end with :class:`ClientClosedError`. Idempotent."""
        if self._owner:
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SyncClient(base_url={str(self._async.base_url)!r}, "
            f"max_retries={self._async.max_retries}, auth=<redacted>)"
        )


def close_quietly_when_dropped(client: SyncClient) -> None:
    """Close ``client`` without a ``ResourceWarning`` when it is dropped unclosed."""
    _QUIET.add(client._loop._serial)


async def _build_async(options: dict[str, Any]) -> AsyncSyncClient:
    return AsyncSyncClient(**options)


async def _shutdown(client: AsyncSyncClient, portal: BlockingPortal) -> None:
    try:
        await client.aclose()
    finally:
        await portal.stop()


async def _on_loop(fn: Callable[..., None], /, *args: Any, **kwargs: Any) -> None:
    """Run a plain function on the facade's loop (the pause gate lives there)."""
    fn(*args, **kwargs)
