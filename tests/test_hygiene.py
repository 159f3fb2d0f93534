"""Over real loopback sockets: no connection is left open after errors and retries."""

from __future__ import annotations

import gzip
import time
import uuid
from typing import Any

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    InternalServerError,
    NotFoundError,
    ResponseTooLargeError,
    SyncClient,
)
from codat_commerce_async.testing import ManualClock

from ._http import httpx
from ._sockets import MisbehavingServer, answer, reset
from .conftest import CANARY_KEY, COMPANY, TLS, virtual_clock


@pytest.fixture
def server() -> MisbehavingServer:
    with MisbehavingServer() as srv:
        yield srv  # type: ignore[misc]


def _transport(max_connections: int = 10) -> httpx.AsyncHTTPTransport:
    """A transport of the kind the SDK builds, held by the test so it can look inside."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=10)
    return httpx.AsyncHTTPTransport(verify=TLS, limits=limits, trust_env=False)


def _pool(transport: httpx.AsyncHTTPTransport) -> Any:
    # httpx has no public way to inspect its connection pool.
    return transport._pool


def _wait_for(predicate: object, timeout: float = 30.0) -> bool:  # only a hang runs out
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.anyio
async def test_no_connection_left_open_after_errors_and_retries(server: MisbehavingServer) -> None:
    server.then(
        answer(503),
        answer(503),
        answer(503),  # exhausted retries
        answer(404),  # not retried
        reset(),
        answer(200),  # reset, then success
        answer(200, b"x" * 5000),  # too large: the connection must be closed
    )
    transport = _transport()
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url=server.url,
        max_response_size=1000,
        transport=transport,
        clock=virtual_clock(),
    ) as client:
        with pytest.raises(InternalServerError):
            await client.sync.request_sync(COMPANY)
        with pytest.raises(NotFoundError):
            await client.sync.request_sync(COMPANY)
        await client.sync.request_sync(COMPANY)
        with pytest.raises(ResponseTooLargeError):
            await client.sync.request_sync(COMPANY)
        connections = _pool(transport).connections
        assert all(c.is_idle() or c.is_closed() for c in connections)
        assert len(connections) <= 1
    assert _pool(transport).connections == []
    assert _wait_for(lambda: server.open_connections == 0)
    assert server.requests == 7


@pytest.mark.anyio
async def test_gzip_bodies_are_decoded_and_bombs_refused(server: MisbehavingServer) -> None:
    good = gzip.compress(b'{"syncStatusCode": 1000, "companyId": "%s"}' % COMPANY.encode())
    bomb = gzip.compress(b"0" * (20 * 1024 * 1024))  # 20 MiB of zeros in ~20 KB
    server.then(
        answer(200, good, {"Content-Encoding": "gzip"}),
        answer(200, bomb, {"Content-Encoding": "gzip"}),
        answer(200, good, {"Content-Encoding": "gzip, gzip"}),
    )
    async with AsyncSyncClient(api_key=CANARY_KEY, base_url=server.url, max_retries=0) as client:
        summary = await client.sync.request_sync(COMPANY)
        assert summary.company_id == COMPANY
        with pytest.raises(ResponseTooLargeError, match="decoded"):
            await client.sync.request_sync(COMPANY)
        from codat_commerce_async import APIConnectionError

        with pytest.raises(APIConnectionError, match="content encoding"):
            await client.sync.request_sync(COMPANY)
    assert _wait_for(lambda: server.open_connections == 0)


@pytest.mark.anyio
async def test_connections_are_pooled_and_reused(server: MisbehavingServer) -> None:
    async with AsyncSyncClient(api_key=CANARY_KEY, base_url=server.url) as client:
        for _ in range(20):
            await client.sync.request_sync(str(uuid.uuid4()))
    assert server.stats.connections_made == 1


@pytest.mark.anyio
async def test_cancelling_under_pool_contention_leaves_the_pool_usable(
    server: MisbehavingServer,
) -> None:
    # encode/httpcore#1093: requests cancelled while queued inside httpcore left ghost
    # connections. Our in-flight cap keeps the queue in the SDK, where cancelling is safe.
    transport = _transport(max_connections=10)
    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=server.url, max_concurrency=10, transport=transport
    ) as client:
        for _ in range(20):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(client.sync.request_sync, str(uuid.uuid4()))
                await anyio.sleep(0)
                tg.cancel_scope.cancel()
        with anyio.fail_after(30):  # a stuck pool hangs
            await client.sync.request_sync(COMPANY)
        pool = _pool(transport)
        assert all(c.is_idle() or c.is_closed() for c in pool.connections)
        assert len(pool._requests) == 0  # nothing queued or stuck inside httpcore


def test_blocking_facade_leaves_nothing_open(server: MisbehavingServer) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    server.then(answer(503), answer(200))
    with SyncClient(api_key=CANARY_KEY, base_url=server.url, clock=ManualClock(seed=1)) as client:
        client.sync.request_sync(COMPANY)
    after = {t.name for t in threading.enumerate()}
    assert "codat-commerce-async-loop" not in after - before
    assert _wait_for(lambda: server.open_connections == 0)
