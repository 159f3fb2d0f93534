"""Over real loopback sockets: no connection is left open after errors and retries."""

from __future__ import annotations

import gzip
import time
import uuid

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    InternalServerError,
    NotFoundError,
    ResponseTooLargeError,
    SyncClient,
)

from ._loopback import Answer, LoopbackServer, loopback_server
from .conftest import CANARY_KEY, COMPANY, install_clock


@pytest.fixture
def server() -> LoopbackServer:
    with loopback_server() as srv:
        yield srv  # type: ignore[misc]


def _pool(client: AsyncSyncClient) -> list[object]:
    return list(client._core.http._transport._pool.connections)  # type: ignore[attr-defined]


def _wait_for(predicate: object, timeout: float = 30.0) -> bool:  # only a hang runs out
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.anyio
async def test_no_connection_left_open_after_errors_and_retries(server: LoopbackServer) -> None:
    server.then(
        Answer(503),
        Answer(503),
        Answer(503),  # exhausted retries
        Answer(404),  # not retried
        Answer(action="reset"),
        Answer(200),  # reset, then success
        Answer(200, body=b"x" * 5000),  # too large: the connection must be closed
    )
    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=server.url, max_response_size=1000
    ) as client:
        install_clock(client)
        with pytest.raises(InternalServerError):
            await client.sync.request_sync(COMPANY)
        with pytest.raises(NotFoundError):
            await client.sync.request_sync(COMPANY)
        await client.sync.request_sync(COMPANY)
        with pytest.raises(ResponseTooLargeError):
            await client.sync.request_sync(COMPANY)
        connections = _pool(client)
        assert all(c.is_idle() or c.is_closed() for c in connections)  # type: ignore[attr-defined]
        assert len(connections) <= 1
    assert _pool(client) == []
    assert _wait_for(lambda: server.open_connections == 0)
    assert server.request_count == 7


@pytest.mark.anyio
async def test_gzip_bodies_are_decoded_and_bombs_refused(server: LoopbackServer) -> None:
    good = gzip.compress(b'{"syncStatusCode": 1000, "companyId": "%s"}' % COMPANY.encode())
    bomb = gzip.compress(b"0" * (20 * 1024 * 1024))  # 20 MiB of zeros in ~20 KB
    server.then(
        Answer(200, body=good, headers={"Content-Encoding": "gzip"}),
        Answer(200, body=bomb, headers={"Content-Encoding": "gzip"}),
        Answer(200, body=good, headers={"Content-Encoding": "gzip, gzip"}),
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
async def test_connections_are_pooled_and_reused(server: LoopbackServer) -> None:
    async with AsyncSyncClient(api_key=CANARY_KEY, base_url=server.url) as client:
        for _ in range(20):
            await client.sync.request_sync(str(uuid.uuid4()))
    assert server.state.connections_made == 1


@pytest.mark.anyio
async def test_cancelling_under_pool_contention_leaves_the_pool_usable(
    server: LoopbackServer,
) -> None:
    # encode/httpcore#1093: requests cancelled while queued inside httpcore left ghost
    # connections. Our in-flight cap keeps the queue in the SDK, where cancelling is safe.
    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=server.url, max_concurrency=10
    ) as client:
        for _ in range(20):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(client.sync.request_sync, str(uuid.uuid4()))
                await anyio.sleep(0)
                tg.cancel_scope.cancel()
        with anyio.fail_after(30):  # a stuck pool hangs
            await client.sync.request_sync(COMPANY)
        pool = client._core.http._transport._pool  # type: ignore[attr-defined]
        assert all(c.is_idle() or c.is_closed() for c in pool.connections)
        assert len(pool._requests) == 0  # nothing queued or stuck inside httpcore


def test_blocking_facade_leaves_nothing_open(server: LoopbackServer) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    server.then(Answer(503), Answer(200))
    with SyncClient(api_key=CANARY_KEY, base_url=server.url) as client:
        client._async._core.random.seed(1)
        client.sync.request_sync(COMPANY)
    after = {t.name for t in threading.enumerate()}
    assert "codat-commerce-async-loop" not in after - before
    assert _wait_for(lambda: server.open_connections == 0)
