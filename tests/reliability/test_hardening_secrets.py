"""Issue 9, defect 6: secrets are scrubbed before anything is cut, and no part of a
URL's userinfo is ever echoed. Real loopback sockets, both clients."""

from __future__ import annotations

import base64
import uuid

import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    BadRequestError,
    ConfigurationError,
    SyncClient,
    UnexpectedRedirectError,
)

from .._sockets import MisbehavingServer, answer
from ..conftest import CANARY_KEY
from ._harness import open_api, raises

pytestmark = pytest.mark.anyio

_BASIC = base64.b64encode(CANARY_KEY.encode()).decode()


def _company() -> str:
    return str(uuid.uuid4())


def _fragments(secret: str) -> list[str]:
    """Every 6-character piece of ``secret``: none may survive in a message."""
    return [secret[i : i + 6] for i in range(len(secret) - 5)]


def _assert_no_part_of(secret: str, text: str) -> None:
    leaked = [piece for piece in _fragments(secret) if piece in text]
    assert not leaked, f"part of a secret is visible: {leaked[:3]}"


@pytest.mark.parametrize("secret", [CANARY_KEY, _BASIC, f"Basic {_BASIC}"])
@pytest.mark.parametrize("shift", [3, 8, 12])
async def test_codat_error_text_is_scrubbed_before_it_is_cut(
    mode: str, server: MisbehavingServer, secret: str, shift: int
) -> None:
    # The secret straddles the 500-character cut of Codat's error text.
    text = "e" * (500 - shift) + secret + " tail"
    server.always(answer(400, {"error": text, "statusCode": 400}))
    async with open_api(mode, base_url=server.url) as api:
        error = await raises(BadRequestError, api.request_sync(_company()))
    _assert_no_part_of(secret, str(error))
    _assert_no_part_of(secret, repr(error))


@pytest.mark.parametrize("shift", [3, 8, 12])
async def test_redirect_location_is_scrubbed_before_it_is_cut(
    mode: str, server: MisbehavingServer, shift: int
) -> None:
    # Not the canary key: httpcore's own DEBUG log of the response headers would show
    # it (the suite scans those logs); what is tested here is our message.
    key = "other-key-4d1e8b2c9a7f"
    prefix = "https://elsewhere.example/"
    location = prefix + "p" * (200 - len(prefix) - shift) + key
    server.always(answer(302, b"", {"Location": location}))
    async with open_api(mode, base_url=server.url, api_key=key) as api:
        error = await raises(UnexpectedRedirectError, api.request_sync(_company()))
    _assert_no_part_of(key, str(error))


@pytest.mark.parametrize("password", ["hunter2-pw", "pa/ss-word9", "pw#frag-x9z", "pw?q=zz-y7"])
async def test_redirect_location_never_shows_userinfo(
    mode: str, server: MisbehavingServer, password: str
) -> None:
    server.always(answer(307, b"", {"Location": f"https://mallory:{password}@evil.example/x"}))
    async with open_api(mode, base_url=server.url) as api:
        error = await raises(UnexpectedRedirectError, api.request_sync(_company()))
    assert "evil.example" in str(error)  # still useful to read
    _assert_no_part_of(password, str(error))
    assert "mallory" not in str(error)


@pytest.mark.parametrize("password", ["s3cr/et-pw", "s3cr#et-pw", "s3cr?et-pw", "s3cr@et-pw"])
@pytest.mark.parametrize("factory", [AsyncSyncClient, SyncClient])
def test_base_url_with_credentials_never_echoes_them(password: str, factory: type) -> None:
    url = f"https://someuser:{password}@api.codat.io"
    with pytest.raises(ConfigurationError) as info:
        factory(api_key=CANARY_KEY, base_url=url)
    text = str(info.value) + repr(info.value)
    for piece in ("s3cr", "et-pw", "someuser"):
        assert piece not in text
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("shift", [3, 10])
async def test_an_odd_content_encoding_is_scrubbed_before_it_is_cut(
    mode: str, server: MisbehavingServer, shift: int
) -> None:
    from codat_commerce_async import APIConnectionError

    key = "other-key-4d1e8b2c9a7f"  # not the canary: httpcore logs response headers
    server.always(answer(200, b"{}", {"Content-Encoding": "b" * (40 - shift) + key}))
    async with open_api(mode, base_url=server.url, api_key=key) as api:
        error = await raises(APIConnectionError, api.request_sync(_company()))
    assert "content encoding" in str(error)
    _assert_no_part_of(key, str(error))
