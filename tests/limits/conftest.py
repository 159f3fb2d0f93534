"""Fixtures for the shared-limits tests: a real Redis, from CODAT_TEST_REDIS_URL or our own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from ._redis import ENV_URL, RedisCluster, RedisProcess, TlsRedis, in_ci


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis the tests share: $CODAT_TEST_REDIS_URL (what .ci/run and
    scripts/redis-dev.sh give), else a redis-server started for this session."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    if in_ci():
        pytest.fail(f"CI must provide {ENV_URL} (.ci/run starts redis-server)")
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    """Keys of one test, apart from every other test's on the shared server."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to stop and restart."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[object]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {redis_url} does not answer: {exc}")
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[TlsRedis]:
    """A redis-server speaking only TLS, its certificate signed by a CA of the test's own
    (``trustme``), with a password."""
    server = TlsRedis().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real three-node Redis Cluster (no replicas) on free loopback ports."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.cleanup()
