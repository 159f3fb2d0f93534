"""Ctrl-C for blocking-facade tests: a real SIGINT delivered to the main thread while it
waits inside a ``SyncClient`` call, turned into ``KeyboardInterrupt`` only while armed."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator


class Interrupt:
    def __init__(self) -> None:
        self.armed = True
        self.fired_at: float | None = None
        self.raised_at: float | None = None


@contextlib.contextmanager
def ctrl_c_when(ready: threading.Event, *, delay: float = 0.05) -> Iterator[Interrupt]:
    """Once ``ready`` is set, wait ``delay`` seconds and send SIGINT to the main thread.

    The handler raises ``KeyboardInterrupt`` only inside the block (while armed), so a
    late signal can never hit pytest itself.
    """
    assert threading.current_thread() is threading.main_thread()
    state = Interrupt()

    def handler(signum: int, frame: object) -> None:
        if state.armed:
            state.raised_at = time.monotonic()
            raise KeyboardInterrupt

    def fire() -> None:
        if ready.wait(30.0):
            time.sleep(delay)
            state.fired_at = time.monotonic()
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, handler)
    thread = threading.Thread(target=fire, name="ctrl-c", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        thread.join(timeout=31.0)
        state.armed = False
        signal.signal(signal.SIGINT, previous)
