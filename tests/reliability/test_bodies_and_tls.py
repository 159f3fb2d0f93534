"""Matrix rows 23, 24, 27 and 28: oversized and malformed bodies, redirects and TLS,
over real loopback sockets, through the async client and the blocking facade."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import ssl
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from codat_commerce_async import (
    APIConnectionError,
    APITLSError,
    ConfigurationError,
    ResponseTooLargeError,
    ResponseValidationError,
    SyncClient,
    SyncSummary,
    UnexpectedRedirectError,
)

from .._sockets import SUMMARY_BYTES, MisbehavingServer, answer, raw
from ..conftest import CANARY_KEY, SUMMARY, new_company
from ._harness import open_api, pool_state, raises, record_figures, sync_raises

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

MiB = 1024 * 1024


@functools.cache
def _gzip_bomb() -> bytes:
    """200 MiB of zeros, gzipped (~200 KB), built a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [packer.compress(block) for _ in range(200)]
    parts.append(packer.flush())
    return b"".join(parts)


async def _peak_during(coro: object) -> tuple[BaseException | None, int]:
    """Run ``coro`` under tracemalloc; return its error and the traced peak in bytes."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    error: BaseException | None = None
    try:
        await coro  # type: ignore[misc]
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


# -- row 23: size caps ----------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "close-delimited"])
async def test_row23_a_5_mib_body_is_refused_and_its_connection_closed(
    mode: str, server: MisbehavingServer, framing: str
) -> None:
    big = b'{"companyId": "' + b"x" * (5 * MiB) + b'"}'
    if framing == "content-length":
        server.then(answer(200, big))
    else:  # no length: the body runs until the server closes, the cap must still hold
        server.then(raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + big))
    async with open_api(mode, base_url=server.url) as api:
        error, peak = await _peak_during(api.request_sync(new_company()))
        assert isinstance(error, ResponseTooLargeError) and error.attempts == 1
        assert pool_state(api.transport)[1] == 0  # not returned to the pool as active
        await api.request_sync(new_company())  # the next call works, on a new connection
    assert server.stats.connections_made == 2
    assert peak < 10 * MiB, peak
    record_figures(f"row23_{framing}_5MiB", traced_peak_MiB=round(peak / MiB, 2))


async def test_row23_gzip_bomb_stops_at_the_decoded_cap_with_bounded_memory(
    mode: str, server: MisbehavingServer
) -> None:
    bomb = _gzip_bomb()
    server.then(answer(200, bomb, {"Content-Encoding": "gzip"}))
    async with open_api(mode, base_url=server.url) as api:
        error, peak = await _peak_during(api.request_sync(new_company()))
    assert isinstance(error, ResponseTooLargeError) and "decoded" in str(error)
    assert error.attempts == 1
    assert peak < 10 * MiB, peak
    assert server.wait_idle()  # the connection was closed, not pooled
    record_figures(
        "row23_gzip_bomb",
        compressed_KB=len(bomb) // 1024,
        expands_to_MiB=200,
        traced_peak_MiB=round(peak / MiB, 2),
    )


@pytest.mark.parametrize("coding", ["gzip, gzip, gzip, gzip, gzip, gzip", "br", "compress"])
async def test_row23_stacked_or_unknown_encodings_are_refused_without_retry(
    mode: str, server: MisbehavingServer, coding: str
) -> None:
    server.always(answer(200, gzip.compress(SUMMARY_BYTES), {"Content-Encoding": coding}))
    async with open_api(mode, base_url=server.url) as api:
        exc = await raises(APIConnectionError, api.request_sync(new_company()))
    assert "content encoding" in str(exc) and exc.attempts == 1  # a replay would be the same
    assert server.requests == 1


@pytest.mark.parametrize("coding", ["gzip", "deflate", "identity"])
async def test_row23_one_encoding_is_decoded(
    mode: str, server: MisbehavingServer, coding: str
) -> None:
    encoders: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "identity": bytes,
    }
    body = encoders[coding](SUMMARY_BYTES)
    server.then(answer(200, body, {"Content-Encoding": coding}))
    async with open_api(mode, base_url=server.url) as api:
        summary = await api.request_sync(new_company())
    assert summary.commerce_sync_id == SUMMARY["commerceSyncId"]


# -- row 24: malformed JSON -----------------------------------------------------------------

MALFORMED = {
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "5000-digit-int": b'{"syncStatusCode": ' + b"9" * 5000 + b"}",
    "invalid-utf8": b'{"companyId": "\xff\xfe"}',
    "nan": b'{"syncStatusCode": NaN}',
    "empty": b"",
    "html": b"<html><body>Bad gateway</body></html>",
    "array": b"[1, 2, 3]",
    "null": b"null",
    "truncated-json": b'{"companyId": "abc',
    "wrong-types": b'{"syncStatusCode": "soon", "dataPushed": "maybe"}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_row24_malformed_success_bodies_raise_validation_error(
    mode: str, server: MisbehavingServer, name: str
) -> None:
    body = MALFORMED[name]
    server.always(answer(200, body))
    async with open_api(mode, base_url=server.url) as api:
        exc = await raises(ResponseValidationError, api.request_sync(new_company()))
    # The sync did start (Codat said 200): keep the bytes, never retry, never crash.
    assert exc.body == body and exc.status_code == 200 and exc.attempts == 1
    assert server.requests == 1
    assert not isinstance(exc.__cause__, RecursionError)


async def test_row24_lenient_where_it_is_harmless(mode: str, server: MisbehavingServer) -> None:
    extra = {**SUMMARY, "brandNewField": {"nested": [1, 2]}, "syncStatus": None}
    server.then(
        answer(200, extra, {"Content-Type": "text/html"}),  # wrong content type, valid body
        answer(200, b"{}"),  # every field is optional
    )
    async with open_api(mode, base_url=server.url) as api:
        first = await api.request_sync(new_company())
        second = await api.request_sync(new_company())
    assert isinstance(first, SyncSummary) and first.model_extra == {
        "brandNewField": {"nested": [1, 2]}
    }
    assert second.commerce_sync_id is None


# -- row 27: redirects ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["other-listener", "same-host"])
async def test_row27_redirects_are_never_followed(
    mode: str, server: MisbehavingServer, status: int, where: str
) -> None:
    with MisbehavingServer() as target:
        location = target.url + "/steal" if where == "other-listener" else "/companies/x"
        server.always(answer(status, b"", {"Location": location}))
        async with open_api(mode, base_url=server.url) as api:
            exc = await raises(UnexpectedRedirectError, api.request_sync(new_company()))
        assert target.requests == 0 and target.stats.connections_made == 0
    assert exc.status_code == status and exc.attempts == 1 and server.requests == 1
    assert location in str(exc)


# -- row 28: TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[MisbehavingServer]:
    with MisbehavingServer(tls=_server_context(ca.issue_cert("127.0.0.1", "localhost"))) as srv:
        yield srv


async def test_row28_untrusted_ca_fails_at_once(mode: str, tls_server: MisbehavingServer) -> None:
    # No verify=: the system trust store, which has never heard of this CA.
    async with open_api(mode, base_url=tls_server.url) as api:
        exc = await raises(APITLSError, api.request_sync(new_company()))
    assert exc.attempts == 1 and exc.request_sent is False
    assert tls_server.stats.connections_made == 1 and tls_server.requests == 0


async def test_row28_wrong_hostname_fails_at_once(
    mode: str, ca: trustme.CA, ca_bundle: Path
) -> None:
    context = _server_context(ca.issue_cert("api.codat.io"))
    with MisbehavingServer(tls=context) as srv:
        async with open_api(mode, base_url=srv.url, verify=str(ca_bundle)) as api:
            exc = await raises(APITLSError, api.request_sync(new_company()))
        assert srv.stats.connections_made == 1 and srv.requests == 0
    assert exc.attempts == 1


async def test_row28_expired_certificate_fails_at_once(
    mode: str, ca: trustme.CA, ca_bundle: Path
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    expired = ca.issue_cert(
        "127.0.0.1", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    with MisbehavingServer(tls=_server_context(expired)) as srv:
        async with open_api(mode, base_url=srv.url, verify=str(ca_bundle)) as api:
            exc = await raises(APITLSError, api.request_sync(new_company()))
        assert srv.stats.connections_made == 1
    assert exc.attempts == 1


@pytest.mark.parametrize("how", ["bundle-path", "ssl-context"])
async def test_row28_a_custom_ca_works(
    mode: str, tls_server: MisbehavingServer, ca: trustme.CA, ca_bundle: Path, how: str
) -> None:
    if how == "bundle-path":
        verify: object = str(ca_bundle)
    else:
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    async with open_api(mode, base_url=tls_server.url, verify=verify) as api:
        summary = await api.request_sync(new_company())
    assert isinstance(summary, SyncSummary)
    assert tls_server.seen[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("verify", [False, 0, "", b"/etc/ssl"])
def test_row28_verification_cannot_be_turned_off(verify: object) -> None:
    from codat_commerce_async import AsyncSyncClient

    for build in (AsyncSyncClient, SyncClient):
        exc = sync_raises(
            ConfigurationError,
            lambda build=build: build(api_key=CANARY_KEY, verify=verify),  # type: ignore[misc]
        )
        assert "verif" in str(exc) or "CA bundle" in str(exc)
