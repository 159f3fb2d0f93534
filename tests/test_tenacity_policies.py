"""Retry policies written with tenacity's strategies, evaluated by the SDK's own loop.

Each test drives a client through a scripted Codat on a virtual clock: the defaults are
``wait_codat()``/``stop_codat()``, a user's strategies compose on them in tenacity's
order, and no permissive strategy can break the SDK's safety rules.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import tenacity
from tenacity import (
    before_sleep_log,
    retry_always,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_fixed,
    wait_incrementing,
    wait_none,
)

from codat_commerce_async import (
    AsyncSyncClient,
    ConfigurationError,
    InternalServerError,
    RateLimitError,
    RetryBudget,
    RetryBudgetExhaustedError,
    RetryPolicy,
    RetryPolicyError,
    SyncClient,
    stop_codat,
    wait_codat,
)
from codat_commerce_async.testing import ManualClock

from ._http import httpx
from .conftest import BASE_URL, CANARY_KEY, COMPANY, SUMMARY, ScriptedCodat, error_body

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

PERMISSIVE = {"retry": retry_always, "stop": stop_never, "wait": wait_none()}


def reply(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    if status < 300:
        return httpx.Response(status, json=SUMMARY)
    return httpx.Response(status, json=error_body(status), headers=headers)


def client_for(
    codat: ScriptedCodat, clock: ManualClock, policy: RetryPolicy | None = None, **options: Any
) -> AsyncSyncClient:
    return AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url=BASE_URL,
        transport=httpx.MockTransport(codat),
        clock=clock,
        retry_policy=policy,
        **options,
    )


async def run(
    statuses: list[int | httpx.Response], policy: RetryPolicy | None, **options: Any
) -> tuple[ScriptedCodat, ManualClock, BaseException | None]:
    codat = ScriptedCodat().then(
        *(reply(s) if isinstance(s, int) else s for s in statuses)
    )
    clock = ManualClock(1000.0)
    error: BaseException | None = None
    async with client_for(codat, clock, policy, **options) as client:
        try:
            await client.sync.request_sync(COMPANY)
        except Exception as exc:
            error = exc
    return codat, clock, error


RATE_LIMITED = reply(429, {"Retry-After": "5"})


@pytest.mark.parametrize(
    "script",
    [
        [503, 502, 200],
        [RATE_LIMITED, 200],
        [503, 503, 503, 503],
        [reply(429, {"Retry-After": "600"})],
        [408, 409, 200],
    ],
    ids=["backoff", "retry-after", "gives-up", "retry-after-above-cap", "408-then-409"],
)
async def test_the_defaults_are_wait_codat_and_stop_codat(script: list[Any]) -> None:
    plain = await run(list(script), None)
    spelled = await run(list(script), RetryPolicy(wait=wait_codat(), stop=stop_codat()))
    assert len(spelled[0].requests) == len(plain[0].requests)
    assert spelled[1].sleeps == plain[1].sleeps
    assert type(spelled[2]) is type(plain[2])


async def test_a_composed_policy_waits_and_stops_in_virtual_time() -> None:
    # wait 2 s, 3 s, 4 s ... plus 1: attempts fail at t=0, 3, 7, 12; stop_after_delay(10)
    # stops at the fourth, before max_retries (10) would.
    policy = RetryPolicy(
        wait=wait_fixed(1) + wait_incrementing(start=2, increment=1),
        stop=stop_after_delay(10) | stop_after_attempt(8),
    )
    codat, clock, error = await run([503] * 11, policy, max_retries=10)
    assert len(codat.requests) == 4
    assert clock.sleeps == [3.0, 4.0, 5.0]
    assert isinstance(error, InternalServerError)
    assert error.attempts == 4


async def test_a_users_retry_only_narrows_what_is_retried() -> None:
    policy = RetryPolicy(retry=retry_if_exception_type(RateLimitError), wait=wait_none())
    codat, _, error = await run([503, 200], policy)
    assert len(codat.requests) == 1
    assert isinstance(error, InternalServerError)
    codat, _, error = await run([RATE_LIMITED, 200], policy)
    assert len(codat.requests) == 2
    assert error is None


@pytest.mark.parametrize("status", [500, 400, 401, 404, 422])
async def test_a_permissive_policy_cannot_retry_what_is_unsafe(status: int) -> None:
    # A POST 500 is replayed by Codat for the key; a 4xx other than 408/409/429 is final.
    codat, _, error = await run([status, 200], RetryPolicy(**PERMISSIVE), max_retries=5)
    assert len(codat.requests) == 1
    assert getattr(error, "status_code", None) == status


async def test_a_permissive_policy_keeps_max_retries_and_one_key() -> None:
    codat, _, error = await run([503] * 10, RetryPolicy(**PERMISSIVE), max_retries=3)
    assert len(codat.requests) == 4
    assert len(set(codat.keys)) == 1
    assert codat.keys[0] is not None
    assert isinstance(error, InternalServerError)
    assert error.idempotency_key == codat.keys[0]


async def test_a_permissive_policy_cannot_outlive_the_deadline() -> None:
    policy = RetryPolicy(retry=retry_always, stop=stop_never, wait=wait_fixed(4))
    codat, clock, error = await run([503] * 50, policy, max_retries=40, deadline=10)
    assert len(codat.requests) == 3  # at 0, 4 and 8 s; a wait of 4 s more would pass 10 s
    assert sum(clock.sleeps) < 10
    assert isinstance(error, InternalServerError)


async def test_a_permissive_policy_cannot_overdraw_the_retry_budget() -> None:
    budget = RetryBudget(10, retry_cost=5)
    policy = RetryPolicy(**PERMISSIVE)
    codat, _, error = await run([503] * 10, policy, max_retries=9, retry_budget=budget)
    assert len(codat.requests) == 3
    assert isinstance(error, RetryBudgetExhaustedError)
    assert budget.available == 0


async def test_a_permissive_policy_cannot_skip_the_retry_after_cap_or_the_429_gate() -> None:
    # Above max_retry_after: not retried at all.
    too_long = reply(429, {"Retry-After": "120"})
    codat, _, error = await run([too_long, 200], RetryPolicy(**PERMISSIVE))
    assert len(codat.requests) == 1
    assert isinstance(error, RateLimitError)
    # Within it: the user's wait of 0 does not send the retry before the gate opens.
    clock = ManualClock(1000.0)
    seen: list[float] = []
    codat = ScriptedCodat().then(RATE_LIMITED, reply(200))
    codat.default = lambda request: httpx.Response(200, json=SUMMARY)

    def timed(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now())
        return codat(request)

    async with AsyncSyncClient(
        api_key=CANARY_KEY,
        base_url=BASE_URL,
        transport=httpx.MockTransport(timed),
        clock=clock,
        retry_policy=RetryPolicy(**PERMISSIVE),
    ) as client:
        await client.sync.request_sync(COMPANY)
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 5


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_coroutine_strategies_are_awaited() -> None:
    calls: list[tuple[str, int]] = []

    async def retry(state: tenacity.RetryCallState) -> bool:
        calls.append(("retry", state.attempt_number))
        return True

    async def wait(state: tenacity.RetryCallState) -> float:
        calls.append(("wait", state.attempt_number))
        return 1.5

    async def stop(state: tenacity.RetryCallState) -> bool:
        calls.append(("stop", state.attempt_number))
        return False

    async def after(state: tenacity.RetryCallState) -> None:
        calls.append(("after", state.attempt_number))

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.next_action is not None
        calls.append(("before_sleep", state.attempt_number))

    policy = RetryPolicy(retry=retry, wait=wait, stop=stop, after=after, before_sleep=before_sleep)
    codat, clock, error = await run([503, 200], policy)
    assert error is None
    assert len(codat.requests) == 2
    assert clock.sleeps == [1.5]
    # tenacity's own order: retry, after, wait, stop, before_sleep.
    assert calls == [("retry", 1), ("after", 1), ("wait", 1), ("stop", 1), ("before_sleep", 1)]


async def test_tenacitys_async_retry_strategies_are_awaited() -> None:
    asyncio_strategies = pytest.importorskip("tenacity.asyncio")
    if not hasattr(asyncio_strategies, "retry_if_exception"):
        pytest.skip("tenacity < 8.4 has no async retry strategies")
    seen: list[int] = []

    async def is_429(exc: BaseException) -> bool:
        seen.append(getattr(exc, "status_code", 0))
        return isinstance(exc, RateLimitError)

    policy = RetryPolicy(retry=asyncio_strategies.retry_if_exception(is_429), wait=wait_none())
    codat, _, error = await run([503, 200], policy)
    assert (len(codat.requests), seen) == (1, [503])
    assert isinstance(error, InternalServerError)


class Broken(Exception):
    pass


@pytest.mark.parametrize("role", ["retry", "wait", "stop", "before_sleep", "after"])
async def test_a_strategy_that_raises_fails_the_call_with_its_cause(role: str) -> None:
    def broken(state: tenacity.RetryCallState) -> Any:
        raise Broken("bad strategy")

    codat, clock, error = await run([503, 200], RetryPolicy(**{role: broken}))
    assert isinstance(error, RetryPolicyError)
    assert isinstance(error, ConfigurationError)
    assert isinstance(error.__cause__, Broken)
    assert error.attempts == 1
    assert error.idempotency_key == codat.keys[0]
    assert len(codat.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("bad", [-1, "soon", None, float("nan")])
async def test_a_wait_that_is_not_a_number_of_seconds_fails_the_call(bad: Any) -> None:
    codat, _, error = await run([503, 200], RetryPolicy(wait=lambda state: bad))
    assert isinstance(error, RetryPolicyError)
    assert len(codat.requests) == 1


def test_a_strategy_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match=r"RetryPolicy\.wait"):
        RetryPolicy(wait=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="backoff_base"):
        wait_codat(backoff_base=-1)


async def test_before_sleep_log_names_the_call_but_not_the_key_or_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("my_app.retries")
    policy = RetryPolicy(
        wait=wait_codat() + wait_fixed(0), before_sleep=before_sleep_log(logger, logging.INFO)
    )
    with caplog.at_level(logging.INFO, logger="my_app.retries"):
        codat, clock, error = await run([503, RATE_LIMITED, 200], policy)
    assert error is None
    lines = [r.getMessage() for r in caplog.records if r.name == "my_app.retries"]
    assert len(lines) == 2
    path = f"/companies/{COMPANY}/sync/commerce/latest"
    for line, wait in zip(lines, clock.sleeps, strict=True):
        assert f"POST {path}" in line
        numbers = [float(n) for n in re.findall(r"\b\d+\.\d+\b", line)]
        assert any(abs(n - wait) < 0.01 for n in numbers), (line, wait)
    assert "InternalServerError" in lines[0]
    assert "RateLimitError" in lines[1]
    text = "\n".join(lines)
    key = codat.keys[0]
    assert key is not None
    for secret in (key, CANARY_KEY, codat.requests[0].headers["authorization"]):
        assert secret not in text


async def test_the_state_is_tenacitys_on_the_clients_clock() -> None:
    states: list[tuple[int, float | None, float, float]] = []

    def after(state: tenacity.RetryCallState) -> None:
        assert isinstance(state, tenacity.RetryCallState)
        assert state.outcome is not None
        assert isinstance(state.outcome.exception(), InternalServerError)
        states.append(
            (state.attempt_number, state.seconds_since_start, state.idle_for, state.upcoming_sleep)
        )

    policy = RetryPolicy(wait=wait_fixed(2), after=after)
    _, _, error = await run([503, 503, 200], policy)
    assert error is None
    # after() runs before wait: upcoming_sleep is still the previous one.
    assert states == [(1, 0.0, 0.0, 0.0), (2, 2.0, 2.0, 2.0)]


async def test_with_options_takes_a_policy_of_strategies() -> None:
    codat = ScriptedCodat().then(reply(503), reply(503), reply(200))
    clock = ManualClock(1000.0)
    async with client_for(codat, clock) as client:
        fast = client.with_options(retry_policy=RetryPolicy(wait=wait_fixed(0.25)))
        await fast.sync.request_sync(COMPANY)
    assert clock.sleeps == [0.25, 0.25]


def test_the_blocking_client_takes_a_policy_of_strategies() -> None:
    codat = ScriptedCodat().then(reply(503), reply(200))
    clock = ManualClock(1000.0)
    with SyncClient(
        api_key=CANARY_KEY,
        base_url=BASE_URL,
        transport=httpx.MockTransport(codat),
        clock=clock,
        retry_policy=RetryPolicy(wait=wait_fixed(0.5), stop=stop_after_attempt(2)),
    ) as client:
        client.sync.request_sync(COMPANY)
    assert clock.sleeps == [0.5]
    assert len(codat.requests) == 2


def test_wait_codat_and_stop_codat_work_in_tenacitys_own_controller() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return "ok"

    slept: list[float] = []
    retrying = tenacity.Retrying(
        wait=wait_codat(backoff_base=0.01), stop=stop_codat(), sleep=slept.append
    )
    assert retrying(flaky) == "ok"
    assert len(slept) == 2
    assert all(0 <= s <= 0.02 for s in slept)


async def test_a_call_takes_its_own_policy_of_strategies() -> None:
    codat = ScriptedCodat().then(reply(503), reply(200), reply(503), reply(200))
    clock = ManualClock(1000.0)
    async with client_for(codat, clock, RetryPolicy(wait=wait_fixed(3))) as client:
        await client.sync.request_sync(COMPANY, retry_policy=RetryPolicy(wait=wait_fixed(0.75)))
        await client.sync.get_latest_sync(COMPANY)  # the client's policy again
    assert clock.sleeps == [0.75, 3.0]


def test_a_blocking_call_takes_its_own_policy_of_strategies() -> None:
    codat = ScriptedCodat().then(reply(503), reply(503), reply(200))
    clock = ManualClock(1000.0)
    with SyncClient(
        api_key=CANARY_KEY, base_url=BASE_URL, transport=httpx.MockTransport(codat), clock=clock
    ) as client:
        with pytest.raises(InternalServerError):
            client.sync.request_sync(
                COMPANY, retry_policy=RetryPolicy(wait=wait_none(), stop=stop_after_attempt(2))
            )
    assert clock.sleeps == [0.0]


def test_the_readmes_tenacity_policy_runs_as_printed() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from codat_commerce_async.testing import FakeCodat, FakeCodatServer, Fault

    readme = Path(__file__).resolve().parent.parent / "README.md"
    section = readme.read_text(encoding="utf-8").split(
        "### Your own retry policy, in tenacity's words\n", 1
    )[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    fake = FakeCodat(api_key="YOUR_API_KEY")
    fake.faults.script(Fault.drop())  # the sync starts, the answer is lost: retried, same key
    with FakeCodatServer(fake) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CODAT_")},
            "CODAT_BASE_URL": server.base_url,
        }
        done = subprocess.run(
            [sys.executable, "-c", match.group(1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Started"
    logged = [line for line in done.stderr.splitlines() if line.startswith("INFO:my_app:")]
    assert len(logged) == 1, done.stderr
    assert f"POST /companies/{COMPANY}/sync/commerce/latest" in logged[0]
    assert "APIConnectionError" in logged[0]
    key = fake.requests[0].idempotency_key
    assert key is not None
    assert key not in done.stderr
    assert "YOUR_API_KEY" not in done.stderr
    assert fake.syncs_started(COMPANY) == 1
    assert [r.idempotency_key for r in fake.requests] == [key, key]


def test_installing_the_sdk_pulls_tenacity() -> None:
    from importlib.metadata import requires

    runtime = [r for r in requires("codat-commerce-async") or [] if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("tenacity>=") for r in runtime), runtime
