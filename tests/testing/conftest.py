"""Fixtures for the fake Codat tests: every async test runs on asyncio and on trio."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timezone

import anyio
import pytest

from codat_commerce_async.testing import FakeCodat, ManualClock

from .._http import httpx

START = datetime(2026, 4, 15, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def no_leftover_server_threads() -> Iterator[None]:
    yield
    leftovers = [t.name for t in threading.enumerate() if t.name == "fake-codat-server"]
    assert leftovers == [], "a FakeCodatServer was not stopped"


@pytest.fixture
def fake(clock: ManualClock) -> FakeCodat:
    return FakeCodat(clock=clock, start_time=START)


@pytest.fixture
def company() -> str:
    return str(uuid.uuid4())


def client_for(fake: FakeCodat, *, auth: bool = True) -> httpx.AsyncClient:
    """A plain httpx client on ``httpx.ASGITransport``, as SDK users would build it."""
    headers = {"Authorization": fake.auth_header} if auth else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url="http://localhost", headers=headers
    )


@pytest.fixture
async def http(fake: FakeCodat) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(fake) as client:
        yield client


def latest(company_id: str) -> str:
    return f"/companies/{company_id}/sync/commerce/latest"


def historic(company_id: str) -> str:
    return f"/meta/companies/{company_id}/sync/commerce/historic"


def status(company_id: str, ref: str) -> str:
    return f"/companies/{company_id}/sync/commerce/syncs/{ref}/status"


RANGE = {"dateRange": {"start": "2026-01-01T00:00:00Z", "finish": "2026-02-01T00:00:00Z"}}


class Gate:
    """An injectable ``sleep`` that parks callers until :meth:`open` (no real waiting)."""

    def __init__(self) -> None:
        self.entered: anyio.Event | None = None
        self._release: anyio.Event | None = None
        self.calls: list[float] = []

    def arm(self) -> None:
        # Events belong to the running event loop, so create them inside the test.
        self.entered = anyio.Event()
        self._release = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        assert self.entered is not None
        assert self._release is not None
        self.calls.append(seconds)
        self.entered.set()
        await self._release.wait()

    def open(self) -> None:
        assert self._release is not None
        self._release.set()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def gated_fake(clock: ManualClock, gate: Gate) -> FakeCodat:
    return FakeCodat(clock=clock, start_time=START, sleep=gate.sleep)


async def in_background(
    tg: anyio.abc.TaskGroup, call: Callable[[], Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """Start ``call`` in ``tg``; the returned list receives its response."""
    box: list[httpx.Response] = []

    async def run() -> None:
        box.append(await call())

    tg.start_soon(run)
    return box
