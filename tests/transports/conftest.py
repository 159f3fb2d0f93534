"""Fixtures for the transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._loopback import LoopbackServer


@pytest_asyncio.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    srv = LoopbackServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()
