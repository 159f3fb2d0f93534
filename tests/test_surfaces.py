"""Each operation is declared once; the four surfaces derived from it must agree.

``client.sync`` (async), its ``with_raw_response``, and the same two on the blocking
``SyncClient``: same names, same parameters, and the return kind each surface promises.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from codat_commerce_async import AsyncSyncClient, BlockingBulkRun, BulkRun, SyncClient

from ._http import httpx
from .conftest import CANARY_KEY, COMPANY, ScriptedCodat

#: The calls that are one HTTP request each (they have raw twins).
ENDPOINTS = {
    "request_sync",
    "request_sync_for_date_range",
    "get_sync_status",
    "get_latest_sync",
    "get_last_successful_sync",
    "list_syncs",
    "get_status",
}
BULK = {"request_sync_many", "request_sync_for_date_range_many", "wait_for_many"}
HELPERS = {"wait_for_sync"}


def _public(surface: object) -> set[str]:
    return {
        name
        for name in dir(surface)
        if not name.startswith("_")
        and name != "with_raw_response"
        and callable(getattr(surface, name, None))
    }


@pytest.fixture
def surfaces(codat: ScriptedCodat) -> Iterator[dict[str, object]]:
    transport = httpx.MockTransport(codat)
    client = AsyncSyncClient(api_key=CANARY_KEY, transport=transport)
    with SyncClient(api_key=CANARY_KEY, transport=transport) as blocking:
        yield {
            "async": client.sync,
            "async raw": client.sync.with_raw_response,
            "blocking": blocking.sync,
            "blocking raw": blocking.sync.with_raw_response,
        }
    import anyio

    anyio.run(client.aclose)


def test_every_surface_has_its_methods_and_no_more(surfaces: dict[str, object]) -> None:
    everything = ENDPOINTS | BULK | HELPERS
    assert _public(surfaces["async"]) == everything
    assert _public(surfaces["blocking"]) == everything
    assert _public(surfaces["async raw"]) == ENDPOINTS
    assert _public(surfaces["blocking raw"]) == ENDPOINTS


def test_signatures_and_docs_match_the_declaration(surfaces: dict[str, object]) -> None:
    declared = surfaces["async"]
    for name in ENDPOINTS | BULK | HELPERS:
        expected = inspect.signature(getattr(declared, name))
        assert "self" not in expected.parameters, name
        for label, surface in surfaces.items():
            if label.endswith("raw") and name not in ENDPOINTS:
                continue
            method = getattr(surface, name)
            assert inspect.signature(method) == expected, (label, name)
            assert method.__doc__ and method.__name__ == name, (label, name)
    for name in ENDPOINTS | HELPERS:
        assert "extra_headers" in inspect.signature(getattr(declared, name)).parameters, name


def test_return_kinds(surfaces: dict[str, object], codat: ScriptedCodat) -> None:
    for name in ENDPOINTS | HELPERS:
        assert inspect.iscoroutinefunction(getattr(surfaces["async"], name)), name
        assert not inspect.iscoroutinefunction(getattr(surfaces["blocking"], name)), name
    for name in ENDPOINTS:
        assert inspect.iscoroutinefunction(getattr(surfaces["async raw"], name)), name
    for name in BULK:
        kwargs = {"start": "2024-06-01", "finish": "2024-06-30"} if "range" in name else {}
        assert isinstance(getattr(surfaces["async"], name)([COMPANY], **kwargs), BulkRun)
        assert isinstance(getattr(surfaces["blocking"], name)([COMPANY], **kwargs), BlockingBulkRun)
    raw = surfaces["blocking raw"].request_sync(COMPANY)  # type: ignore[attr-defined]
    plain = surfaces["blocking"].request_sync(COMPANY)  # type: ignore[attr-defined]
    assert raw.parsed == plain and len(codat.requests) == 2


def test_both_clients_take_the_same_options() -> None:
    options = inspect.signature(AsyncSyncClient.with_options).parameters
    assert list(options) == list(inspect.signature(SyncClient.with_options).parameters)
    for name in ("pause_bulk_runs", "resume_bulk_runs", "bulk_runs_paused", "limits"):
        assert hasattr(AsyncSyncClient, name) and hasattr(SyncClient, name)
