"""Fixtures of the reliability suite: debug logging scanned for the canary key all
session long, loopback servers, and the figures report (``RELIABILITY_REPORT=1``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest

from codat_commerce_async.testing import FakeCodat, FakeCodatServer

from .._sockets import MisbehavingServer
from ..conftest import CANARY_KEY
from ._harness import CANARY, FIGURES, MODES, CanaryLogHandler

#: Loggers captured at DEBUG for the whole suite: ours, and the two layers below us.
#: (httpx2 logs as "httpx2" and "httpcore2.*"; both pairs are scanned whichever runs.)
_LOGGERS = ("codat_commerce_async", "httpx", "httpcore", "httpx2", "httpcore2")


@pytest.fixture(scope="package", autouse=True)
def canary_logging() -> Iterator[CanaryLogHandler]:
    """Debug logging on for the whole suite (as ``CODAT_LOG=debug`` would), every
    record scanned for the canary key; restored when the suite ends."""
    handler = CanaryLogHandler()
    saved = []
    for name in _LOGGERS:
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False  # see pytest_runtest_call below
    try:
        yield handler
    finally:
        for log, level, propagate in saved:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate
    record_scan_totals()


def record_scan_totals() -> None:
    FIGURES["canary"] = {
        "log_records_scanned": CANARY.records,
        "exceptions_scanned": CANARY.exceptions,
        "texts_scanned": CANARY.texts,
        "findings": len(CANARY.findings),
    }


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """pytest also hangs its capture handlers on loggers that do not propagate; inside
    this suite they would keep every record of a test in memory (tens of thousands in
    the load test, and noise in the leak test). The canary handler sees every record."""
    if "reliability" not in str(item.path):
        yield
        return
    detached = []
    for name in _LOGGERS:
        log = logging.getLogger(name)
        for handler in list(log.handlers):
            if not isinstance(handler, CanaryLogHandler):
                log.removeHandler(handler)
                detached.append((log, handler))
    try:
        yield
    finally:
        for log, handler in detached:
            log.addHandler(handler)


@pytest.fixture(autouse=True)
def canary_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test in which the canary key (or its base64) showed up anywhere."""
    before = len(CANARY.findings)
    yield
    new = CANARY.findings[before:]
    if new:
        pytest.fail("the API key leaked:\n" + "\n".join(new[:10]), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Failures are exceptions the suite saw too: scan them."""
    if call.excinfo is not None and "reliability" in str(item.path):
        CANARY.scan_exception(call.excinfo.value, f"test failure in {item.name}")
    yield


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Every matrix test runs through the async client and the blocking facade."""
    return str(request.param)


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as srv:
        yield srv


@pytest.fixture(scope="package")
def shared_fake_server() -> Iterator[FakeCodatServer]:
    """One fake Codat on a loopback port for this suite (starting uvicorn per test
    would cost ~0.2 s each), stopped when the suite ends (other suites check that no
    server thread is left); :func:`fake_server` resets it around every test."""
    with FakeCodatServer(FakeCodat(api_key=CANARY_KEY, seed=7)) as srv:
        yield srv


@pytest.fixture
def fake_server(shared_fake_server: FakeCodatServer) -> Iterator[FakeCodatServer]:
    """The shared fake, reset: no requests, syncs, keys or faults. Tests use their own
    fresh company ids, so a late answer from an earlier test cannot be mistaken."""
    shared_fake_server.fake.reset()
    yield shared_fake_server
    shared_fake_server.fake.reset()


@pytest.fixture
def fake(fake_server: FakeCodatServer) -> FakeCodat:
    return fake_server.fake


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """``RELIABILITY_REPORT=1`` prints the measured figures; a value ending in ``.json``
    also writes them there."""
    target = os.environ.get("RELIABILITY_REPORT", "")
    if not target or not FIGURES:
        return
    record_scan_totals()
    terminalreporter.section("reliability figures")
    for name, values in FIGURES.items():
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        terminalreporter.write_line(f"{name}: {shown}")
    if target.endswith(".json"):
        with open(target, "w", encoding="utf-8") as out:
            json.dump(FIGURES, out, indent=2, default=str)
