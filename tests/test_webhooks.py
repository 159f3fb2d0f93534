"""``codat_commerce_async.webhooks``: verification on ``standardwebhooks``, typed events,
unknown events passed through, the bulk-run pause, and ``examples/fastapi_webhooks.py``
receiving webhooks the fake signs and sends."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from codat_commerce_async import (
    AsyncSyncClient,
    CallEvent,
    CodatError,
    ConfigurationError,
    SyncClient,
    WebhookError,
    WebhookVerificationError,
    webhooks,
)
from codat_commerce_async.testing import (
    FakeCodat,
    FakeCodatServer,
    new_webhook_secret,
    sign_webhook,
    webhook_body,
)

from ._examples import load_example
from ._http import httpx

pytestmark = pytest.mark.anyio

COMPANY = "0498e921-9b53-4396-a412-4f2f5983b0a2"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
QUOTA = {"dailyQuota": 12000, "quotaRemaining": 0, "expiryDate": "2030-09-01T00:00:00Z"}
DELETED = {
    "referenceCompany": {"id": COMPANY, "name": "Bob's Burgers", "links": {"portal": "x"}},
    "connection": {"id": str(uuid.uuid4()), "sourceType": "Commerce", "status": "Unlinked"},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def signed(event_type: str, payload: dict | None = None, **options) -> tuple[bytes, dict]:
    body = webhook_body(event_type, payload)
    return body, sign_webhook(body, SECRET, **options)


# -- verify / unwrap -----------------------------------------------------------------------


def test_unwrap_types_the_three_events_and_passes_others_through() -> None:
    body, headers = signed("connection.deleted", DELETED)
    event = webhooks.unwrap(body, headers, secret=SECRET)
    assert isinstance(event, webhooks.ConnectionDeletedEvent)
    assert event.company_id == COMPANY
    assert event.payload is not None and event.payload.connection is not None
    assert event.payload.connection.status == "Unlinked"
    assert event.id == json.loads(body)["id"]

    body, headers = signed("client.rateLimit.reached", QUOTA)
    reached = webhooks.unwrap(body, headers, secret=SECRET)
    assert isinstance(reached, webhooks.RateLimitReachedEvent)
    assert reached.payload is not None
    assert (reached.payload.daily_quota, reached.payload.quota_remaining) == (12000, 0)
    assert reached.payload.expires_at == datetime(2030, 9, 1, tzinfo=timezone.utc)

    body, headers = signed("client.rateLimit.reset", {**QUOTA, "quotaRemaining": 12000})
    assert isinstance(webhooks.unwrap(body, headers, secret=SECRET), webhooks.RateLimitResetEvent)

    body, headers = signed("read.completed", {"dataType": "invoices", "new": [1]})
    other = webhooks.unwrap(body.decode(), headers, secret=SECRET)
    assert type(other) is webhooks.UnknownEvent
    assert isinstance(other, webhooks.WebhookEvent)
    assert other.event_type == "read.completed"
    assert other.payload == {"dataType": "invoices", "new": [1]}


def test_svix_header_names_are_accepted() -> None:
    body, headers = signed("client.rateLimit.reset", QUOTA)
    svix = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    assert webhooks.unwrap(body, svix, secret=SECRET).event_type == "client.rateLimit.reset"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda b, h: (b.replace(b"12000", b"99999"), h), "signature"),
        (
            lambda b, h: (
                b,
                {**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()},
            ),
            "signature",
        ),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-id"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "soon"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-signature": "v1"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-signature": "v1,%%%"}), "signature"),
        (lambda b, h: (b, {**h, "webhook-signature": "v1,abc"}), "signature"),
        (lambda b, h: (b, {**h, "webhook-signature": "v1,a,b"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-signature": " "}), "headers"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "1e9"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-timestamp": ""}), "headers"),
        (lambda b, h: (b"\xff" + b, h), "signature"),
    ],
    ids=[
        "body",
        "signature",
        "no-id",
        "timestamp-text",
        "no-comma",
        "bad-base64",
        "bad-padding",
        "two-commas",
        "blank-signature",
        "timestamp-float",
        "timestamp-empty",
        "not-utf8",
    ],
)
def test_tampered_deliveries_are_refused(tamper, reason: str) -> None:
    body, headers = signed("client.rateLimit.reached", QUOTA)
    bad_body, bad_headers = tamper(body, headers)
    with pytest.raises(WebhookVerificationError) as caught:
        webhooks.unwrap(bad_body, bad_headers, secret=SECRET)
    assert caught.value.reason == reason
    assert isinstance(caught.value, CodatError) and isinstance(caught.value, WebhookError)
    assert SECRET not in str(caught.value)


def test_a_malformed_signature_entry_does_not_hide_a_valid_one() -> None:
    """Svix may send several space-separated signatures (during a secret rotation)."""
    body, headers = signed("client.rateLimit.reset", QUOTA)
    for junk in ("v1", "v1,abc", "v2,xyz", "v1,a,b"):
        both = {**headers, "webhook-signature": f"{junk} {headers['webhook-signature']}"}
        assert webhooks.unwrap(body, both, secret=SECRET).event_type == "client.rateLimit.reset"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda b, h: (b, h), "signature"),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-id"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "soon"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-signature": "v1"}), "headers"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "1000000000"}), "timestamp"),
    ],
    ids=["valid-headers", "no-id", "timestamp-text", "no-comma", "old"],
)
def test_the_reason_does_not_depend_on_the_librarys_wording(monkeypatch, tamper, reason) -> None:
    """Whatever the library says (its messages changed between releases), the reason
    comes from our own reading of the headers."""
    import standardwebhooks

    def refuse(self, data, headers, **options):
        raise standardwebhooks.WebhookVerificationError("worded in some future way")

    monkeypatch.setattr(standardwebhooks.Webhook, "verify", refuse)
    body, headers = signed("client.rateLimit.reached", QUOTA)
    with pytest.raises(WebhookVerificationError) as caught:
        webhooks.verify(*tamper(body, headers), secret=SECRET)
    assert caught.value.reason == reason


def test_a_str_body_with_a_lone_surrogate_is_a_body_problem() -> None:
    body, headers = signed("client.rateLimit.reached", QUOTA)
    text = body.decode().replace("12000", "12000\ud800")
    with pytest.raises(WebhookVerificationError, match="body") as caught:
        webhooks.unwrap(text, headers, secret=SECRET)
    assert caught.value.reason == "body"
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    with pytest.raises(WebhookVerificationError, match="raw request body") as parsed:
        webhooks.verify(json.loads(body), headers, secret=SECRET)  # type: ignore[arg-type]
    assert parsed.value.reason == "body"


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


BAD_SECRETS = {
    "trailing-nbsp": SECRET + "\u00a0",
    "accented": "whsec_\u00e9" + SECRET[6:],
    "nothing-to-decode": "whsec_!",
    "cut-short": "whsec_abcde",
}


@pytest.mark.parametrize("which", BAD_SECRETS)
def test_a_bad_secret_is_named_but_never_shown(which: str) -> None:
    """Nothing of the secret in the message, the exception chain or a traceback rendered
    with its frames' locals (as Sentry and ``pytest -l`` render them; this frame holds
    only the secret's name)."""
    import traceback

    body, headers = signed("client.rateLimit.reached", QUOTA)
    for call in (webhooks.verify, webhooks.unwrap):
        with pytest.raises(WebhookVerificationError, match="not a 'whsec_' base64") as caught:
            call(body, headers, secret=BAD_SECRETS[which])
        assert caught.value.reason == "secret"
        assert _chain(caught.value) == [caught.value]
        rendered = "".join(
            traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
        )
        assert "_verify" in rendered  # the frames and their locals were rendered
        assert BAD_SECRETS[which] not in rendered
        assert len(BAD_SECRETS[which]) < 20 or BAD_SECRETS[which][6:].strip() not in rendered
        if not BAD_SECRETS[which].isascii():
            assert "not ASCII" in str(caught.value)


def test_a_refused_delivery_never_shows_the_secret_in_a_rendered_traceback() -> None:
    import traceback

    body, headers = signed("client.rateLimit.reached", QUOTA)
    for call in (webhooks.verify, webhooks.unwrap):
        with pytest.raises(WebhookVerificationError) as caught:
            call(body + b" ", headers, secret=SECRET)
        rendered = "".join(
            traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
        )
        assert "_verify" in rendered
        assert SECRET not in rendered and SECRET[6:] not in rendered


@pytest.mark.parametrize("shift", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_old_or_future_timestamps_are_refused(shift: timedelta) -> None:
    body, headers = signed(
        "client.rateLimit.reached", QUOTA, timestamp=datetime.now(timezone.utc) + shift
    )
    with pytest.raises(WebhookVerificationError, match="5 minutes") as caught:
        webhooks.verify(body, headers, secret=SECRET)
    assert caught.value.reason == "timestamp"


def test_wrong_or_malformed_secret() -> None:
    body, headers = signed("client.rateLimit.reached", QUOTA)
    with pytest.raises(WebhookVerificationError) as wrong:
        webhooks.verify(body, headers, secret=new_webhook_secret())
    assert wrong.value.reason == "signature"
    for secret in ("", "whsec_"):
        with pytest.raises(WebhookVerificationError) as empty:
            webhooks.verify(body, headers, secret=secret)
        assert empty.value.reason == "secret"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "no eventType"),
        (b'{"id": "x"}', "no eventType"),
        (
            b'{"eventType": "client.rateLimit.reached", "payload": {"dailyQuota": "lots"}}',
            "payload.dailyQuota",
        ),
    ],
)
def test_verified_bodies_that_are_not_events(body: bytes, message: str) -> None:
    headers = sign_webhook(body, SECRET)
    with pytest.raises(WebhookError, match=message) as caught:
        webhooks.unwrap(body, headers, secret=SECRET)
    assert not isinstance(caught.value, WebhookVerificationError)


# -- the pause -----------------------------------------------------------------------------


def _client(fake: FakeCodat, events: list[CallEvent]) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=fake.api_key,
        base_url="http://localhost",
        transport=fake.transport(),
        event_hooks=[events.append],
    )


async def test_rate_limit_reached_pauses_bulk_runs_until_reset() -> None:
    fake = FakeCodat()
    events: list[CallEvent] = []
    companies = [str(uuid.uuid4()) for _ in range(6)]
    async with _client(fake, events) as client:
        body, headers = signed("client.rateLimit.reached", QUOTA)
        reached = webhooks.unwrap(body, headers, secret=SECRET)
        assert webhooks.apply_rate_limit(client, reached) is True
        assert client.bulk_runs_paused
        copy = client.with_options(max_retries=0)
        assert copy.bulk_runs_paused  # the pause is client-wide
        got: list[str] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with copy.sync.request_sync_many(companies, concurrency=2) as results:
                    got.extend([r.company_id async for r in results])

            tg.start_soon(run)
            for _ in range(50):  # let the run reach its gate: nothing may be sent
                await anyio.lowlevel.checkpoint()
            assert fake.requests == ()
            await client.sync.request_sync(companies[0])  # single calls are not held
            assert len(fake.requests) == 1
            body, headers = signed("client.rateLimit.reset", QUOTA)
            reset = webhooks.unwrap(body, headers, secret=SECRET)
            assert webhooks.apply_rate_limit(client, reset) is True
        assert sorted(got) == sorted(companies)
        assert not client.bulk_runs_paused
    assert fake.syncs_started() == 7


async def test_a_pause_ends_at_the_quota_expiry() -> None:
    fake = FakeCodat()
    events: list[CallEvent] = []
    async with _client(fake, events) as client:
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        client.pause_bulk_runs(until=past)
        assert not client.bulk_runs_paused  # already expired
        client.pause_bulk_runs(until=datetime.now(timezone.utc) + timedelta(milliseconds=50))
        async with client.sync.request_sync_many([str(uuid.uuid4())]) as results:
            assert [r.ok async for r in results] == [True]  # waited for the expiry
        assert not client.bulk_runs_paused
        with pytest.raises(ConfigurationError, match="aware"):
            client.pause_bulk_runs(until=datetime(2030, 1, 1))
        body, headers = signed("connection.deleted", DELETED)
        other = webhooks.unwrap(body, headers, secret=SECRET)
        assert webhooks.apply_rate_limit(client, other) is False


def test_blocking_client_pause_from_another_thread() -> None:
    fake = FakeCodat()
    with SyncClient(
        api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
    ) as client:
        body, headers = signed("client.rateLimit.reached", {"dailyQuota": 1})  # no expiry
        assert webhooks.apply_rate_limit(client, webhooks.unwrap(body, headers, secret=SECRET))
        assert client.bulk_runs_paused
        client.resume_bulk_runs()
        assert not client.bulk_runs_paused
        with client.sync.request_sync_many([str(uuid.uuid4())]) as results:
            assert [r.ok for r in results] == [True]


# -- the FastAPI example, fed by the fake ----------------------------------------------------

fastapi_webhooks = load_example("fastapi_webhooks")


@pytest.fixture
async def app_and_client() -> AsyncIterator[tuple[object, AsyncSyncClient, FakeCodat]]:
    fake = FakeCodat()
    holder: dict[str, AsyncSyncClient] = {}

    def factory() -> AsyncSyncClient:
        holder["c"] = AsyncSyncClient(
            api_key=fake.api_key, base_url="http://localhost", transport=fake.transport()
        )
        return holder["c"]

    app = fastapi_webhooks.create_app(factory, secret=SECRET)
    async with app.router.lifespan_context(app):
        yield app, holder["c"], fake


async def test_fastapi_example_receives_signed_webhooks(app_and_client) -> None:
    app, client, fake = app_and_client
    transport = httpx.ASGITransport(app=app)
    url = "http://app/webhooks/codat"

    deleted = await fake.send_webhook(
        url, "connection.deleted", DELETED, secret=SECRET, transport=transport
    )
    assert deleted.status_code == 204
    reached = await fake.send_webhook(
        url, "client.rateLimit.reached", QUOTA, secret=SECRET, transport=transport
    )
    assert reached.status_code == 204
    assert client.bulk_runs_paused
    unknown = await fake.send_webhook(url, "read.completed", {}, secret=SECRET, transport=transport)
    assert unknown.status_code == 204
    forged = await fake.send_webhook(
        url, "client.rateLimit.reset", QUOTA, secret=new_webhook_secret(), transport=transport
    )
    assert (forged.status_code, forged.json()) == (
        400,
        {"detail": "webhook not verified (signature)"},
    )
    assert client.bulk_runs_paused  # a forged reset changes nothing
    replayed = await fake.send_webhook(
        url,
        "client.rateLimit.reset",
        QUOTA,
        secret=SECRET,
        transport=transport,
        timestamp=datetime.now(timezone.utc) - timedelta(hours=1),
    )
    assert replayed.json() == {"detail": "webhook not verified (timestamp)"}
    reset = await fake.send_webhook(
        url, "client.rateLimit.reset", QUOTA, secret=SECRET, transport=transport
    )
    assert reset.status_code == 204
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        state = (await http.get("/webhooks/codat/state")).json()
    assert state == {"bulk_runs_paused": False, "stopped_companies": [COMPANY]}


def test_fake_delivers_webhooks_over_http_to_a_real_socket() -> None:
    """``POST /_fake/webhooks`` on a fake served over a socket, to the example on another."""
    received: list[dict] = []
    with FakeCodatServer(FakeCodat()) as codat, FakeCodatServer(_Receiver(received)) as target:  # type: ignore[arg-type]
        reply = httpx.post(
            f"{codat.base_url}/_fake/webhooks",
            json={
                "url": f"{target.base_url}/hook",
                "secret": SECRET,
                "eventType": "connection.deleted",
                "payload": DELETED,
                "id": "evt_1",
            },
        )
        assert reply.json() == {"status": 204}
        bad = httpx.post(f"{codat.base_url}/_fake/webhooks", json={"url": 1})
        assert bad.status_code == 400
    ((delivery,),) = [received]
    event = webhooks.unwrap(delivery["body"], delivery["headers"], secret=SECRET)
    assert isinstance(event, webhooks.ConnectionDeletedEvent)
    assert (event.id, event.company_id) == ("evt_1", COMPANY)
    assert delivery["headers"]["webhook-id"] == "evt_1"


class _Receiver:
    """A minimal ASGI app recording each request (served by FakeCodatServer's uvicorn)."""

    def __init__(self, received: list[dict]) -> None:
        self.received = received

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append({"body": message.get("body", b""), "headers": headers})
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


_GOOD_REQUEST = {"url": "http://receiver/hook", "secret": SECRET, "eventType": "x.y"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**_GOOD_REQUEST, "secret": "whsec_!"}, "secret"),
        ({**_GOOD_REQUEST, "secret": SECRET + "\u00a0"}, "secret"),
        ({**_GOOD_REQUEST, "id": 5}, "id"),
        ({**_GOOD_REQUEST, "id": "evt 1\r\nx: y"}, "id"),
        ({**_GOOD_REQUEST, "payload": [1, 2]}, "payload"),
        ({**_GOOD_REQUEST, "payload": "text"}, "payload"),
        ({**_GOOD_REQUEST, "url": "http://["}, "url"),
        ({**_GOOD_REQUEST, "url": "ftp://receiver/hook"}, "url"),
        ({**_GOOD_REQUEST, "eventType": ["x"]}, "eventType"),
        ([_GOOD_REQUEST], "$"),
        ("[" * 50_000 + "]" * 50_000, "$"),
        (
            '{"url": "http://r/h", "secret": "s", "eventType": "e", "payload": '
            + '{"a": ' * 50_000
            + "1"
            + "}" * 50_001,
            "$",
        ),
    ],
    ids=[
        "secret-nothing-to-decode",
        "secret-not-ascii",
        "numeric-id",
        "id-with-newline",
        "array-payload",
        "string-payload",
        "broken-url",
        "ftp-url",
        "array-event-type",
        "array-body",
        "deep-json",
        "deep-payload",
    ],
)
async def test_the_fakes_webhook_route_answers_bad_input_with_a_400_naming_the_field(
    body, field: str
) -> None:
    fake = FakeCodat()
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    async with httpx.AsyncClient(transport=fake.transport(), base_url="http://fake") as http:
        reply = await http.post("/_fake/webhooks", content=content)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["statusCode"] == 400 and error["correlationId"]
    assert [item["itemId"] for item in error["validation"]["errors"]] == [field]
    assert error["error"].startswith(f"{field}: ")
    assert SECRET[6:] not in reply.text
