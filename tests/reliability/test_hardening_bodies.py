"""Issue 9, defects 5 and 7: partial compressed bodies are broken transfers, and
header-derived integers never raise. Real loopback sockets, both clients."""

from __future__ import annotations

import gzip
import uuid
import zlib

import pytest

from codat_commerce_async import APIConnectionError

from .._sockets import SUMMARY_BYTES, MisbehavingServer, answer
from ._harness import open_api, raises

pytestmark = pytest.mark.anyio


def _company() -> str:
    return str(uuid.uuid4())


def _deflate(body: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


def _cut_streams() -> dict[str, tuple[str, bytes]]:
    full = gzip.compress(SUMMARY_BYTES)
    deflated = _deflate(SUMMARY_BYTES)
    return {
        # Cut inside the deflate data: decodes to a prefix of the JSON.
        "gzip-cut-in-half": ("gzip", full[: len(full) // 2]),
        # Every byte of data but no CRC32/length trailer: nothing verifies it.
        "gzip-without-trailer": ("gzip", full[:-8]),
        "deflate-without-adler": ("deflate", deflated[:-4]),
    }


@pytest.mark.parametrize("case", sorted(_cut_streams()))
async def test_incomplete_compressed_body_is_retried_with_the_same_key_never_parsed(
    mode: str, server: MisbehavingServer, case: str
) -> None:
    coding, body = _cut_streams()[case]
    # Correct HTTP framing (Content-Length matches what is sent): only the coding is short.
    server.then(answer(200, body, {"Content-Encoding": coding}))
    server.always(answer(200, SUMMARY_BYTES))
    async with open_api(mode, base_url=server.url) as api:
        summary = await api.request_sync(_company())
    assert summary.company_id  # the second, complete answer was parsed
    keys = [seen.headers.get("idempotency-key") for seen in server.seen]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]


async def test_incomplete_compressed_body_every_time_is_a_connection_error(
    mode: str, server: MisbehavingServer
) -> None:
    coding, body = _cut_streams()["gzip-without-trailer"]
    server.always(answer(200, body, {"Content-Encoding": coding}))
    async with open_api(mode, base_url=server.url, max_retries=1) as api:
        error = await raises(APIConnectionError, api.request_sync(_company()))
    assert error.request_sent and error.attempts == 2
    assert "compressed stream" in str(error)


async def test_complete_gzip_body_is_still_accepted(mode: str, server: MisbehavingServer) -> None:
    server.then(answer(200, gzip.compress(SUMMARY_BYTES), {"Content-Encoding": "gzip"}))
    async with open_api(mode, base_url=server.url) as api:
        summary = await api.request_sync(_company())
    assert summary.company_id and server.requests == 1


@pytest.mark.parametrize("value", ["²", "¹", "12²", " 7 ", "-1", "", "1e3", "x"])
async def test_rate_limit_remaining_never_raises(
    mode: str, server: MisbehavingServer, value: str
) -> None:
    server.then(answer(200, SUMMARY_BYTES, {"X-Rate-Limit-Remaining": value}))
    async with open_api(mode, base_url=server.url) as api:
        response = await api.raw_request_sync(_company())
    expected = 7 if value == " 7 " else None
    assert response.rate_limit_remaining == expected
