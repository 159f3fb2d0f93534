"""Fixtures for the transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._loopback import LoopbackServer


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    srv = LoopbackServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()
