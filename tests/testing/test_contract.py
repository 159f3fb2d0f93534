"""Contract test: every kind of response the fake gives, checked against Codat's current spec.

``data/sync-commerce_2026-04-15_oas-2255d88_current.yaml`` is a byte-for-byte copy of
``yaml/Codat-Sync-Commerce.yaml`` from github.com/codatio/oas at commit 2255d88 (2026-04-15).
openapi-core checks that each status is declared for the operation, the content type, and the
body against the schema (``additionalProperties: false`` included).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml  # type: ignore[import-untyped]
from jsonschema import ValidationError  # type: ignore[import-untyped]
from openapi_core import OpenAPI
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import DataValidationError, InvalidData
from openapi_schema_validator import OAS31Validator

from codat_commerce_async.testing import FakeCodat, Fault, ManualClock, RateLimits

from .._http import httpx
from .conftest import RANGE, client_for, historic, latest, status

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]  # bodies do not depend on the loop

SPEC = Path(__file__).parent / "data" / "sync-commerce_2026-04-15_oas-2255d88_current.yaml"
SERVER = "https://api.codat.io"


def as_openapi_31(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 ``nullable: true`` into 3.1 form.

    The spec says ``openapi: 3.1.0`` but marks nullable fields the 3.0 way, which 3.1 ignores;
    read literally, ``"errorMessage": null`` would be invalid although Codat sends it. We
    apply the meaning Codat intends instead of weakening the check.
    """
    if isinstance(node, list):
        return [as_openapi_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_openapi_31(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        elif "$ref" in node:
            node["anyOf"] = [{"$ref": node.pop("$ref")}, {"type": "null"}]
    return node


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as handle:
        return dict(as_openapi_31(yaml.safe_load(handle)))


@pytest.fixture(scope="module")
def openapi(spec: dict[str, Any]) -> OpenAPI:
    return OpenAPI.from_dict(spec)


@pytest.fixture(scope="module")
def error_message_schema(spec: dict[str, Any]) -> OAS31Validator:
    # Resolve "#/components/..." refs against the whole document.
    return OAS31Validator({**spec, "$ref": "#/components/schemas/ErrorMessage"})


def mocks(request: httpx.Request, response: httpx.Response) -> tuple[MockRequest, MockResponse]:
    mock_request = MockRequest(
        SERVER,
        request.method,
        request.url.raw_path.decode("ascii").split("?")[0],
        headers=dict(request.headers),
        data=request.content,
        content_type=request.headers.get("content-type", "application/json"),
    )
    mock_response = MockResponse(
        response.content,
        response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("content-type", ""),
    )
    return mock_request, mock_response


Case = Callable[[FakeCodat, httpx.AsyncClient, str], Awaitable[httpx.Response]]

SIX = {
    "request-sync": ("POST", latest, None),
    "request-sync-for-date-range": ("POST", historic, RANGE),
    "get-sync-by-id": ("GET", lambda c: status(c, str(uuid.uuid4())), None),
    "get-latest-sync": ("GET", lambda c: status(c, "latest"), None),
    "get-last-successful-sync": ("GET", lambda c: status(c, "lastSuccessful"), None),
    "list-syncs": ("GET", lambda c: status(c, "list"), None),
    "get-sync-status": ("GET", lambda c: f"/meta/companies/{c}/sync/commerce/status", None),
}


async def call(http: httpx.AsyncClient, operation: str, company: str) -> httpx.Response:
    method, url, body = SIX[operation]
    return await http.request(method, url(company), json=body)


async def with_one_sync(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> str:
    response = await http.post(latest(company))
    return str(response.json()["commerceSyncId"])


async def _second_sync(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
    await with_one_sync(fake, http, company)
    return await http.post(latest(company))


async def _by_id_running(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
    fake.sync_duration = 60
    return await http.get(status(company, await with_one_sync(fake, http, company)))


async def _failed_status(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
    fake.set_outcome(company, 5130, exception_message="Timeout writing invoices")
    await with_one_sync(fake, http, company)
    return await http.get(status(company, "latest"))


async def _status_of(
    ref: str, fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> httpx.Response:
    sync_id = await with_one_sync(fake, http, company)
    return await http.get(status(company, sync_id if ref == "id" else ref))


async def _company_status(
    fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> httpx.Response:
    await with_one_sync(fake, http, company)
    return await call(http, "get-sync-status", company)


async def _company_status_running(
    fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> httpx.Response:
    fake.sync_duration = 60
    await _second_sync(fake, http, company)
    return await call(http, "get-sync-status", company)


async def _sync_to_before_last(
    fake: FakeCodat, http: httpx.AsyncClient, company: str
) -> httpx.Response:
    await with_one_sync(fake, http, company)
    return await http.post(latest(company), json={"syncTo": "2020-01-01T00:00:00Z"})


def _scripted(fault: Fault, operation: str) -> Case:
    async def run(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
        fake.faults.script(fault)
        return await call(http, operation, company)

    return run


def _unknown_company(operation: str) -> Case:
    async def run(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
        fake.mark_unknown(company)
        return await call(http, operation, company)

    return run


def _quota(operation: str) -> Case:
    async def run(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
        fake.rate_limits = RateLimits(requests_per_minute=1)
        await http.get(status(company, "list"))
        return await call(http, operation, company)

    return run


def _unauthorized(operation: str) -> Case:
    async def run(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
        async with client_for(fake, auth=False) as anonymous:
            return await call(anonymous, operation, company)

    return run


def _body(content: bytes, url: Callable[[str], str]) -> Case:
    async def run(fake: FakeCodat, http: httpx.AsyncClient, company: str) -> httpx.Response:
        return await http.post(
            url(company), content=content, headers={"content-type": "application/json"}
        )

    return run


# (case, expected status, is the request itself valid against the spec?)
CASES: dict[str, tuple[Case, int, bool]] = {
    "request-sync 200 no body": (lambda f, h, c: h.post(latest(c)), 200, True),
    "request-sync 200 syncTo": (
        lambda f, h, c: h.post(latest(c), json={"syncTo": "2026-04-01T00:00:00Z"}),
        200,
        True,
    ),
    "request-sync 200 syncTo null": (
        lambda f, h, c: h.post(latest(c), json={"syncTo": None}),
        200,
        True,
    ),
    "request-sync 200 second sync": (_second_sync, 200, True),
    "request-sync-for-date-range 200": (lambda f, h, c: h.post(historic(c), json=RANGE), 200, True),
    "get-sync-by-id 200 running": (_by_id_running, 200, True),
    "get-sync-by-id 200 done": (lambda f, h, c: _status_of("id", f, h, c), 200, True),
    "get-latest-sync 200": (lambda f, h, c: _status_of("latest", f, h, c), 200, True),
    "get-latest-sync 200 failed": (_failed_status, 200, True),
    "get-last-successful-sync 200": (
        lambda f, h, c: _status_of("lastSuccessful", f, h, c),
        200,
        True,
    ),
    "list-syncs 200": (lambda f, h, c: _status_of("list", f, h, c), 200, True),
    "list-syncs 200 empty": (lambda f, h, c: h.get(status(c, "list")), 200, True),
    "get-sync-status 200": (_company_status, 200, True),
    "get-sync-status 200 running": (_company_status_running, 200, True),
    "get-sync-status 404 none": (lambda f, h, c: call(h, "get-sync-status", c), 404, True),
    "get-sync-status 500": (_scripted(Fault.error(500), "get-sync-status"), 500, True),
    "request-sync 200 syncTo before last sync": (_sync_to_before_last, 200, True),
    "request-sync 400 bad json": (_body(b"{", latest), 400, False),
    "request-sync 400 bad syncTo": (_body(b'{"syncTo": 12}', latest), 400, False),
    "request-sync 400 null body": (_body(b"null", latest), 400, False),
    "request-sync 400 syncTo past year 9999 in UTC": (
        _body(b'{"syncTo": "9999-12-31T23:59:59-01:00"}', latest),
        400,
        True,  # a valid date-time string; only its UTC form overflows
    ),
    "request-sync-for-date-range 400 missing": (_body(b"{}", historic), 400, False),
    "request-sync-for-date-range 400 order": (
        _body(b'{"dateRange": {"start": "2026-02-01", "finish": "2026-01-01"}}', historic),
        400,
        True,
    ),
    "request-sync 400 two keys": (
        lambda f, h, c: h.post(
            latest(c), headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
        ),
        400,
        True,
    ),
    "get-latest-sync 404 none": (lambda f, h, c: h.get(status(c, "latest")), 404, True),
    "get-last-successful-sync 404 none": (
        lambda f, h, c: h.get(status(c, "lastSuccessful")),
        404,
        True,
    ),
    "get-sync-by-id 404": (lambda f, h, c: h.get(status(c, str(uuid.uuid4()))), 404, True),
    "request-sync 404 malformed id": (lambda f, h, c: h.post(latest("acme")), 404, False),
    "request-sync 500": (_scripted(Fault.error(500), "request-sync"), 500, True),
    "request-sync 500 after sync": (
        _scripted(Fault.fail_after_sync(500), "request-sync"),
        500,
        True,
    ),
    "list-syncs 500": (_scripted(Fault.error(500), "list-syncs"), 500, True),
    "request-sync-for-date-range 503": (
        _scripted(Fault.error(503), "request-sync-for-date-range"),
        503,
        True,
    ),
    "get-latest-sync 503 edge json": (
        _scripted(Fault.edge(503, body="json"), "get-latest-sync"),
        503,
        True,
    ),
    "request-sync 429 fault": (_scripted(Fault.rate_limited(3), "request-sync"), 429, True),
    "request-sync 402": (_scripted(Fault.error(402), "request-sync"), 402, True),
    "get-sync-by-id 403": (_scripted(Fault.error(403), "get-sync-by-id"), 403, True),
}
for _operation in SIX:
    CASES[f"{_operation} 401"] = (_unauthorized(_operation), 401, False)
    CASES[f"{_operation} 404 unknown company"] = (_unknown_company(_operation), 404, True)
    CASES[f"{_operation} 429 quota"] = (_quota(_operation), 429, True)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_response_matches_the_spec(openapi, name):
    case, expected, request_valid = CASES[name]
    fake = FakeCodat(clock=ManualClock())
    company = str(uuid.uuid4())
    async with client_for(fake) as http:
        response = await case(fake, http, company)

    assert response.status_code == expected, response.text
    mock_request, mock_response = mocks(response.request, response)
    if request_valid:
        openapi.validate_request(mock_request)
    openapi.validate_response(mock_request, mock_response)
    if expected == 429:
        # Documented in prose by Codat, not declared in the spec.
        assert float(response.headers["retry-after"]) > 0


# Codat documents 409 and 422 for idempotency, but the Sync for Commerce spec declares
# neither (nor the Idempotency-Key header), and 405 and unknown paths have no operation. For
# these we validate the body against the ErrorMessage component schema directly.


async def test_undeclared_statuses_still_send_error_message_bodies(
    openapi, error_message_schema, gated_fake, gate
):
    company = str(uuid.uuid4())
    key = {"Idempotency-Key": str(uuid.uuid4())}
    gate.arm()
    gated_fake.faults.script(Fault.latency(1))
    async with client_for(gated_fake) as http:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: http.post(latest(company), headers=key))
            await gate.entered.wait()
            conflict = await http.post(latest(company), headers=key)
            gate.open()
        mismatch = await http.post(historic(company), json=RANGE, headers=key)
        wrong_method = await http.get(latest(company))
        nowhere = await http.get("/companies")

    for response, code in [(conflict, 409), (mismatch, 422), (wrong_method, 405), (nowhere, 404)]:
        assert response.status_code == code
        assert response.headers["content-type"].split(";")[0] == "application/json"
        error_message_schema.validate(response.json())
        assert response.json()["statusCode"] == code

    # The operations really do not declare them: openapi-core refuses the status.
    mock_request, mock_response = mocks(conflict.request, conflict)
    with pytest.raises(ResponseNotFound):
        openapi.validate_response(mock_request, mock_response)


async def test_the_check_is_not_vacuous(openapi, error_message_schema, fake, http, company):
    good = await http.post(latest(company))
    mock_request, _ = mocks(good.request, good)

    tampered = good.json() | {"syncStatusCode": "1000"}
    with pytest.raises(InvalidData):
        openapi.validate_response(mock_request, MockResponse(json.dumps(tampered).encode(), 200))
    extra = good.json() | {"unexpected": True}
    with pytest.raises(InvalidData):
        openapi.validate_response(mock_request, MockResponse(json.dumps(extra).encode(), 200))
    with pytest.raises(ValidationError, match="False is not of type 'string'"):
        error_message_schema.validate({"statusCode": 500, "canBeRetried": False})

    # A gateway's HTML error page is outside the contract: clients must cope with it anyway.
    fake.faults.script(Fault.edge(503))
    html = await http.post(latest(company))
    html_request, html_response = mocks(html.request, html)
    with pytest.raises(DataValidationError):
        openapi.validate_response(html_request, html_response)
