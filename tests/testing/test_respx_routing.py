"""``FakeCodat.mock(router)`` routes a respx mock of httpx to the fake, in-process.

respx patches httpx only (not httpx2), so these clients are on httpx whatever library the
suite runs on."""

from __future__ import annotations

import httpx
import pytest
import respx

from codat_commerce_async import AsyncSyncClient
from codat_commerce_async.testing import FakeCodat, Fault, ManualClock

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"


async def test_a_dropped_answer_through_respx_is_retried_with_the_same_key() -> None:
    clock = ManualClock()
    fake = FakeCodat(clock=clock)
    fake.faults.script(Fault.drop())
    with respx.mock() as router:
        route = fake.mock(router)
        async with AsyncSyncClient(api_key=fake.api_key, http_library="httpx", clock=clock) as c:
            summary = await c.sync.request_sync(COMPANY)
    assert summary.company_id == COMPANY
    assert route.call_count == 2
    keys = [r.idempotency_key for r in fake.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert fake.syncs_started(COMPANY) == 1


async def test_only_the_base_url_is_routed_to_the_fake() -> None:
    fake = FakeCodat()
    with respx.mock(assert_all_called=False) as router:
        fake.mock(router, base_url="https://codat.example/v1")
        other = router.get("https://codat.example/elsewhere").respond(204)
        async with httpx.AsyncClient() as http:
            assert (await http.get("https://codat.example/elsewhere")).status_code == 204
            ledgerless = await http.get(
                f"https://codat.example/v1/companies/{COMPANY}/sync/commerce/syncs/latest/status"
            )
        async with AsyncSyncClient(
            api_key=fake.api_key, base_url="https://codat.example/v1", http_library="httpx"
        ) as client:
            await client.sync.request_sync(COMPANY)
    assert other.call_count == 1
    assert ledgerless.status_code == 401  # the fake answered: no credential was sent
    assert [r.operation for r in fake.requests] == ["get-latest-sync", "request-sync"]
