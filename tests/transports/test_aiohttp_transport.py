"""AiohttpTransport against a real loopback server: behaviour parity with httpx's default."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from codat_commerce_async.transports import AiohttpTransport

from .._http import httpx
from .._sockets import MisbehavingServer
from ..conftest import SUMMARY
from .conftest import GZIP_BODY

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # aiohttp runs on asyncio

SYNC_PATH = "/companies/f4637ec9-9fc0-4a02-8df0-c90d6dc86208/sync/commerce/latest"
BODY = b'{"syncTo": "2024-06-30T00:00:00Z"}'
TIMEOUT = httpx.Timeout(5.0)


def sdk_headers() -> dict[str, str]:
    return {
        "Authorization": "Basic aw==",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Idempotency-Key": str(uuid.uuid4()),
        "User-Agent": "codat-commerce-async/test",
    }


def sync_request(
    url: str, path: str = SYNC_PATH, timeout: httpx.Timeout = TIMEOUT
) -> httpx.Request:
    return httpx.Request(
        "POST",
        url + path,
        headers=sdk_headers(),
        content=BODY,
        extensions={"timeout": timeout.as_dict()},
    )


def session_of(transport: AiohttpTransport) -> aiohttp.ClientSession | None:
    return transport.session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_json_round_trip(server: MisbehavingServer) -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport(), base_url=server.url) as client:
        response = await client.post(SYNC_PATH, content=BODY, headers=sdk_headers())
    assert response.status_code == 200
    assert response.json() == SUMMARY
    assert response.http_version == "HTTP/1.1"
    assert response.reason_phrase == "OK"
    assert server.seen[0].method == "POST"
    assert server.seen[0].body == BODY


async def test_headers_sent_verbatim(server: MisbehavingServer) -> None:
    request = sync_request(server.url, "/echo-headers")
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
    sent = [(k.decode(), v.decode()) for k, v in request.headers.raw]
    assert [tuple(pair) for pair in json.loads(response.content)] == sent
    names = {name.lower() for name, _ in sent}
    assert "accept-encoding" not in names
    assert "cookie" not in names


async def test_gzip_body_is_returned_undecoded(server: MisbehavingServer) -> None:
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(sync_request(server.url, "/gzip"))
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert raw == GZIP_BODY


async def test_redirect_is_not_followed(server: MisbehavingServer) -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport(), base_url=server.url) as client:
        response = await client.post("/redirect", content=BODY)
    assert response.status_code == 302
    assert response.headers["location"] == "/companies/x/sync/commerce/latest"
    assert server.requests == 1


async def test_no_cookie_jar(server: MisbehavingServer) -> None:
    async with AiohttpTransport() as transport:
        for _ in range(2):
            response = await transport.handle_async_request(sync_request(server.url))
            await response.aread()
            await response.aclose()
    assert all("cookie" not in {k.lower() for k, _ in r.raw_headers} for r in server.seen)


async def test_response_is_streamed_lazily(
    server: MisbehavingServer, release_stream: threading.Event
) -> None:
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(sync_request(server.url, "/stream"))
        assert response.status_code == 200  # headers arrived, body still half-sent
        release_stream.set()
        await response.aread()
        await response.aclose()
    assert response.json() == SUMMARY


async def test_connection_reused_only_after_full_read(server: MisbehavingServer) -> None:
    async with AiohttpTransport() as transport:
        for _ in range(3):
            response = await transport.handle_async_request(sync_request(server.url))
            await response.aread()
            await response.aclose()
        assert server.stats.connections_made == 1
        unread = await transport.handle_async_request(sync_request(server.url, "/stream"))
        await unread.aclose()  # body not read: the connection must be dropped
        response = await transport.handle_async_request(sync_request(server.url))
        await response.aread()
        await response.aclose()
    assert server.stats.connections_made == 2


async def test_streaming_upload(server: MisbehavingServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY[:10]
        yield BODY[10:]

    async with httpx.AsyncClient(transport=AiohttpTransport(), base_url=server.url) as client:
        response = await client.post(SYNC_PATH, content=chunks())
    assert response.status_code == 200
    assert server.seen[0].body == BODY


async def test_connect_refused_is_connect_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AiohttpTransport() as transport:
        with pytest.raises(httpx.ConnectError) as info:
            await transport.handle_async_request(sync_request(url))
    assert isinstance(info.value.__cause__, Exception)
    assert info.value.request.url == url + SYNC_PATH


async def test_connect_timeout() -> None:
    """A listener with a full accept queue drops SYNs, so the connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            timeout = httpx.Timeout(5.0, connect=0.3)
            async with AiohttpTransport() as transport:
                request = sync_request(f"http://127.0.0.1:{port}", timeout=timeout)
                with pytest.raises(httpx.ConnectTimeout):
                    await transport.handle_async_request(request)
        finally:
            for filler in fillers:
                filler.close()


async def test_read_timeout_waiting_for_headers(server: MisbehavingServer) -> None:
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/hang", content=BODY, timeout=httpx.Timeout(5.0, read=0.2))


async def test_read_timeout_while_reading_body(server: MisbehavingServer) -> None:
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/slow-body", content=BODY, timeout=httpx.Timeout(5.0, read=0.2))


async def test_pool_timeout(server: MisbehavingServer) -> None:
    transport = AiohttpTransport(limit=1)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        hanging = asyncio.create_task(client.post("/hang", content=BODY))
        for _ in range(6000):  # until it holds the only connection (30 s at most)
            if server.requests:
                break
            await asyncio.sleep(0.005)
        with pytest.raises(httpx.PoolTimeout):
            await client.post(SYNC_PATH, content=BODY, timeout=httpx.Timeout(5.0, pool=0.1))
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        response = await client.post(SYNC_PATH, content=BODY, timeout=httpx.Timeout(30.0))
    assert response.status_code == 200


async def test_server_reset_before_answering(server: MisbehavingServer) -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport(), base_url=server.url) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post("/reset", content=BODY)


async def test_truncated_body_fails_while_reading(server: MisbehavingServer) -> None:
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(sync_request(server.url, "/truncated"))
        assert response.status_code == 200
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await response.aread()
        await response.aclose()


async def test_tls_errors_stay_recognisable() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    tls_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = tls_server.sockets[0].getsockname()[1]
    try:
        async with AiohttpTransport() as transport:  # system trust store: rejects our CA
            with pytest.raises(httpx.ConnectError) as info:
                await transport.handle_async_request(sync_request(f"https://127.0.0.1:{port}"))
    finally:
        tls_server.close()
        await tls_server.wait_closed()
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_cancellation_leaves_pool_usable(server: MisbehavingServer) -> None:
    """100 rounds: 20 requests on 10 connections, cancelled mid-flight."""
    transport = AiohttpTransport(limit=10)
    async with httpx.AsyncClient(transport=transport, base_url=server.url, timeout=5) as client:
        for round_no in range(100):
            tasks = [
                asyncio.create_task(client.post(SYNC_PATH, content=BODY, headers=sdk_headers()))
                for _ in range(20)
            ]
            for _ in range(round_no % 5 + 1):
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError | httpx.Response) for r in results), (
                results
            )
        # A stuck pool hangs: only that runs out these 30 s.
        response = await asyncio.wait_for(client.post(SYNC_PATH, content=BODY), 30.0)
        assert response.status_code == 200
        quick = httpx.Timeout(5.0, pool=10.0)  # a leaked slot would show as PoolTimeout
        burst = [client.post(SYNC_PATH, content=BODY, timeout=quick) for _ in range(20)]
        assert all(r.status_code == 200 for r in await asyncio.gather(*burst))


def test_trio_is_refused_clearly() -> None:
    trio = pytest.importorskip("trio")
    transport = AiohttpTransport()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="the aiohttp transport needs asyncio"):
            await transport.handle_async_request(sync_request("http://127.0.0.1:1"))
        await transport.aclose()

    trio.run(main)


async def test_session_is_lazy_and_closed(server: MisbehavingServer) -> None:
    transport = AiohttpTransport()  # built outside any request: no session yet
    assert session_of(transport) is None
    response = await transport.handle_async_request(sync_request(server.url))
    await response.aread()
    await response.aclose()
    session = session_of(transport)
    assert session is not None
    await transport.aclose()
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(sync_request(server.url))


def test_rejects_negative_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        AiohttpTransport(limit=-1)
