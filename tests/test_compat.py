"""The drop-in path from the original SDK: ``codat_commerce_async.compat``.

The two examples of the original SDK's documentation (``tests/data/seed-sync-sdk-docs.md``,
a copy of its ``docs/sdks/sync/README.md``) run here exactly as printed, with only their
import lines changed, against the fake Codat on a loopback port.
"""

from __future__ import annotations

import gc
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import codat_commerce_async.compat as codatsynccommerce
from codat_commerce_async import APIConnectionError, RetryPolicy, SyncClient, SyncSummary
from codat_commerce_async.compat import utils
from codat_commerce_async.compat.models import operations, shared
from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

from ._http import httpx
from .conftest import CANARY_KEY, COMPANY

SEED = Path(__file__).parent / "data" / "seed-sync-sdk-docs.md"
#: The team's original document: ``shared/`` sits beside the repository in development and
#: CI; ``CODAT_SHARED_SEED`` names it elsewhere.
SHARED_SEED = Path(
    os.environ.get("CODAT_SHARED_SEED")
    or Path(__file__).resolve().parents[2] / "shared" / "seed" / "sync-sdk-docs.md"
)

ORIGINAL_IMPORTS = {
    "import codatsynccommerce": "import codat_commerce_async.compat as codatsynccommerce",
    "from codatsynccommerce.models import operations, shared": (
        "from codat_commerce_async.compat.models import operations, shared"
    ),
}
HANDLE = "    # handle response"


def seed_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", SEED.read_text(), flags=re.DOTALL)


HANDLED = "    print('handled', res.status_code, res.sync_summary.commerce_sync_id)"


def ported(example: str, handler: str = HANDLED) -> str:
    """The seed example with only its imports changed (and ``handler`` as the body of its
    empty ``if``)."""
    lines = []
    for line in example.splitlines():
        lines.append(ORIGINAL_IMPORTS.get(line, line))
        if line == HANDLE:
            lines.append(handler)
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodatServer]:
    # The seed's examples send the literal "Basic BASE_64_ENCODED(API_KEY)".
    with FakeCodatServer(FakeCodat(accept_any_auth=True)) as srv:
        monkeypatch.setenv("CODAT_BASE_URL", srv.base_url)
        monkeypatch.delenv("CODAT_API_KEY", raising=False)
        yield srv


def test_the_seed_copy_is_the_seed() -> None:
    if not SHARED_SEED.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared seed document beside the repository: {SHARED_SEED}")
        pytest.skip(
            "not compared: tests/data/seed-sync-sdk-docs.md is our copy of the usage document "
            "of Codat's original Python SDK (the examples the compat layer must run); the "
            "maintainers' original lives outside this repository, in shared/seed/ beside the "
            f"checkout ({SHARED_SEED} here). Point CODAT_SHARED_SEED at it to compare"
        )
    assert SEED.read_text() == SHARED_SEED.read_text()


def test_porting_changes_only_the_imports() -> None:
    examples = seed_examples()
    assert len(examples) == 2
    for example in examples:
        before = example.splitlines()
        after = ported(example).splitlines()
        changed = [b for b, a in zip(before, after, strict=False) if a != b]
        assert changed == list(ORIGINAL_IMPORTS)
        assert after[len(before)].startswith("    print(")  # the body added after HANDLE


@pytest.mark.parametrize(
    ("index", "path", "body"),
    [
        (
            0,
            f"/companies/{COMPANY}/sync/commerce/latest",
            {"syncTo": "2022-10-23T00:00:00Z"},
        ),
        (
            1,
            f"/meta/companies/{COMPANY}/sync/commerce/historic",
            {"dateRange": {"start": "2022-10-23T00:00:00Z", "finish": "2022-10-23T00:00:00Z"}},
        ),
    ],
    ids=["request_sync", "request_sync_for_date_range"],
)
def test_seed_example_runs_with_only_its_imports_changed(
    server: FakeCodatServer,
    capsys: pytest.CaptureFixture[str],
    index: int,
    path: str,
    body: dict[str, object],
) -> None:
    code = compile(ported(seed_examples()[index]), f"seed-example-{index}", "exec")
    namespace: dict[str, object] = {}
    exec(code, namespace)

    res = namespace["res"]
    assert isinstance(
        res, operations.RequestSyncResponse | operations.RequestSyncForDateRangeResponse
    )
    assert res.status_code == 200
    assert res.content_type is not None and res.content_type.startswith("application/json")
    assert isinstance(res.raw_response, httpx.Response)
    assert isinstance(res.sync_summary, SyncSummary)
    assert res.sync_summary.company_id == COMPANY
    assert capsys.readouterr().out == f"handled 200 {res.sync_summary.commerce_sync_id}\n"

    (record,) = server.fake.requests
    assert (record.method, record.path, record.status) == ("POST", path, 200)
    assert json.loads(record.body) == body
    assert record.idempotency_key == res.idempotency_key is not None
    assert server.fake.syncs_started(COMPANY) == 1

    # The example never closes its client, like the original: collecting it must be quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace.clear()
        del res
        gc.collect()


def test_auth_header_and_base_url_are_used_verbatim() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"companyId": COMPANY, "syncStatusCode": 1000})

    with codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header="Basic BASE_64_ENCODED(API_KEY)"),
        server_url="https://{host}/",
        url_params={"host": "api.example.test"},
        transport=httpx.MockTransport(handler),
    ) as s:
        res = s.sync.request_sync(operations.RequestSyncRequest(company_id=COMPANY))
    assert res.sync_summary is not None and res.sync_summary.sync_status_code == 1000
    (request,) = seen
    assert request.headers["authorization"] == "Basic BASE_64_ENCODED(API_KEY)"
    assert str(request.url) == f"https://api.example.test/companies/{COMPANY}/sync/commerce/latest"
    assert json.loads(request.content) == {}  # no sync_to_latest_args: sync up to now
    assert s.engine.is_closed


def test_secrets_stay_out_of_reprs() -> None:
    security = shared.Security(auth_header=f"Basic {CANARY_KEY}")
    assert CANARY_KEY not in repr(security)
    with codatsynccommerce.CodatSyncCommerce(
        security=security, server_url="https://api.codat.io"
    ) as s:
        assert CANARY_KEY not in repr(s)
        assert repr(s) == "CodatSyncCommerce(server_url='https://api.codat.io', auth=<redacted>)"


# -- errors: statuses come back, connection failures raise ------------------------------


@pytest.fixture
def fake() -> FakeCodat:
    return FakeCodat()


@pytest.fixture
def sdk(fake: FakeCodat) -> Iterator[codatsynccommerce.CodatSyncCommerce]:
    with codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header=fake.auth_header),
        server_url="http://localhost",
        transport=fake.transport(),
    ) as s:
        yield s


def _range_request(company: str = COMPANY) -> operations.RequestSyncForDateRangeRequest:
    return operations.RequestSyncForDateRangeRequest(
        company_id=company,
        sync_range=shared.SyncRange(
            date_range=shared.SyncRangeDateRange(finish="2024-06-30", start="2024-06-01")
        ),
    )


def test_http_error_status_returns_a_response_without_summary(
    sdk: codatsynccommerce.CodatSyncCommerce, fake: FakeCodat
) -> None:
    fake.mark_unknown(COMPANY)
    res = sdk.sync.request_sync_for_date_range(_range_request())
    assert isinstance(res, operations.RequestSyncForDateRangeResponse)
    assert res.status_code == 404
    assert res.sync_summary is None
    assert res.content_type is not None and res.content_type.startswith("application/json")
    assert res.raw_response is not None and res.raw_response.json()["statusCode"] == 404
    assert res.error is not None and res.error.status_code == 404
    assert res.idempotency_key == res.error.idempotency_key is not None


def test_wrong_credentials_give_a_401_response(fake: FakeCodat) -> None:
    with codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header=f"Basic {CANARY_KEY}"),
        server_url="http://localhost",
        transport=fake.transport(),
    ) as s:
        res = s.sync.request_sync(operations.RequestSyncRequest(company_id=COMPANY))
    assert (res.status_code, res.sync_summary) == (401, None)
    assert CANARY_KEY not in str(res.error)


def test_a_long_retry_after_comes_back_as_a_429_response(
    sdk: codatsynccommerce.CodatSyncCommerce, fake: FakeCodat
) -> None:
    fake.faults.script(Fault.rate_limited(retry_after=3600))
    res = sdk.sync.request_sync(operations.RequestSyncRequest(company_id=COMPANY))
    assert (res.status_code, res.sync_summary) == (429, None)
    assert res.raw_response is not None and res.raw_response.headers["retry-after"] == "3600"
    assert len(fake.requests) == 1


def test_connection_failures_raise() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header="Basic x"),
        server_url="https://api.codat.io",
        transport=httpx.MockTransport(refuse),
    ) as s:
        with pytest.raises(APIConnectionError) as info:
            s.sync.request_sync(
                operations.RequestSyncRequest(company_id=COMPANY),
                retries=utils.RetryConfig("none"),
            )
    assert info.value.attempts == 1
    assert info.value.request_sent is False


@pytest.mark.parametrize(
    "request_",
    [
        operations.RequestSyncRequest(company_id="not-a-uuid"),
        operations.RequestSyncRequest(
            company_id=COMPANY,
            sync_to_latest_args=shared.SyncToLatestArgs(sync_to="2022-10-23T00:00:00"),
        ),
        operations.RequestSyncForDateRangeRequest(company_id=COMPANY),
        operations.RequestSyncForDateRangeRequest(
            company_id=COMPANY,
            sync_range=shared.SyncRange(
                date_range=shared.SyncRangeDateRange(finish="2024-06-01", start="2024-06-30")
            ),
        ),
    ],
    ids=["bad-company-id", "naive-sync-to", "no-sync-range", "start-after-finish"],
)
def test_invalid_input_raises_before_anything_is_sent(
    sdk: codatsynccommerce.CodatSyncCommerce,
    fake: FakeCodat,
    request_: operations.RequestSyncRequest | operations.RequestSyncForDateRangeRequest,
) -> None:
    call = (
        sdk.sync.request_sync
        if isinstance(request_, operations.RequestSyncRequest)
        else sdk.sync.request_sync_for_date_range
    )
    with pytest.raises(ValueError):
        call(request_)  # type: ignore[arg-type]
    assert fake.requests == ()


# -- retries -----------------------------------------------------------------------------

FAST = utils.RetryConfig("backoff", utils.BackoffStrategy(1, 5, 1.5, 1000), True)


def test_retries_reuse_one_idempotency_key(
    sdk: codatsynccommerce.CodatSyncCommerce, fake: FakeCodat
) -> None:
    fake.faults.script(Fault.edge(503), Fault.edge(502))
    res = sdk.sync.request_sync(operations.RequestSyncRequest(company_id=COMPANY), retries=FAST)
    assert res.status_code == 200
    assert [r.status for r in fake.requests] == [503, 502, 200]
    assert {r.idempotency_key for r in fake.requests} == {res.idempotency_key}
    assert fake.syncs_started(COMPANY) == 1


def test_strategy_none_disables_retries(
    sdk: codatsynccommerce.CodatSyncCommerce, fake: FakeCodat
) -> None:
    fake.faults.script(Fault.edge(503))
    res = sdk.sync.request_sync(
        operations.RequestSyncRequest(company_id=COMPANY), retries=utils.RetryConfig("none")
    )
    assert (res.status_code, res.sync_summary) == (503, None)
    assert len(fake.requests) == 1


def test_client_retry_config_is_the_default_and_per_call_overrides_it(fake: FakeCodat) -> None:
    with codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header=fake.auth_header),
        server_url="http://localhost",
        transport=fake.transport(),
        retry_config=utils.RetryConfig("none"),
    ) as s:
        fake.faults.script(Fault.edge(503), Fault.edge(503))
        req = operations.RequestSyncRequest(company_id=COMPANY)
        assert s.sync.request_sync(req).status_code == 503
        assert s.sync.request_sync(req, retries=FAST).status_code == 200
    assert [r.status for r in fake.requests] == [503, 503, 200]


def test_retry_config_mapping() -> None:
    default = utils.to_engine_settings(utils.DEFAULT_RETRY_CONFIG)
    assert default.deadline == 3600.0
    assert default.retry_policy == RetryPolicy(backoff_base=0.5, backoff_cap=60.0)
    # 0.5, 0.75, 1.125, ... s capped at 60 s: the waits that fit in an hour.
    assert 60 < default.max_retries < 80

    assert utils.to_engine_settings(utils.RetryConfig("none")) == utils.EngineRetrySettings(0)
    assert utils.to_engine_settings(utils.RetryConfig("backoff")).max_retries == 0

    tiny = utils.to_engine_settings(
        utils.RetryConfig("backoff", utils.BackoffStrategy(1, 50, 1.1, 100), False),
        attempt_timeout=30.0,
    )
    assert tiny.deadline == 30.0  # never shorter than one attempt's bound
    assert 0 < tiny.max_retries <= utils.MAX_COMPAT_RETRIES

    day = utils.to_engine_settings(
        utils.RetryConfig("backoff", utils.BackoffStrategy(500, 60000, 1.5, 86_400_000), True)
    )
    assert day.deadline == utils.MAX_COMPAT_DEADLINE  # inside Codat's 90-minute key window
    assert day.max_retries == utils.MAX_COMPAT_RETRIES

    with pytest.raises(ValueError, match="initial_interval"):
        utils.to_engine_settings(
            utils.RetryConfig("backoff", utils.BackoffStrategy(-1, 50, 1.1, 100))
        )


# -- construction and lifecycle ----------------------------------------------------------


def test_unsupported_original_arguments_are_refused() -> None:
    security = shared.Security(auth_header="Basic x")
    with pytest.raises(TypeError, match=r"requests\.Session"):
        codatsynccommerce.CodatSyncCommerce(security=security, client=object())
    with pytest.raises(TypeError, match="security="):
        codatsynccommerce.CodatSyncCommerce(auth_header="Basic x")
    with pytest.raises(ValueError, match="server_idx"):
        codatsynccommerce.CodatSyncCommerce(security=security, server_idx=1)


def test_server_idx_zero_and_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODAT_API_KEY", CANARY_KEY)
    monkeypatch.setenv("CODAT_BASE_URL", "http://localhost:9")
    with codatsynccommerce.CodatSyncCommerce(server_idx=0) as s:
        assert str(s.engine.base_url).rstrip("/") == codatsynccommerce.SERVERS[0]
    with codatsynccommerce.CodatSyncCommerce() as s:  # CODAT_BASE_URL, as our clients do
        assert str(s.engine.base_url).startswith("http://localhost:9")


def test_close_is_idempotent_and_the_engine_is_a_sync_client() -> None:
    s = codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header="Basic x"), server_url="https://api.codat.io"
    )
    assert isinstance(s.engine, SyncClient)
    s.close()
    s.close()
    assert s.engine.is_closed


def test_an_empty_retry_budget_returns_the_last_answer(fake: FakeCodat) -> None:
    from codat_commerce_async import RetryBudget

    sdk = codatsynccommerce.CodatSyncCommerce(
        security=shared.Security(auth_header=fake.auth_header),
        server_url="http://localhost",
        transport=fake.transport(),
        retry_budget=RetryBudget(0),  # no retry can be paid for
    )
    fake.faults.script(Fault.edge(503))
    with sdk:
        request = operations.RequestSyncRequest(company_id=COMPANY)
        res = sdk.sync.request_sync(request, retries=FAST)
    assert (res.status_code, res.sync_summary) == (503, None)
    assert len(fake.requests) == 1


def test_the_original_names_exist() -> None:
    assert set(codatsynccommerce.__all__) == {
        "SERVERS",
        "CodatSyncCommerce",
        "Sync",
        "models",
        "utils",
    }
    assert {
        "RequestSyncRequest",
        "RequestSyncResponse",
        "RequestSyncForDateRangeRequest",
        "RequestSyncForDateRangeResponse",
    } <= set(dir(operations))
    assert {
        "Security",
        "SyncToLatestArgs",
        "SyncRange",
        "SyncRangeDateRange",
        "SyncSummary",
        "DateRange",
        "Connection",
        "ConnectionSourceType",
        "DataConnectionError",
        "DataConnectionStatus",
    } == set(shared.__all__)
    assert {"RetryConfig", "BackoffStrategy"} <= set(utils.__all__)
    # Positional use keeps the original's field order.
    assert shared.SyncRangeDateRange("finish", "start").start == "start"
    assert shared.ConnectionSourceType.COMMERCE == "Commerce"
