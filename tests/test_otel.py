"""OpenTelemetry tracing through the event hooks (``codat_commerce_async.contrib.otel``)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from codat_commerce_async import AsyncSyncClient, NotFoundError, SyncClient
from codat_commerce_async.contrib.otel import operation_name, route_template, tracing_hook

from ._http import httpx
from .conftest import CANARY_KEY, COMPANY, SUMMARY, ScriptedCodat, error_body, virtual_clock

SYNC_ID = "8d0a044e-b683-4fc9-bd0d-bfb2ca5731b7"
LATEST = "codat.sync POST /companies/{companyId}/sync/commerce/latest"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


def make_client(
    codat: ScriptedCodat, provider: TracerProvider, **options: object
) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url="https://api.codat.io",
        transport=httpx.MockTransport(codat),
        event_hooks=[tracing_hook(tracer_provider=provider)],
        clock=virtual_clock(),
        **options,  # type: ignore[arg-type]
    )


def event_names(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


def assert_no_secret(spans: tuple[ReadableSpan, ...]) -> None:
    dump = "".join(span.to_json() for span in spans)
    encoded = base64.b64encode(CANARY_KEY.encode()).decode()
    assert CANARY_KEY not in dump
    assert encoded not in dump
    assert "authorization" not in dump.lower()


def test_route_templates() -> None:
    assert route_template(f"/companies/{COMPANY}/sync/commerce/latest") == (
        "/companies/{companyId}/sync/commerce/latest"
    )
    assert route_template(f"/meta/companies/{COMPANY}/sync/commerce/historic") == (
        "/meta/companies/{companyId}/sync/commerce/historic"
    )
    by_id = route_template(f"/companies/{COMPANY}/sync/commerce/syncs/{SYNC_ID}/status")
    assert by_id == "/companies/{companyId}/sync/commerce/syncs/{syncId}/status"
    assert operation_name("GET", by_id) == "get-sync-status"
    latest = route_template(f"/companies/{COMPANY}/sync/commerce/syncs/lastSuccessful/status")
    assert operation_name("GET", latest) == "get-last-successful-sync"


@pytest.mark.anyio
async def test_one_span_per_call_with_attempts_and_retries_as_events(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    codat.then(
        httpx.Response(503, json=error_body(503)),
        httpx.Response(429, json=error_body(429), headers={"Retry-After": "1"}),
    )
    async with make_client(codat, provider) as client:
        summary = await client.sync.request_sync(COMPANY, sync_to="2024-06-30T00:00:00Z")
    (span,) = exporter.get_finished_spans()
    assert span.name == LATEST
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    key = codat.keys[0]
    assert attributes == {
        "http.request.method": "POST",
        "url.template": "/companies/{companyId}/sync/commerce/latest",
        "codat.operation": "request-sync",
        "codat.company_id": COMPANY,
        "codat.idempotency_key": key,
        "codat.attempts": 3,
        "http.request.resend_count": 2,
        "http.response.status_code": 200,
    }
    assert summary.commerce_sync_id == SUMMARY["commerceSyncId"]
    assert event_names(span) == [
        "codat.attempt",
        "codat.response",
        "codat.retry",
        "codat.attempt",
        "codat.response",
        "codat.retry",
        "codat.attempt",
        "codat.response",
    ]
    attempts = [e.attributes["codat.attempt"] for e in span.events if e.attributes]
    assert attempts == [1, 1, 1, 2, 2, 2, 3, 3]
    statuses = [
        e.attributes["http.response.status_code"]
        for e in span.events
        if e.name == "codat.response" and e.attributes
    ]
    assert statuses == [503, 429, 200]
    retry = [e for e in span.events if e.name == "codat.retry"][1]
    assert retry.attributes is not None and retry.attributes["error.type"] == "RateLimitError"
    assert retry.attributes["codat.retry.wait"] >= 1.0  # Retry-After honoured
    times = [e.timestamp for e in span.events]
    assert times == sorted(times)
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= times[0] and times[-1] <= span.end_time
    assert_no_secret(exporter.get_finished_spans())


@pytest.mark.anyio
async def test_failures_are_error_spans_without_secrets(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    codat.then(httpx.Response(404, json=error_body(404, f"no company; key was {CANARY_KEY}")))
    async with make_client(codat, provider) as client:
        with pytest.raises(NotFoundError):
            await client.sync.request_sync_for_date_range(
                COMPANY, start="2024-06-01", finish="2024-06-30"
            )
    (span,) = exporter.get_finished_spans()
    assert span.name == "codat.sync POST /meta/companies/{companyId}/sync/commerce/historic"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "NotFoundError"
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["codat.attempts"] == 1
    (exception,) = [e for e in span.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "NotFoundError"
    assert "exception.stacktrace" not in exception.attributes
    assert exception.attributes["exception.message"] == (
        "NotFoundError (status=404, correlation_id=corr-404, attempts=1)"
    )
    assert_no_secret(exporter.get_finished_spans())


@pytest.mark.anyio
async def test_concurrent_calls_get_their_own_spans_in_finishing_order(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    companies = [str(uuid.uuid4()) for _ in range(6)]
    order: list[str] = []

    async with make_client(codat, provider) as client:

        async def one(company: str, delay: float) -> None:
            await anyio.sleep(delay)
            await client.sync.request_sync(company)
            order.append(company)

        async with anyio.create_task_group() as tg:
            for index, company in enumerate(companies):
                tg.start_soon(one, company, (len(companies) - index) * 0.002)
        await client.sync.get_sync_status(COMPANY, SYNC_ID)

    spans = exporter.get_finished_spans()
    assert len(spans) == 7
    *triggers, status = spans
    assert [s.attributes["codat.company_id"] for s in triggers if s.attributes] == order
    by_company = {
        r.url.path.split("/")[2]: r.headers["idempotency-key"]
        for r in codat.requests
        if r.method == "POST"
    }
    for span in triggers:
        assert span.attributes is not None
        company = str(span.attributes["codat.company_id"])
        assert span.attributes["codat.idempotency_key"] == by_company[company]
        assert event_names(span) == ["codat.attempt", "codat.response"]
    assert (
        status.name == "codat.sync GET /companies/{companyId}/sync/commerce/syncs/{syncId}/status"
    )
    assert status.attributes is not None and "codat.idempotency_key" not in status.attributes
    assert_no_secret(spans)


@pytest.mark.anyio
async def test_spans_are_children_of_the_current_span(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    async with make_client(codat, provider) as client:
        with tracer.start_as_current_span("handle request") as parent:
            await client.sync.request_sync(COMPANY)
    ours, theirs = exporter.get_finished_spans()
    assert theirs.name == "handle request"
    assert ours.parent is not None
    assert ours.parent.span_id == parent.get_span_context().span_id
    assert ours.context is not None and ours.context.trace_id == theirs.context.trace_id  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_cancelled_call_ends_its_span_at_once(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    gate, reached = anyio.Event(), anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        reached.set()
        await gate.wait()
        return httpx.Response(200, json=SUMMARY)

    client = AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url="https://api.codat.io",
        transport=httpx.MockTransport(hang),
        event_hooks=[tracing_hook(tracer_provider=provider)],
    )
    async with client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.sync.request_sync, COMPANY)
            await reached.wait()  # mid-request, however slow the machine
            tg.cancel_scope.cancel()
        (cancelled,) = exporter.get_finished_spans()
        gate.set()
        await client.sync.request_sync(COMPANY)
    assert cancelled.attributes is not None and cancelled.attributes["error.type"] == "cancelled"
    assert cancelled.status.status_code is StatusCode.ERROR
    _, finished = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_a_call_failing_before_its_first_attempt_still_gets_a_span(
    codat: ScriptedCodat, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    codat.then(httpx.Response(429, json=error_body(429), headers={"Retry-After": "30"}))
    async with make_client(codat, provider, max_retries=0) as client:
        with pytest.raises(Exception, match="429"):
            await client.sync.request_sync(COMPANY)
        with pytest.raises(Exception, match="deadline"):
            await client.sync.request_sync(COMPANY, deadline=5)  # waits out the 429 gate
    limited, expired = exporter.get_finished_spans()
    assert limited.attributes is not None and limited.attributes["error.type"] == "RateLimitError"
    assert expired.attributes is not None
    assert expired.attributes["error.type"] == "APITimeoutError"
    assert expired.attributes["codat.attempts"] == 0
    assert event_names(expired) == ["exception"]
    assert len(codat.requests) == 1


def test_blocking_client(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    codat = ScriptedCodat()
    with SyncClient(
        api_key=CANARY_KEY,
        base_url="https://api.codat.io",
        transport=httpx.MockTransport(codat),
        event_hooks=[tracing_hook(tracer_provider=provider)],
    ) as client:
        client.sync.request_sync(COMPANY)
        client.sync.get_latest_sync(COMPANY)
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == [
        LATEST,
        "codat.sync GET /companies/{companyId}/sync/commerce/syncs/latest/status",
    ]


def test_the_global_tracer_provider_is_the_default() -> None:
    hook = tracing_hook()  # a proxy tracer: nothing is recorded without a provider
    assert callable(hook)
    assert isinstance(trace.get_tracer_provider(), trace.TracerProvider)


def test_company_id_can_be_left_out(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    codat = ScriptedCodat()
    with SyncClient(
        api_key=CANARY_KEY,
        base_url="https://api.codat.io",
        transport=httpx.MockTransport(codat),
        event_hooks=[tracing_hook(tracer_provider=provider, record_company_id=False)],
    ) as client:
        client.sync.request_sync(COMPANY)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and "codat.company_id" not in span.attributes
    assert COMPANY not in span.to_json()
