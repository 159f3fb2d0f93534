"""``examples/fastapi_app.py`` against the fake Codat, driven through httpx's ASGI transport.

The disconnect test drives the ASGI app by hand, because httpx's ASGI transport buffers the
whole response and so cannot hang up half-way; it sends ``http.disconnect`` the way uvicorn
does (ASGI spec 2.3) once the first NDJSON line has arrived.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from codat_commerce_async import AsyncSyncClient, CallEvent, SystemClock
from codat_commerce_async.testing import FakeCodat, Fault

from ._examples import load_example
from ._http import httpx
from .conftest import COMPANY

fastapi_app = load_example("fastapi_app")

pytestmark = pytest.mark.anyio


class SleepsWith(SystemClock):
    """Real time, but every sleep of the SDK goes to the test's function."""

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        super().__init__()
        self._sleep = sleep

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)


@dataclass
class Harness:
    fake: FakeCodat
    app: Any
    http: httpx.AsyncClient
    events: list[CallEvent] = field(default_factory=list)
    sdk: AsyncSyncClient | None = None
    parked: list[float] = field(default_factory=list)
    park: bool = False
    parked_event: anyio.Event = field(default_factory=anyio.Event)
    unparked: list[str] = field(default_factory=list)
    hold_codat: bool = False
    codat_holding: anyio.Event = field(default_factory=anyio.Event)
    codat_release: anyio.Event = field(default_factory=anyio.Event)

    async def codat_sleep(self, seconds: float) -> None:
        """The fake's latency: real, or (with ``hold_codat``) until released."""
        if not self.hold_codat:
            await anyio.sleep(seconds)
            return
        self.codat_holding.set()
        await self.codat_release.wait()

    async def sleep(self, seconds: float) -> None:
        """The SDK's sleep: instant, or (with ``park``) until cancelled."""
        if not self.park:
            return
        self.parked.append(seconds)
        self.parked_event.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.unparked.append("cancelled")
            raise

    def sent(self, company: str) -> list[CallEvent]:
        return [e for e in self.events if e.kind == "request_sent" and e.company_id == company]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    holder: dict[str, Harness] = {}

    async def codat_sleep(seconds: float) -> None:
        await holder["h"].codat_sleep(seconds)

    fake = FakeCodat(sleep=codat_sleep)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url="http://localhost"
    ) as to_codat:

        def client_factory() -> AsyncSyncClient:
            h = holder["h"]
            client = AsyncSyncClient(
                api_key=fake.api_key,
                base_url="http://localhost",
                http_client=to_codat,
                event_hooks=[h.events.append],
                clock=SleepsWith(h.sleep),
            )
            h.sdk = client
            return client

        app = fastapi_app.create_app(client_factory)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app"
        ) as http:
            h = holder["h"] = Harness(fake, app, http)
            async with app.router.lifespan_context(app):
                assert h.sdk is not None and not h.sdk.is_closed
                yield h
            assert h.sdk.is_closed  # the lifespan closed the application's client


async def test_one_sync_and_idempotency_end_to_end(harness: Harness) -> None:
    key = str(uuid.uuid4())
    first = await harness.http.post(
        f"/companies/{COMPANY}/sync",
        json={"sync_to": "2024-06-30T00:00:00Z"},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["company_id"] == COMPANY
    assert body["idempotency_key"] == key
    assert body["status_code"] == 1000

    # The caller retries its own request: Codat replays the first answer, no second sync.
    again = await harness.http.post(
        f"/companies/{COMPANY}/sync",
        json={"sync_to": "2024-06-30T00:00:00Z"},
        headers={"Idempotency-Key": key},
    )
    assert again.json()["sync_id"] == body["sync_id"]
    assert harness.fake.syncs_started(COMPANY) == 1
    assert [r.idempotency_key for r in harness.fake.requests] == [key, key]
    assert json.loads(harness.fake.requests[0].body) == {"syncTo": "2024-06-30T00:00:00Z"}


async def test_a_callers_retry_overlapping_its_first_request_gets_the_first_answer(
    harness: Harness,
) -> None:
    """The caller timed out and resent its key while the first request was still inside
    Codat: the retry waits for it and gets its answer (not a 409 mapped to 502)."""
    key = str(uuid.uuid4())
    harness.hold_codat = True
    harness.fake.faults.script(Fault.latency(1, stage="before_sync"))
    answers: list[httpx.Response] = []

    async def post() -> None:
        headers = {"Idempotency-Key": key}
        answers.append(await harness.http.post(f"/companies/{COMPANY}/sync", headers=headers))

    async with anyio.create_task_group() as tg:
        tg.start_soon(post)
        await harness.codat_holding.wait()  # the first holds the key inside Codat
        tg.start_soon(post)
        await anyio.wait_all_tasks_blocked()  # the retry is in, waiting
        harness.codat_release.set()

    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert harness.fake.syncs_started(COMPANY) == 1
    assert [(r.idempotency_key, r.status) for r in harness.fake.requests] == [(key, 200)]


async def test_openapi_schema(harness: Harness) -> None:
    schema = (await harness.http.get("/openapi.json")).json()
    assert set(schema["paths"]) == {"/companies/{company_id}/sync", "/syncs"}
    assert (
        "application/x-ndjson" in schema["paths"]["/syncs"]["post"]["responses"]["200"]["content"]
    )


async def test_errors_become_http_answers(harness: Harness) -> None:
    unknown = str(uuid.uuid4())
    harness.fake.mark_unknown(unknown)
    assert (await harness.http.post(f"/companies/{unknown}/sync")).status_code == 404

    naive = await harness.http.post(
        f"/companies/{COMPANY}/sync", json={"sync_to": "2024-06-30T00:00:00"}
    )
    assert naive.status_code == 422  # rejected by the app's model; nothing sent to Codat
    bad_key = await harness.http.post(
        f"/companies/{COMPANY}/sync", headers={"Idempotency-Key": "x" * 300}
    )
    assert bad_key.status_code == 422
    assert (await harness.http.post("/companies/not-a-uuid/sync")).status_code == 422

    harness.fake.faults.script(Fault.rate_limited(retry_after=3600))
    limited = await harness.http.post(f"/companies/{COMPANY}/sync")
    assert limited.status_code == 503
    assert limited.headers["retry-after"] == "3600"

    harness.fake.faults.script(Fault.error(403))
    refused = await harness.http.post(f"/companies/{COMPANY}/sync")
    assert refused.status_code == 502
    assert refused.json()["detail"]["codat_status"] == 403
    assert [r.status for r in harness.fake.requests] == [404, 429, 403]


async def test_many_syncs_stream_as_ndjson(harness: Harness) -> None:
    good = [str(uuid.uuid4()) for _ in range(5)]
    unknown = harness.fake.mark_unknown(str(uuid.uuid4()))
    response = await harness.http.post("/syncs", json={"company_ids": [*good, unknown]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert "content-length" not in response.headers
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert sorted(line["company_id"] for line in lines) == sorted([*good, unknown])
    by_company = {line["company_id"]: line for line in lines}
    assert all(by_company[c]["ok"] and by_company[c]["sync_id"] for c in good)
    assert by_company[unknown]["ok"] is False
    assert by_company[unknown]["error"] == "NotFoundError"
    assert by_company[unknown]["codat_status"] == 404
    assert harness.fake.syncs_started() == len(good)
    harness.fake.assert_no_duplicate_syncs()


async def test_client_disconnect_cancels_the_run_and_the_client_stays_usable(
    harness: Harness,
) -> None:
    fast, retrying, hanging = (str(uuid.uuid4()) for _ in range(3))
    fake = harness.fake
    fake.faults.script(Fault.edge(503), company_id=retrying)  # then a retry wait (parked)
    fake.faults.randomly(Fault.latency(3600), 1.0, company_id=hanging)  # in flight for ever
    harness.park = True

    payload = json.dumps({"company_ids": [fast, retrying, hanging]}).encode()
    disconnect = anyio.Event()
    request_read = False

    async def receive() -> dict[str, Any]:
        nonlocal request_read
        if not request_read:
            request_read = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []
    first_line = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message.get("body"):
            first_line.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/syncs",
        "raw_path": b"/syncs",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"app"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("app", 80),
        "state": {},
    }
    finished = anyio.Event()

    async def serve() -> None:
        await harness.app(scope, receive, send)
        finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.fail_after(30):  # only a hang runs out
            await first_line.wait()  # the fast company's line is out
            await harness.parked_event.wait()  # the 503'd company waits to retry
            while fake.in_flight(hanging) == 0:  # the third is inside Codat
                await anyio.sleep(0.005)
        attempts_before = len([e for e in harness.events if e.kind == "request_sent"])

        disconnect.set()
        with anyio.fail_after(30):  # only a hang runs out
            await finished.wait()  # the app returned promptly: nothing was left running

    lines = [json.loads(m["body"]) for m in messages if m.get("body")]
    assert [line["company_id"] for line in lines] == [fast]
    assert not any(m.get("more_body") is False for m in messages[1:])  # no end after hang-up
    # The retry wait and the request inside Codat were both cancelled; no attempt followed.
    assert harness.unparked == ["cancelled"]
    assert fake.in_flight() == 0
    assert len([e for e in harness.events if e.kind == "request_sent"]) == attempts_before
    assert len(harness.sent(retrying)) == 1
    assert len(harness.sent(hanging)) == 1
    assert len([r for r in fake.requests if r.company_id == retrying]) == 1
    finished = [e for e in harness.events if e.kind == "call_finished"]
    assert {e.company_id for e in finished if e.error is None} == {fast}
    # The two cut short report their end too, as cancellations (not as Codat errors).
    cancelled = {e.company_id for e in finished if e.error is not None}
    assert cancelled == {retrying, hanging}
    assert all(not isinstance(e.error, Exception) for e in finished if e.error is not None)

    # The application's client is unharmed: the next request goes through.
    harness.park = False
    fake.faults.clear()
    response = await harness.http.post(f"/companies/{hanging}/sync")
    assert response.status_code == 202, response.text
    assert harness.sdk is not None and not harness.sdk.is_closed
    assert fake.syncs_started(fast) == 1
    assert fake.syncs_started(hanging) == 1
    fake.assert_no_duplicate_syncs()


def test_a_real_client_hanging_up_on_uvicorn_cancels_the_run() -> None:
    """The same disconnect over a socket: uvicorn serves the app, httpx reads one line of
    the stream and closes the connection."""
    import threading
    import time

    import uvicorn

    fake = FakeCodat()
    fast, retrying, hanging = (str(uuid.uuid4()) for _ in range(3))
    fake.faults.script(Fault.edge(503), company_id=retrying)
    fake.faults.randomly(Fault.latency(3600), 1.0, company_id=hanging)
    events: list[CallEvent] = []
    parked = threading.Event()
    unparked: list[str] = []
    clients: list[AsyncSyncClient] = []

    async def park(seconds: float) -> None:
        parked.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            unparked.append("cancelled")
            raise

    def client_factory() -> AsyncSyncClient:
        client = AsyncSyncClient(
            api_key=fake.api_key,
            base_url="http://localhost",
            transport=fake.transport(),
            event_hooks=[events.append],
            clock=SleepsWith(park),
        )
        clients.append(client)
        return client

    app = fastapi_app.create_app(client_factory)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: anyio.run(server.serve), daemon=True)
    thread.start()

    def wait_for(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 30  # only a hang runs out
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    try:
        wait_for(lambda: server.started, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            payload = {"company_ids": [fast, retrying, hanging]}
            with http.stream("POST", "/syncs", json=payload) as response:
                assert response.headers["content-type"] == "application/x-ndjson"
                lines = response.iter_lines()  # keep it: a dropped iterator closes the socket
                first = json.loads(next(lines))
                assert first["company_id"] == fast
                wait_for(parked.is_set, "the retry wait")
                wait_for(lambda: fake.in_flight(hanging) == 1, "the hanging request")
                sent_before = [e for e in events if e.kind == "request_sent"]
            # Leaving the block before the end of the body has closed the connection.
            del lines
            wait_for(lambda: unparked == ["cancelled"], "the retry wait to be cancelled")
            wait_for(lambda: fake.in_flight() == 0, "the hanging request to be cancelled")
            assert [e for e in events if e.kind == "request_sent"] == sent_before
            assert len([r for r in fake.requests if r.company_id == retrying]) == 1

            fake.faults.clear()
            after = http.post(f"/companies/{hanging}/sync")
            assert after.status_code == 202, after.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    (client,) = clients
    assert client.is_closed  # the lifespan closed it on shutdown
    fake.assert_no_duplicate_syncs()
