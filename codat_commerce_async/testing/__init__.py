"""A fake Codat Sync for Commerce API for tests: in-process (ASGI) or on a loopback port.

It implements the two sync triggers and the four status GETs of the current spec, Codat's
``ErrorMessage`` bodies, ``X-Rate-Limit-*`` headers, the ``Idempotency-Key`` ledger, optional
rate limits and scripted or random faults, and records every request and started sync::

    from codat_commerce_async.testing import Fault, FakeCodat, ManualClock

    clock = ManualClock()
    fake = FakeCodat(clock=clock, sync_duration=30)
    fake.faults.script(Fault.drop())                  # the next request: sync starts, no reply
    async with fake.client() as http:                 # httpx.AsyncClient, in-process
        url = f"/companies/{company_id}/sync/commerce/latest"
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, headers={"Idempotency-Key": key})
        replay = await http.post(url, headers={"Idempotency-Key": key})  # cached 200
    assert fake.syncs_started(company_id) == 1

Over a socket: ``with FakeCodatServer(fake) as server: ...`` then use ``server.base_url``.
"""

from ._app import DEFAULT_API_KEY, FakeCodat
from ._clock import ManualClock
from ._faults import (
    ConnectionDropped,
    Fault,
    FaultBody,
    FaultKind,
    FaultPlan,
    FaultStage,
    RequestInfo,
)
from ._ratelimit import RateLimits
from ._server import FakeCodatServer, run_server
from ._state import RequestRecord, StartedSync, SyncOutcome
from ._transport import FakeTransport
from ._webhooks import new_webhook_secret, sign_webhook, webhook_body

__all__ = [
    "DEFAULT_API_KEY",
    "ConnectionDropped",
    "FakeCodat",
    "FakeCodatServer",
    "FakeTransport",
    "Fault",
    "FaultBody",
    "FaultKind",
    "FaultPlan",
    "FaultStage",
    "ManualClock",
    "RateLimits",
    "RequestInfo",
    "RequestRecord",
    "StartedSync",
    "SyncOutcome",
    "new_webhook_secret",
    "run_server",
    "sign_webhook",
    "webhook_body",
]
