"""pytest fixtures for testing your code against the fake Codat. Opt in, in a conftest.py::

    pytest_plugins = ["codat_commerce_async.testing.pytest_plugin"]

(or ``pytest -p codat_commerce_async.testing.pytest_plugin``). Every fixture is
synchronous and function-scoped, so the same ones work in plain tests and under
pytest-asyncio (strict or auto mode, any loop scope) and anyio's plugin (asyncio and
trio): nothing here needs an event loop to set up or tear down.

- ``codat_clock``: a :class:`ManualClock`, shared by the fake and the clients below;
- ``codat_fake``: a :class:`FakeCodat` on that clock (in-process, no socket);
- ``codat_server``: ``codat_fake`` served on a loopback port (needs uvicorn:
  ``pip install 'codat-commerce-async[fake-server]'``), with ``.base_url``;
- ``codat_client``: an :class:`AsyncSyncClient` calling ``codat_fake`` in-process;
- ``codat_sync_client``: a blocking :class:`SyncClient` calling ``codat_fake``;
- ``codat_env``: ``CODAT_BASE_URL``/``CODAT_API_KEY`` set to ``codat_server``, for code
  that builds its own client.

To route a respx mock to the fake instead: ``codat_fake.mock(respx_mock)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._blocking import SyncClient
from .._client import AsyncSyncClient
from ._app import FakeCodat
from ._clock import ManualClock
from ._server import FakeCodatServer

__all__ = [
    "codat_client",
    "codat_clock",
    "codat_env",
    "codat_fake",
    "codat_server",
    "codat_sync_client",
]


@pytest.fixture
def codat_clock() -> ManualClock:
    """Virtual time for the fake and the clients: ``codat_clock.advance(30)`` ends syncs
    and rate-limit windows; ``codat_clock.sleeps`` lists every wait a client asked for."""
    return ManualClock()


@pytest.fixture
def codat_fake(codat_clock: ManualClock) -> FakeCodat:
    """A fake Codat on ``codat_clock``; script faults with ``codat_fake.faults.script(...)``
    and check ``codat_fake.syncs_started()``, ``codat_fake.requests`` and friends."""
    return FakeCodat(clock=codat_clock)


@pytest.fixture
def codat_server(codat_fake: FakeCodat) -> Iterator[FakeCodatServer]:
    """``codat_fake`` on a loopback port (``codat_server.base_url``) in a background
    thread, for code you cannot hand a transport to."""
    with FakeCodatServer(codat_fake) as server:
        yield server


@pytest.fixture
def codat_client(codat_fake: FakeCodat, codat_clock: ManualClock) -> AsyncSyncClient:
    """An :class:`AsyncSyncClient` on ``codat_fake`` (in-process) and ``codat_clock``.

    Its HTTP client belongs to the fixture (an in-process one, with no socket), so the test
    may close the SDK client or not; use it on one event loop, as any client."""
    return AsyncSyncClient(
        api_key=codat_fake.api_key,
        base_url="http://localhost",
        http_client=codat_fake.client(authenticated=False),
        clock=codat_clock,
    )


@pytest.fixture
def codat_sync_client(codat_fake: FakeCodat, codat_clock: ManualClock) -> Iterator[SyncClient]:
    """A blocking :class:`SyncClient` on ``codat_fake`` (in-process) and ``codat_clock``,
    closed after the test."""
    with SyncClient(
        api_key=codat_fake.api_key,
        base_url="http://localhost",
        transport=codat_fake.transport(),
        clock=codat_clock,
    ) as client:
        yield client


@pytest.fixture
def codat_env(codat_server: FakeCodatServer, monkeypatch: pytest.MonkeyPatch) -> FakeCodatServer:
    """``CODAT_BASE_URL`` and ``CODAT_API_KEY`` point at ``codat_server`` for the test, so
    ``AsyncSyncClient()`` or ``SyncClient()`` built by the code under test reach the fake."""
    monkeypatch.setenv("CODAT_BASE_URL", codat_server.base_url)
    monkeypatch.setenv("CODAT_API_KEY", codat_server.fake.api_key)
    return codat_server
