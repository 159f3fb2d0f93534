"""Shared fixtures and helpers: a scripted in-memory Codat, the virtual clock
(``ManualClock``, the public seam), company ids and the canary key."""

from __future__ import annotations

import gc
import json
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from codat_commerce_async import AsyncSyncClient
from codat_commerce_async.testing import ManualClock

from ._http import LIBRARIES, httpx, select, selected

#: The SDK's documented switch; the suite sets it to the library it runs on.
ENV_VAR = "CODAT_HTTP_LIBRARY"

#: The verifying TLS context of the transports tests build themselves, shared as the SDK
#: shares its default one: loading the CA bundle costs ~30 ms of CPU per transport.
TLS = httpx.create_ssl_context(trust_env=False)

#: Used everywhere instead of a real key; the suite checks it never leaks.
CANARY_KEY = "canary-key-7f3c9a1e5b2d"
COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"
BASE_URL = "https://api.codat.io"

SUMMARY = {
    "syncDateRangeUtc": {"start": "2024-06-01T00:00:00Z", "finish": "2024-06-30T00:00:00Z"},
    "companyId": COMPANY,
    "commerceSyncId": "8d0a044e-b683-4fc9-bd0d-bfb2ca5731b7",
    "syncStatusCode": 1000,
    "syncStatus": "Started",
    "errorMessage": None,
    "syncExceptionMessage": None,
    "syncUtc": "2024-06-30T00:00:00Z",
    "dataConnections": [],
    "dataPushed": False,
}


def error_body(status: int, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "service": "PublicApi",
        "error": message,
        "correlationId": f"corr-{status}",
        "canBeRetried": "Unknown",
        **extra,
    }


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class ScriptedCodat:
    """An httpx transport handler that answers from a script, then with the default."""

    script: list[Reply] = field(default_factory=list)
    default: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(
        200, json=SUMMARY
    )
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply: Reply = self.script.pop(0) if self.script else self.default
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    def then(self, *replies: Reply) -> ScriptedCodat:
        self.script.extend(replies)
        return self

    @property
    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def virtual_clock() -> ManualClock:
    """The suite's clock: virtual time from 1000 s, seeded jitter (the public seam)."""
    return ManualClock(1000.0)


def in_child(fn: Callable[[], int]) -> int:
    """Run ``fn()`` in a forked child; return its exit code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def new_company() -> str:
    """A fresh company id."""
    return str(uuid.uuid4())


def pytest_collection_finish(session: pytest.Session) -> None:
    """What importing and collecting made lives for the whole run: freeze it out of the
    garbage collector's scans, so the suite's ``gc.collect()`` calls (unclosed-client
    warnings, leak checks) and the automatic full collections walk only what tests made.
    Hypothesis is imported first: at import it registers trio's random generator after
    checking its referrers, which ``gc.get_referrers`` cannot see once frozen."""
    import hypothesis  # noqa: F401

    gc.freeze()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--http-library",
        choices=LIBRARIES,
        default=None,
        help="the HTTP library the whole suite runs on (default: CODAT_HTTP_LIBRARY, else httpx)",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--http-library") or os.environ.get(ENV_VAR, "").strip() or "httpx"
    if name not in LIBRARIES:
        raise pytest.UsageError(f"{ENV_VAR}={name!r}: expected one of {LIBRARIES}")
    select(name)
    # Clients built without a library, the fake's transports and subprocesses follow it.
    os.environ[ENV_VAR] = name


def pytest_report_header() -> str:
    return f"HTTP library: {selected()}"


@pytest.fixture
def http_library() -> str:
    """The library the suite runs on (``"httpx"`` or ``"httpx2"``), for the few tests
    whose expectations differ between them (each says why)."""
    return selected()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """anyio's plugin runs each anyio test on every installed backend (asyncio and
    trio); a test or module marked ``asyncio_only`` is parametrised with asyncio alone
    (nothing is deselected: those tests are generated for asyncio only).

    The rule: both backends where the behaviour depends on the runtime (cancellation,
    deadlines and timers, task groups and bulk runs, close and loop lifecycle, threads);
    asyncio only where it is the SDK's own logic over the same anyio code (status and
    body handling, secrets, retry decisions, the gate and the cap over real sockets), so
    a second run would repeat the same path at the same cost."""
    marked = metafunc.definition.get_closest_marker("asyncio_only")
    own = any(
        "anyio_backend" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")
    )
    if marked and not own and "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ["asyncio"], scope="module")


@pytest.fixture
def codat() -> ScriptedCodat:
    return ScriptedCodat()


@pytest.fixture
def clock() -> ManualClock:
    """The virtual clock of the ``client`` fixture (and of ``fake`` in tests/testing)."""
    return virtual_clock()


@pytest.fixture
async def client(codat: ScriptedCodat, clock: ManualClock) -> AsyncIterator[AsyncSyncClient]:
    async with AsyncSyncClient(
        api_key=CANARY_KEY, base_url=BASE_URL, transport=httpx.MockTransport(codat), clock=clock
    ) as c:
        yield c


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CODAT_API_KEY", "CODAT_BASE_URL", "CODAT_LOG"):
        monkeypatch.delenv(name, raising=False)
