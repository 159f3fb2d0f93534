"""Settings are validated at construction, before any I/O, without leaking the key."""

from __future__ import annotations

import base64
import ssl

import pytest

from codat_commerce_async import (
    DEFAULT_TIMEOUT,
    AsyncSyncClient,
    ConfigurationError,
    SyncClient,
)
from codat_commerce_async._config import is_loopback_host, resolve_auth_header, resolve_base_url

from ._http import httpx
from .conftest import CANARY_KEY

pytestmark = pytest.mark.usefixtures("clean_env")


def test_api_key_becomes_basic_auth() -> None:
    expected = "Basic " + base64.b64encode(CANARY_KEY.encode()).decode()
    assert resolve_auth_header(CANARY_KEY, None) == expected


def test_auth_header_is_sent_verbatim() -> None:
    assert resolve_auth_header(None, "Basic abc=") == "Basic abc="


def test_env_key_is_the_fallback_and_the_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODAT_API_KEY", "from-env\n")
    assert resolve_auth_header(None, None) == "Basic " + base64.b64encode(b"from-env").decode()
    assert (
        resolve_auth_header("explicit", None) == "Basic " + base64.b64encode(b"explicit").decode()
    )


def test_no_credentials_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="CODAT_API_KEY"):
        AsyncSyncClient()
    with pytest.raises(ConfigurationError, match="CODAT_API_KEY"):
        SyncClient()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_key": "a\r\nX-Injected: 1" + CANARY_KEY}, "control characters"),
        ({"api_key": CANARY_KEY + "\x00"}, "control characters"),
        ({"api_key": "   "}, "empty"),
        ({"auth_header": "Basic " + CANARY_KEY + "\nX: 1"}, "control"),
        ({"auth_header": "Basic é" + CANARY_KEY}, "non-ASCII"),
        ({"api_key": CANARY_KEY, "auth_header": "Basic x"}, "not both"),
    ],
)
def test_bad_credentials_are_rejected_without_showing_them(
    kwargs: dict[str, str], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        AsyncSyncClient(**kwargs)  # type: ignore[arg-type]
    assert CANARY_KEY not in str(info.value)
    assert info.value.__cause__ is None


def test_key_with_outer_whitespace_is_stripped() -> None:
    assert resolve_auth_header(f"  {CANARY_KEY}\n", None) == resolve_auth_header(CANARY_KEY, None)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.codat.io", True),
        ("https://api.codat.io/", True),
        ("https://proxy.example/codat", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:1234", True),
        ("http://[::1]:8080", True),
        ("http://127.8.9.10", True),
        ("http://api.codat.io", False),
        ("http://10.0.0.1", False),
        ("https://user:pw@api.codat.io", False),
        ("https://api.codat.io?x=1", False),
        ("https://api.codat.io#frag", False),
        ("ftp://api.codat.io", False),
        ("api.codat.io", False),
        ("", False),
        ("https://api.codat.io\r\nX: 1", False),
    ],
)
def test_base_url_rules(url: str, ok: bool) -> None:
    if ok:
        assert str(resolve_base_url(url)).rstrip("/") == url.rstrip("/")
    else:
        with pytest.raises(ConfigurationError):
            resolve_base_url(url)


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("htps://api.codat.io", "did you mean 'https://api.codat.io'?"),
        ("api.codat.io/v2", "did you mean 'https://api.codat.io/v2'?"),
        ("https//api.codat.io", "did you mean 'https://api.codat.io'?"),
        ("ftp://api.codat.io?token=t0ps3cret", "did you mean 'https://api.codat.io'?"),
        ("https:///nohost", "such as 'https://api.codat.io'"),
    ],
)
def test_a_base_url_typo_shows_the_value_and_a_hint(url: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_base_url(url)
    message = str(caught.value)
    assert message.startswith("base_url must be an absolute http(s) URL")
    assert repr(url.split("?")[0]) in message  # the value as given, its query cut
    assert hint in message
    assert "t0ps3cret" not in message


def test_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODAT_BASE_URL", "http://127.0.0.1:9")
    assert str(resolve_base_url(None)) == "http://127.0.0.1:9"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.255.0.1", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "192.168.1.1", "localhost.evil"])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ok": "a\r\nInjected: 1"},
        {"X-Ok": "nul\x00"},
        {"Bad Name": "v"},
        {"Authorization": "Basic other"},
        {"Idempotency-Key": "x"},
        {"X-Ok": 1},
    ],
)
def test_bad_default_headers_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        AsyncSyncClient(api_key=CANARY_KEY, default_headers=headers)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"deadline": 0},
        {"attempt_timeout": -2},
        {"max_concurrency": 0},
        {"max_response_size": 0},
        {"timeout": -1},
        {"verify": False},
        {"http_client": "not a client"},
    ],
)
def test_bad_settings_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        AsyncSyncClient(api_key=CANARY_KEY, **kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_defaults_are_explicit() -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY)
    try:
        # DEFAULT_TIMEOUT is an httpx.Timeout; client.timeout is of the client's library.
        assert isinstance(client.timeout, httpx.Timeout)
        assert client.timeout.as_dict() == DEFAULT_TIMEOUT.as_dict()
        assert client.timeout.connect == 5 and client.timeout.read == 30
        assert client.timeout.write == 30 and client.timeout.pool == 10
        assert client.max_retries == 2 and client.deadline == 120
        assert client.max_concurrency == 10
        assert str(client.base_url) == "https://api.codat.io"
        # Redirects are never followed: tests/test_client.py checks the 3xx error.
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_timeout_none_means_no_timeout_and_not_given_means_default() -> None:
    async with AsyncSyncClient(api_key=CANARY_KEY, timeout=None) as client:
        assert client.timeout == httpx.Timeout(None)
        assert client.with_options(timeout=3).timeout == httpx.Timeout(3)
        assert client.with_options().timeout == httpx.Timeout(None)


@pytest.mark.anyio
async def test_custom_ca_bundle_or_context() -> None:
    ctx = ssl.create_default_context()
    async with AsyncSyncClient(api_key=CANARY_KEY, verify=ctx):
        pass
    with pytest.raises(ConfigurationError, match="CA bundle"):
        AsyncSyncClient(api_key=CANARY_KEY, verify="/nonexistent/ca.pem")


@pytest.mark.anyio
async def test_injected_client_caps_concurrency_at_its_pool() -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4)) as http:
        client = AsyncSyncClient(api_key=CANARY_KEY, http_client=http, max_concurrency=50)
        assert client.max_concurrency == 4
        await client.aclose()
        assert not http.is_closed  # the caller owns it


def test_repr_hides_the_key() -> None:
    client = AsyncSyncClient(api_key=CANARY_KEY)
    try:
        encoded = base64.b64encode(CANARY_KEY.encode()).decode()
        for text in (repr(client), str(client), repr(client.sync)):
            assert CANARY_KEY not in text and encoded not in text
        assert "redacted" in repr(client)
    finally:
        import anyio

        anyio.run(client.aclose)
