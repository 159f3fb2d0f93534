"""The fake's cost per request stays the same however many syncs it has recorded.

Cost is counted, not timed: the Python calls (generator steps included) made inside the
fake's package while it answers a fixed set of requests.
"""

from __future__ import annotations

import os
import sys
import uuid
from types import FrameType
from typing import Any

import pytest

import codat_commerce_async.testing as testing_package
from codat_commerce_async.testing import FakeCodat, ManualClock

from .conftest import client_for, latest, status

pytestmark = pytest.mark.anyio

_PACKAGE = os.path.dirname(testing_package.__file__)


class _CallCounter:
    """Counts profile "call" events (calls and generator resumptions) in the fake's code."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(_PACKAGE):
            self.calls += 1

    def __enter__(self) -> _CallCounter:
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


async def _record_syncs(http: Any, companies: list[str], count: int) -> None:
    for index in range(count):
        company = companies[index % len(companies)]
        response = await http.post(latest(company), headers={"Idempotency-Key": str(uuid.uuid4())})
        assert response.status_code == 200


async def _probe_cost(http: Any, company: str) -> int:
    """Calls into the fake for one trigger and the four single-sync status reads."""
    with _CallCounter() as counter:
        started = await http.post(latest(company), headers={"Idempotency-Key": str(uuid.uuid4())})
        sync_id = started.json()["commerceSyncId"]
        reads = [
            await http.get(status(company, "latest")),
            await http.get(status(company, "lastSuccessful")),
            await http.get(status(company, sync_id)),
            await http.get(f"/meta/companies/{company}/sync/commerce/status"),
        ]
    assert started.status_code == 200
    assert [r.status_code for r in reads] == [200] * 4
    return counter.calls


async def test_request_cost_does_not_grow_with_recorded_syncs(clock: ManualClock) -> None:
    fake = FakeCodat(clock=clock)
    busy = str(uuid.uuid4())  # the probed company: its own history grows too
    others = [str(uuid.uuid4()) for _ in range(20)]
    async with client_for(fake) as http:
        await _record_syncs(http, [busy], 5)
        await _probe_cost(http, busy)  # first-use caches (json encoders, ...) warmed
        fresh = await _probe_cost(http, busy)
        await _record_syncs(http, [busy, *others], 1_500)
        loaded = await _probe_cost(http, busy)

    assert fake.syncs_started() == 1_500 + 5 + 3
    assert fake.syncs_started(busy) > 70
    # A scan per request adds a step per matching sync (hundreds here); an index adds none.
    assert loaded - fresh <= 10, (fresh, loaded)
