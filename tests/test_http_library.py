"""Choosing the HTTP library: explicit, never because a library happens to be installed.

These tests name both libraries themselves, so they check the same things whichever
library the rest of the suite runs on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import httpx2
import pytest

from codat_commerce_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncSyncClient,
    ConfigurationError,
    SyncClient,
)
from codat_commerce_async.testing import FakeCodat

from .conftest import BASE_URL, CANARY_KEY, COMPANY, ENV_VAR, SUMMARY

LIBRARIES = {"httpx": httpx, "httpx2": httpx2}


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def ok(request: object) -> object:
    return None


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["httpx", "httpx2"])
async def test_http_library_argument_builds_everything_with_that_library(
    name: str, no_env: None
) -> None:
    lib = LIBRARIES[name]
    seen: list[object] = []

    def handler(request: object) -> object:
        seen.append(request)
        return lib.Response(200, json=SUMMARY)

    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=BASE_URL, transport=lib.MockTransport(handler)
    ) as inferred:
        raw = await inferred.sync.with_raw_response.request_sync(COMPANY)
    assert inferred.http_library == name
    assert isinstance(seen[0], lib.Request) and isinstance(raw.http_response, lib.Response)
    assert isinstance(raw.headers, lib.Headers)
    assert isinstance(inferred.timeout, lib.Timeout) and isinstance(inferred.base_url, lib.URL)
    user_agent = raw.http_response.request.headers["user-agent"]
    assert f" {name}/{lib.__version__}" in user_agent

    async with AsyncSyncClient(api_key=CANARY_KEY, http_library=name) as own_pool:
        assert own_pool.http_library == name


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["httpx", "httpx2"])
async def test_a_borrowed_client_decides_the_library(name: str, no_env: None) -> None:
    lib = LIBRARIES[name]
    async with lib.AsyncClient(
        transport=lib.MockTransport(lambda r: lib.Response(200, json=SUMMARY))
    ) as http:
        async with AsyncSyncClient(api_key=CANARY_KEY, base_url=BASE_URL, http_client=http) as c:
            raw = await c.sync.with_raw_response.request_sync(COMPANY)
        assert c.http_library == name and isinstance(raw.http_response, lib.Response)
        assert not http.is_closed  # still the caller's


@pytest.mark.anyio
async def test_being_installed_is_not_a_choice(no_env: None) -> None:
    assert "httpx2" in sys.modules  # imported above, so installed and loaded
    async with AsyncSyncClient(api_key=CANARY_KEY) as client:
        assert client.http_library == "httpx"


def test_the_blocking_client_takes_the_same_switch(no_env: None) -> None:
    for name in (None, "httpx2"):
        blocking = SyncClient(api_key=CANARY_KEY, http_library=name)  # type: ignore[arg-type]
        try:
            assert blocking.http_library == (name or "httpx")
        finally:
            blocking.close()


@pytest.mark.anyio
async def test_the_environment_variable_chooses_when_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, "httpx2")
    async with AsyncSyncClient(api_key=CANARY_KEY) as client:
        assert client.http_library == "httpx2"
    # An explicit argument, or the object passed in, wins over the environment.
    async with AsyncSyncClient(api_key=CANARY_KEY, http_library="httpx") as client:
        assert client.http_library == "httpx"
    async with AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(ok)) as client:
        assert client.http_library == "httpx"
    monkeypatch.setenv(ENV_VAR, "requests")
    with pytest.raises(ConfigurationError, match="http_library must be one of"):
        AsyncSyncClient(api_key=CANARY_KEY)


@pytest.mark.parametrize(
    ("library", "options", "message"),
    [
        ("httpx", {"transport": httpx2.MockTransport(ok)}, "transport is an httpx2 object"),
        ("httpx2", {"transport": httpx.MockTransport(ok)}, "transport is an httpx object"),
        ("aiohttp", {}, "must be one of 'httpx', 'httpx2'"),
    ],
)
def test_contradictions_are_refused_before_anything_is_built(
    library: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AsyncSyncClient(api_key=CANARY_KEY, http_library=library, **options)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_mismatched_or_foreign_http_client_is_refused() -> None:
    async with httpx2.AsyncClient() as http:
        with pytest.raises(ConfigurationError, match="http_client is an httpx2 object"):
            AsyncSyncClient(api_key=CANARY_KEY, http_client=http, http_library="httpx")
    with pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient or an httpx2\.AsyncClient"):
        AsyncSyncClient(api_key=CANARY_KEY, http_client=object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_httpx2_timeout_is_accepted_on_either_library(no_env: None) -> None:
    timeout = httpx2.Timeout(3.0, connect=1.0)
    async with AsyncSyncClient(api_key=CANARY_KEY, timeout=timeout) as client:
        assert client.timeout == httpx.Timeout(3.0, connect=1.0)
    async with AsyncSyncClient(api_key=CANARY_KEY, timeout=timeout, http_library="httpx2") as c:
        assert c.timeout == timeout


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raised", "expected", "phase"),
    [
        (httpx2.ConnectTimeout("x"), APITimeoutError, "connect"),
        (httpx2.ReadTimeout("x"), APITimeoutError, "read"),
        (httpx2.PoolTimeout("x"), APITimeoutError, "pool"),
        (httpx2.ConnectError("x"), APIConnectionError, None),
        (httpx2.RemoteProtocolError("x"), APIConnectionError, None),
        # A custom transport on httpx2 that wraps an httpx client: still typed.
        (httpx.ReadTimeout("x"), APITimeoutError, "read"),
    ],
)
async def test_httpx2_errors_never_escape(
    raised: Exception, expected: type[APIConnectionError], phase: str | None
) -> None:
    def handler(request: object) -> object:
        raise raised

    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url=BASE_URL,
        transport=httpx2.MockTransport(handler),
        max_retries=0,
    ) as client:
        with pytest.raises(expected) as info:
            await client.sync.request_sync(COMPANY)
    assert type(info.value) is expected
    assert isinstance(info.value.request, httpx2.Request)
    if phase is not None:
        assert info.value.phase == phase  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_the_fake_serves_either_library(no_env: None) -> None:
    fake = FakeCodat()
    for name, lib in LIBRARIES.items():
        async with fake.client(http_library=name) as http:  # type: ignore[arg-type]
            assert isinstance(http, lib.AsyncClient)
        transport = fake.transport(http_library=name)  # type: ignore[arg-type]
        async with AsyncSyncClient(
            api_key=fake.api_key, base_url="http://localhost", transport=transport
        ) as client:
            await client.sync.request_sync(COMPANY)
            assert client.http_library == name
    assert fake.syncs_started(COMPANY) == 2


def test_without_httpx2_installed_the_error_says_how_to_get_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["httpx2"] = None  # as if it were not installed
        from codat_commerce_async import AsyncSyncClient, ConfigurationError
        try:
            AsyncSyncClient(api_key="k" * 8, http_library="httpx2")
        except ConfigurationError as exc:
            print(exc)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert "pip install 'codat-commerce-async[httpx2]'" in done.stdout


def test_under_alias_httpx_the_sdk_reports_httpx2() -> None:
    """``httpx2.alias_httpx()`` (what anthropic-sdk-python recommends) makes ``import httpx``
    give httpx2: the SDK then runs on httpx2 and says so."""
    script = textwrap.dedent(
        """
        import httpx2
        httpx2.alias_httpx()
        import anyio
        from codat_commerce_async import AsyncSyncClient

        async def main():
            async with AsyncSyncClient(api_key="k" * 8) as client:
                print(client.http_library, type(client.timeout).__module__)

        anyio.run(main)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["httpx2", "httpx2"]


@pytest.mark.anyio
async def test_an_httpx2_error_on_an_httpx_client_is_typed_too() -> None:
    """A custom httpx transport that wraps an httpx2 client during a migration."""

    def handler(request: object) -> object:
        raise httpx2.ConnectTimeout("x")

    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=BASE_URL, transport=httpx.MockTransport(handler), max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.sync.request_sync(COMPANY)
    assert info.value.phase == "connect" and info.value.request_sent is False
