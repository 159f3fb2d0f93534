"""Issue 9, defect 8: three README promises that the code did not keep, now tested over
real loopback sockets through both clients.

- a ``Retry-After`` longer than ``max_retry_after`` (however long) raises
  ``RateLimitError`` at once with ``retry_after`` set;
- a ``Retry-After`` (on a 429 *or* a 503) pauses every call of the client;
- the in-flight cap never exceeds the pool size, with ``transport=`` as with
  ``http_client=``.
"""

from __future__ import annotations

import threading
import uuid

import anyio
import pytest

from codat_commerce_async import RateLimitError

from .._http import httpx
from .._sockets import SUMMARY_BYTES, MisbehavingServer, answer, drip
from ..conftest import TLS
from ._harness import open_api, raises

# The promises are the SDK's own decisions (the Retry-After cutoff, the client-wide gate,
# the cap), the same code on either backend: asyncio only, as in the rest of this suite
# (trio runs the gate end to end in test_bulk, and the runtime-bound rows everywhere).
pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]


def _company() -> str:
    return str(uuid.uuid4())


@pytest.mark.parametrize(
    "header",
    [
        "120",
        "2000000",  # 23 days: was read as "invalid" and retried twice
        "86400000",  # 1000 days
        "1" + "0" * 40,
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ],
)
async def test_a_long_retry_after_raises_at_once_with_retry_after_set(
    mode: str, server: MisbehavingServer, header: str
) -> None:
    server.always(answer(429, {"error": "slow down"}, {"Retry-After": header}))
    async with open_api(mode, base_url=server.url) as api:
        error = await raises(RateLimitError, api.request_sync(_company()))
        assert api.kinds("retry_scheduled") == []
    assert error.attempts == 1 and server.requests == 1
    assert error.retry_after is not None and error.retry_after > 60


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_pauses_every_call_of_the_client(
    mode: str, server: MisbehavingServer, status: int
) -> None:
    # The first request gets the Retry-After; a second call, started once the first
    # has scheduled its retry, must not reach the server before the pause has passed.
    pause = 0.3  # a lower bound below, so a slow machine can only lengthen the gap
    server.then(answer(status, {"error": "busy"}, {"Retry-After": str(pause)}))
    server.always(answer(200, SUMMARY_BYTES))
    first_retry = threading.Event()

    def hook(event: object) -> None:
        if getattr(event, "kind", None) == "retry_scheduled":
            first_retry.set()

    async with open_api(mode, base_url=server.url, event_hooks=[hook]) as api:
        async with anyio.create_task_group() as tg:
            tg.start_soon(api.request_sync, _company())
            while not first_retry.is_set():
                await anyio.sleep(0.01)
            second = _company()
            await api.request_sync(second)
    told = server.seen[0].at
    [second_sent] = [seen.at for seen in server.seen if second in seen.path]
    # A lower bound only: a slow machine makes the gap longer, never shorter.
    assert second_sent - told >= pause * 0.9, "the second call did not wait for Retry-After"


async def test_the_in_flight_cap_follows_the_pool_of_a_given_transport(
    mode: str, server: MisbehavingServer
) -> None:
    # One connection; each answer takes a while (~380 body bytes at 0.4 ms or more each:
    # at least 3x the pool timeout). With a cap above the pool, calls queue inside
    # httpcore and fail with pool timeouts; with the cap, they queue in the SDK.
    server.always(drip(SUMMARY_BYTES, interval=0.0004))
    transport = httpx.AsyncHTTPTransport(verify=TLS, limits=httpx.Limits(max_connections=1))
    timeout = httpx.Timeout(10.0, pool=0.05)
    async with open_api(
        mode, base_url=server.url, transport=transport, timeout=timeout, max_retries=0
    ) as api:
        assert api.client.max_concurrency == 1
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(api.request_sync, _company())
    assert server.requests == 4
    assert server.stats.peak_in_flight == 1
