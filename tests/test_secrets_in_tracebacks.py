"""The key never shows in a traceback rendered with its frames' local variables (as Sentry,
rich and ``pytest -l`` render them), whatever failed: a status, the network, or bad input."""

from __future__ import annotations

import base64
import traceback

import httpx
import pytest

from codat_commerce_async import APIError, AsyncSyncClient, SyncClient

from .conftest import CANARY_KEY, COMPANY, virtual_clock

pytestmark = pytest.mark.anyio

FORMS = (CANARY_KEY, base64.b64encode(CANARY_KEY.encode()).decode())


def _rendered(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def _status_500(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500, json={"statusCode": 500, "error": "boom"})


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize("handler", [_status_500, _refused], ids=["status", "network"])
async def test_async_tracebacks_with_locals_never_show_the_key(handler) -> None:
    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(handler),
        max_retries=1,
        clock=virtual_clock(),
    ) as client:
        with pytest.raises(APIError) as caught:
            await client.sync.request_sync(COMPANY)
    text = _rendered(caught.value)
    assert "request_sync" in text  # the frames and their locals were rendered
    for form in FORMS:
        assert form not in text


@pytest.mark.parametrize("handler", [_status_500, _refused], ids=["status", "network"])
def test_blocking_tracebacks_with_locals_never_show_the_key(handler) -> None:
    with SyncClient(
        api_key=CANARY_KEY,
        transport=httpx.MockTransport(handler),
        max_retries=1,
        clock=virtual_clock(),
    ) as client, pytest.raises(APIError) as caught:
        client.sync.request_sync(COMPANY)
    text = _rendered(caught.value)
    for form in FORMS:
        assert form not in text
