"""SyncClient: the same results and errors as the async client, from any thread."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from codat_commerce_async import (
    APIResponse,
    AsyncSyncClient,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    SyncClient,
    SyncSummary,
)

from ._http import httpx
from .conftest import CANARY_KEY, COMPANY, SUMMARY, ScriptedCodat, error_body, virtual_clock


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "codat-commerce-async-loop"]


@pytest.fixture
def blocking(codat: ScriptedCodat):  # type: ignore[no-untyped-def]
    transport = httpx.MockTransport(codat)
    with SyncClient(api_key=CANARY_KEY, transport=transport, clock=virtual_clock()) as client:
        yield client


def test_same_result_as_async(blocking: SyncClient, codat: ScriptedCodat) -> None:
    summary = blocking.sync.request_sync(COMPANY, sync_to="2024-06-30")
    assert isinstance(summary, SyncSummary)
    assert summary.commerce_sync_id == SUMMARY["commerceSyncId"]
    assert codat.body() == {"syncTo": "2024-06-30T00:00:00Z"}

    async def via_async() -> SyncSummary:
        async with AsyncSyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat)) as c:
            return await c.sync.request_sync(COMPANY, sync_to="2024-06-30")

    assert asyncio.run(via_async()) == summary
    assert codat.requests[0].content == codat.requests[1].content


def test_same_errors_as_async(blocking: SyncClient, codat: ScriptedCodat) -> None:
    codat.then(httpx.Response(404, json=error_body(404)))
    with pytest.raises(NotFoundError) as info:
        blocking.sync.request_sync(COMPANY)
    assert info.value.correlation_id == "corr-404" and info.value.attempts == 1
    codat.default = lambda request: httpx.Response(503, json=error_body(503))
    with pytest.raises(InternalServerError) as retried:
        blocking.sync.request_sync_for_date_range(COMPANY, start="2024-01-01", finish="2024-01-02")
    assert retried.value.attempts == 3
    assert len(set(codat.keys[1:])) == 1
    codat.default = lambda request: httpx.Response(429, headers={"Retry-After": "600"})
    with pytest.raises(RateLimitError) as limited:
        blocking.sync.request_sync(COMPANY)
    assert limited.value.retry_after == 600


def test_bad_input_raises_before_io(blocking: SyncClient, codat: ScriptedCodat) -> None:
    with pytest.raises(ValueError, match="company_id"):
        blocking.sync.request_sync("../../x")
    assert codat.requests == []


def test_raw_response_and_status_methods(blocking: SyncClient, codat: ScriptedCodat) -> None:
    raw = blocking.sync.with_raw_response.request_sync(COMPANY)
    assert isinstance(raw, APIResponse) and raw.status_code == 200 and raw.attempts == 1
    codat.then(httpx.Response(200, json={"syncStatusCode": 2000}))
    assert blocking.sync.get_latest_sync(COMPANY).succeeded


def test_many_threads_at_once(blocking: SyncClient, codat: ScriptedCodat) -> None:
    ids = [str(uuid.uuid4()) for _ in range(64)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(blocking.sync.request_sync, ids))
    assert len(results) == 64
    paths = {r.url.path.split("/")[2] for r in codat.requests}
    assert paths == set(ids)


def test_works_inside_a_running_event_loop(blocking: SyncClient) -> None:
    async def notebook_cell() -> SyncSummary:
        return blocking.sync.request_sync(COMPANY)  # a Jupyter-style blocking call

    assert asyncio.run(notebook_cell()).company_id == COMPANY


def test_close_is_idempotent_and_leaves_no_thread(codat: ScriptedCodat) -> None:
    before = len(_loop_threads())
    client = SyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat))
    assert len(_loop_threads()) == before + 1
    client.sync.request_sync(COMPANY)
    client.close()
    client.close()
    assert client.is_closed
    assert len(_loop_threads()) == before
    with pytest.raises(RuntimeError):
        client.sync.request_sync(COMPANY)


def test_bad_settings_raise_in_the_callers_thread_and_leave_no_thread() -> None:
    before = len(_loop_threads())
    with pytest.raises(ConfigurationError):
        SyncClient(api_key=CANARY_KEY, max_retries=-1)
    assert len(_loop_threads()) == before


def test_with_options_shares_the_loop_and_pool(blocking: SyncClient, codat: ScriptedCodat) -> None:
    fast = blocking.with_options(max_retries=0)
    assert fast.limits is blocking.limits  # one loop, one pool, one set of limits
    codat.then(httpx.Response(503, json=error_body(503)))
    with pytest.raises(InternalServerError):
        fast.sync.request_sync(COMPANY)
    assert len(codat.requests) == 1
    fast.close()  # a copy does not shut the shared loop down
    assert blocking.sync.request_sync(COMPANY).company_id == COMPANY


def test_unclosed_facade_warns_and_shuts_down(codat: ScriptedCodat) -> None:
    import gc
    import time

    before = len(_loop_threads())
    client = SyncClient(api_key=CANARY_KEY, transport=httpx.MockTransport(codat))
    with pytest.warns(ResourceWarning, match="without being closed"):
        del client
        gc.collect()
    deadline = time.monotonic() + 30  # only a hang runs out
    while len(_loop_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_loop_threads()) == before


def test_repr_hides_the_key(blocking: SyncClient) -> None:
    assert CANARY_KEY not in repr(blocking) and "redacted" in repr(blocking)


def test_constructor_takes_the_same_arguments_as_the_async_client() -> None:
    import inspect

    async_params = inspect.signature(AsyncSyncClient.__init__).parameters
    blocking_params = inspect.signature(SyncClient.__init__).parameters
    assert list(async_params) == list(blocking_params)
    for name, param in async_params.items():
        assert blocking_params[name].default == param.default, name
