"""Matrix rows 25, 26, 29, 30 and 31: hostile ids, keys and headers, the canary key,
base URLs and the key from the environment, through both clients."""

from __future__ import annotations

import base64
import functools
import logging
import uuid
from collections.abc import Callable

import pytest

from codat_commerce_async import (
    APIConnectionError,
    AsyncSyncClient,
    ConfigurationError,
    SyncClient,
)
from codat_commerce_async.testing import FakeCodat, FakeCodatServer

from .._http import httpx
from .._sockets import MisbehavingServer
from ..conftest import CANARY_KEY, new_company
from ._harness import CANARY_FORMS, Canary, open_api, raises, sync_raises

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

CANONICAL = "8a210b68-6988-11ed-a1eb-0242ac120002"
BUILDERS: tuple[Callable[..., object], ...] = (AsyncSyncClient, SyncClient)

# -- row 25: company ids --------------------------------------------------------------------

HOSTILE_IDS = [
    "../../x",
    "a/b",
    "x?admin=1",
    "x#f",
    "%2e%2e",
    "",
    " ",
    "é",
    f"{CANONICAL}\r\nX-Injected: 1",
    "x" * 10_000,
    f"{CANONICAL}/../../admin",
    f"{CANONICAL}?a=1",
    "{" + CANONICAL,
    CANONICAL + "}",
    f" {CANONICAL}",
    "8a210b68-6988-11ed-a1eb-0242ac12000",  # one digit short
    "8a210b68-6988-11ed-a1eb-0242ac12000g",
    "\x00",
]


@pytest.mark.parametrize("company_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
async def test_row25_anything_but_a_uuid_is_refused_before_any_io(
    mode: str, server: MisbehavingServer, company_id: str
) -> None:
    async with open_api(mode, base_url=server.url) as api:
        exc = await raises(ValueError, api.request_sync(company_id))
        await raises(
            ValueError,
            api.call(
                "request_sync_for_date_range", company_id, start="2024-01-01", finish="2024-01-02"
            ),
        )
        await raises(ValueError, api.call("get_sync_status", CANONICAL, company_id))
    assert "company_id" in str(exc) or "sync_id" in str(exc)
    assert server.requests == 0 and server.stats.connections_made == 0


@pytest.mark.parametrize(
    "company_id",
    [
        CANONICAL.upper(),
        "{" + CANONICAL + "}",
        CANONICAL.replace("-", ""),
        uuid.UUID(CANONICAL),
    ],
    ids=["upper", "braces", "no-hyphens", "uuid-object"],
)
async def test_row25_valid_uuids_are_normalised(
    mode: str, server: MisbehavingServer, company_id: object
) -> None:
    async with open_api(mode, base_url=server.url) as api:
        await api.request_sync(company_id)
    (seen,) = server.seen
    assert seen.path == f"/companies/{CANONICAL}/sync/commerce/latest"


# -- row 26: control characters in what we send ----------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        CANARY_KEY + "\r\nX-Injected: 1",
        CANARY_KEY + "\x00",
        "canary\nkey",
        "\t" + CANARY_KEY + "\x7f",
    ],
    ids=["crlf", "nul", "lf-inside", "del"],
)
def test_row26_control_characters_in_the_key_are_refused_without_echo(key: str) -> None:
    for build in BUILDERS:
        exc = sync_raises(ConfigurationError, functools.partial(build, api_key=key))
        assert "not shown" in str(exc)
    sync_raises(ConfigurationError, lambda: AsyncSyncClient(auth_header="Basic " + key))


@pytest.mark.parametrize("padding", ["\n", "  \r\n", "\t"])
async def test_row26_outer_whitespace_of_a_pasted_key_is_stripped(
    mode: str, server: MisbehavingServer, padding: str
) -> None:
    async with open_api(mode, base_url=server.url, api_key=padding + CANARY_KEY + padding) as api:
        await api.request_sync(CANONICAL)
    expected = "Basic " + base64.b64encode(CANARY_KEY.encode()).decode()
    assert server.seen[0].headers["authorization"] == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Trace": "a\r\nX-Injected: 1"},
        {"X-Trace": "a\x00"},
        {"X-Bad Name": "1"},
        {"Authorization": "Bearer other"},
        {"Idempotency-Key": str(uuid.uuid4())},
    ],
    ids=["crlf", "nul", "bad-name", "override-auth", "override-key"],
)
def test_row26_bad_extra_headers_are_refused(headers: dict[str, str]) -> None:
    for build in BUILDERS:
        sync_raises(
            ConfigurationError,
            functools.partial(build, api_key=CANARY_KEY, default_headers=headers),
        )


@pytest.mark.parametrize(
    # Fixed values: parametrize ids must be the same in every process that collects them.
    "key",
    [
        "3f2b8c1e-5d4a-4e7b-9c6f-0a1b2c3d4e5f\r\nX-Injected: 1",
        "not-a-guid",
        "",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7 ",
    ],
)
async def test_row26_bad_idempotency_keys_are_refused_before_any_io(
    mode: str, server: MisbehavingServer, key: str
) -> None:
    async with open_api(mode, base_url=server.url) as api:
        await raises(ValueError, api.request_sync(CANONICAL, idempotency_key=key))
    assert server.stats.connections_made == 0


async def test_row26_lower_layer_errors_quoting_the_key_are_withheld(
    mode: str, server: MisbehavingServer, http_library: str
) -> None:
    # Validation stops this at construction; force it past validation to prove the
    # second line of defence: h11 quotes the illegal header value in its error.
    # (httpcore's own DEBUG trace logs that error verbatim; no SDK can scrub another
    # library's log lines, which is why the key is validated before httpx ever sees it.
    # That one logger is muted here: see docs/reliability.md, row 26. It differs by
    # library: httpx2's httpcore2 logs as "httpcore2.http11", just as verbatim.)
    trace = logging.getLogger("httpcore2.http11" if http_library == "httpx2" else "httpcore.http11")
    trace.setLevel(logging.INFO)
    try:
        # The caller's own client appends the newline in a request hook, after validation.
        async def corrupt(request: httpx.Request) -> None:
            request.headers["Authorization"] = request.headers["Authorization"] + "\n"

        http = httpx.AsyncClient(event_hooks={"request": [corrupt]})
        async with open_api(mode, base_url=server.url, http_client=http) as api:
            exc = await raises(APIConnectionError, api.request_sync(CANONICAL))
        await http.aclose()
    finally:
        trace.setLevel(logging.NOTSET)
    assert "withheld" in str(exc) and exc.attempts == 1  # not retried: it can never work
    assert exc.__cause__ is None and exc.__context__ is None  # that chain is dropped
    assert server.requests == 0


# -- row 29: the canary scanner itself -------------------------------------------------------


def test_row29_the_canary_scanner_catches_every_form() -> None:
    """The suite-wide scan would be worthless if it could not see a leak: feed it some."""
    for form in CANARY_FORMS:
        scanner = Canary()
        try:
            try:
                raise OSError(f"Illegal header value b'Basic {form}'")
            except OSError as inner:
                raise RuntimeError("wrapped") from inner
        except RuntimeError as exc:
            scanner.scan_exception(exc)
        assert len(scanner.findings) == 1, form
    assert base64.b64encode(CANARY_KEY.encode()).decode() in CANARY_FORMS


# -- row 30: base_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://api.codat.io", "https"),
        ("http://10.0.0.1:8080", "https"),
        ("https://user:pass@api.codat.io", "credentials"),
        ("https://api.codat.io?x=1", "query"),
        ("ftp://api.codat.io", "http"),
        ("https://api.codat.io\r\nX: 1", "control"),
        ("", "non-empty"),
    ],
)
def test_row30_unsafe_base_urls_are_refused(url: str, why: str) -> None:
    for build in BUILDERS:
        exc = sync_raises(
            ConfigurationError, functools.partial(build, api_key=CANARY_KEY, base_url=url)
        )
        assert why in str(exc)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://codat.example"]
)
async def test_row30_loopback_http_and_explicit_https_hosts_are_allowed(
    mode: str, url: str
) -> None:
    # A custom https host receives the key: allowed only because it is explicit (docs).
    async with open_api(mode, base_url=url) as api:
        assert str(api.base_url) == url


# -- row 31: the key from the environment ----------------------------------------------------


async def test_row31_key_from_the_environment(
    mode: str, server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODAT_API_KEY", CANARY_KEY + "\n")
    async with open_api(mode, base_url=server.url, api_key=None) as api:
        await api.request_sync(CANONICAL)
    async with open_api(mode, base_url=server.url, api_key="explicit-key-wins") as api:
        await api.request_sync(CANONICAL)
    sent = [seen.headers["authorization"] for seen in server.seen]
    assert sent == [
        "Basic " + base64.b64encode(CANARY_KEY.encode()).decode(),
        "Basic " + base64.b64encode(b"explicit-key-wins").decode(),
    ]


@pytest.mark.parametrize("value", [None, "", "   ", CANARY_KEY + "\r\nX: 1"])
def test_row31_missing_or_bad_key_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CODAT_API_KEY", raising=False)
    else:
        monkeypatch.setenv("CODAT_API_KEY", value)
    for build in (AsyncSyncClient, SyncClient):
        exc = sync_raises(ConfigurationError, build)
        assert "CODAT_API_KEY" in str(exc)


def test_row31_env_transport_settings_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # trust_env=False: a proxy variable cannot silently reroute the key.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    fake = FakeCodat()
    with FakeCodatServer(fake) as server:
        client = SyncClient(auth_header=fake.auth_header, base_url=server.base_url)
        with client:
            assert client.sync.request_sync(new_company()).commerce_sync_id  # went direct
    assert len(fake.requests) == 1
