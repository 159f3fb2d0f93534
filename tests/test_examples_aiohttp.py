"""``examples/aiohttp_app.py`` with aiohttp's own test server and client, against the fake."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from codat_commerce_async import AsyncSyncClient
from codat_commerce_async.testing import FakeCodat

from ._examples import load_example
from ._http import httpx
from .conftest import COMPANY

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # aiohttp runs on asyncio

aiohttp_app = load_example("aiohttp_app")


@pytest.fixture
def fake() -> FakeCodat:
    return FakeCodat()


@pytest.fixture
async def client(fake: FakeCodat) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url="http://localhost"
    ) as to_codat:
        built: list[AsyncSyncClient] = []

        def client_factory() -> AsyncSyncClient:
            sdk = AsyncSyncClient(
                api_key=fake.api_key, base_url="http://localhost", http_client=to_codat
            )
            built.append(sdk)
            return sdk

        app = aiohttp_app.create_app(client_factory)
        async with TestClient(TestServer(app)) as test_client:
            (sdk,) = built  # cleanup_ctx opened exactly one client for the application
            assert app[aiohttp_app.CODAT] is sdk and not sdk.is_closed
            yield test_client
        assert sdk.is_closed  # and closed it when the application stopped


async def test_trigger_then_read_latest(client: TestClient, fake: FakeCodat) -> None:  # type: ignore[type-arg]
    key = str(uuid.uuid4())
    response = await client.post(
        f"/companies/{COMPANY}/sync",
        json={"sync_to": "2024-06-30T00:00:00+02:00"},
        headers={"Idempotency-Key": key},
    )
    assert response.status == 202
    started = await response.json()
    assert started["status_code"] == 1000
    (record,) = fake.requests
    assert record.idempotency_key == key
    assert json.loads(record.body) == {"syncTo": "2024-06-29T22:00:00Z"}

    latest = await client.get(f"/companies/{COMPANY}/syncs/latest")
    assert latest.status == 200
    assert (await latest.json())["sync_id"] == started["sync_id"]


async def test_errors(client: TestClient, fake: FakeCodat) -> None:  # type: ignore[type-arg]
    unknown = fake.mark_unknown(str(uuid.uuid4()))
    assert (await client.post(f"/companies/{unknown}/sync")).status == 404
    assert (await client.post("/companies/nope/sync")).status == 422
    naive = await client.post(f"/companies/{COMPANY}/sync", json={"sync_to": "2024-06-30T00:00"})
    assert naive.status == 422
    assert [r.status for r in fake.requests] == [404]  # the bad inputs never reached Codat


async def test_many_stream_as_ndjson(client: TestClient, fake: FakeCodat) -> None:  # type: ignore[type-arg]
    ids = [str(uuid.uuid4()) for _ in range(4)]
    response = await client.post("/syncs", json={"company_ids": [*ids, "not-a-uuid"]})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert len(lines) == 5
    assert sorted(line["company_id"] for line in lines if line["ok"]) == sorted(ids)
    (bad,) = [line for line in lines if not line["ok"]]
    assert bad["error"] == "ValueError"
    assert fake.syncs_started() == 4
    assert (await client.post("/syncs", json={"company_ids": []})).status == 422
