"""The shipped pytest plugin, used as a user would: small test files run by ``pytester``
in a separate pytest process under pytest-asyncio (strict and auto mode, function and
module loop scope), anyio's plugin (asyncio and trio), respx, and plain sync tests.

The project's own configuration disables pytest-asyncio (``-p no:asyncio``); each inner
run names the plugins it uses explicitly and treats warnings as errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
PLUGIN = "codat_commerce_async.testing.pytest_plugin"
COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"
# Inner runs: warnings are errors, no cache written, pytest-asyncio's own default set.
STRICT = ("-W", "error", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly")
ASYNCIO = ("-p", "asyncio", "-o", "asyncio_default_fixture_loop_scope=function")


def docs_files() -> dict[str, str]:
    """The copy-paste test files of docs/testing.md, by the name on their first line."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    files = {}
    for block in blocks:
        first = block.splitlines()[0]
        match = re.match(r"# (test_\w+\.py)\b", first)
        if match:
            files[match.group(1)] = block
    return files


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*STRICT, *args, timeout=300)


def test_the_docs_show_three_test_files() -> None:
    assert sorted(docs_files()) == [
        "test_codat_with_anyio.py",
        "test_codat_with_pytest_asyncio.py",
        "test_codat_with_respx.py",
    ]


def test_the_pytest_asyncio_file_of_the_docs_runs_as_printed_in_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    name = "test_codat_with_pytest_asyncio.py"
    pytester.makepyfile(**{name[:-3]: docs_files()[name]})
    result = run(pytester, *ASYNCIO, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=3)


def test_the_anyio_file_of_the_docs_runs_as_printed_on_asyncio_and_trio(
    pytester: pytest.Pytester,
) -> None:
    name = "test_codat_with_anyio.py"
    pytester.makepyfile(**{name[:-3]: docs_files()[name]})
    result = run(pytester, "-p", "anyio", "-p", "no:asyncio", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*[[]trio[]] PASSED*"])


def test_the_respx_file_of_the_docs_runs_as_printed(pytester: pytest.Pytester) -> None:
    name = "test_codat_with_respx.py"
    pytester.makepyfile(**{name[:-3]: docs_files()[name]})
    result = run(pytester, *ASYNCIO, "-p", "respx")
    result.assert_outcomes(passed=1)


AUTO_MODE = f'''
from codat_commerce_async.testing import Fault

COMPANY = "{COMPANY}"


async def test_unmarked_coroutine(codat_client, codat_fake, codat_clock):
    codat_fake.faults.script(Fault.edge(503))
    await codat_client.sync.request_sync(COMPANY)
    assert codat_fake.syncs_started() == 1
    assert len(codat_clock.sleeps) == 1


async def test_the_client_can_be_closed_by_the_test(codat_client, codat_fake):
    async with codat_client:
        await codat_client.sync.request_sync(COMPANY)
    assert codat_fake.syncs_started() == 1


def test_sync_in_an_auto_mode_suite(codat_sync_client, codat_fake):
    codat_sync_client.sync.request_sync(COMPANY)
    assert codat_fake.syncs_started() == 1
'''


def test_the_fixtures_work_in_pytest_asyncio_auto_mode_via_dash_p(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_auto=AUTO_MODE)
    result = run(pytester, *ASYNCIO, "-o", "asyncio_mode=auto", "-p", PLUGIN)
    result.assert_outcomes(passed=3)


MODULE_LOOP = f'''
import asyncio

import pytest

pytest_plugins = ["{PLUGIN}"]
pytestmark = pytest.mark.asyncio(loop_scope="module")

COMPANY = "{COMPANY}"
LOOPS = []


async def test_first(codat_client, codat_fake):
    LOOPS.append(asyncio.get_running_loop())
    await codat_client.sync.request_sync(COMPANY)
    assert codat_fake.syncs_started() == 1


async def test_second_shares_the_loop_and_gets_a_fresh_fake(codat_client, codat_fake):
    LOOPS.append(asyncio.get_running_loop())
    assert LOOPS[0] is LOOPS[1]
    assert codat_fake.syncs_started() == 0
    await codat_client.sync.request_sync(COMPANY)
    assert codat_fake.syncs_started() == 1
'''


def test_the_fixtures_work_on_a_module_scoped_pytest_asyncio_loop(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_module_loop=MODULE_LOOP)
    result = run(pytester, *ASYNCIO, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=2)


PLAIN = f'''
import httpx

from codat_commerce_async import AsyncSyncClient, SyncClient
from codat_commerce_async.testing import Fault

COMPANY = "{COMPANY}"


def test_blocking_client_with_virtual_time(codat_sync_client, codat_fake, codat_clock):
    codat_fake.faults.script(Fault.rate_limited(20))
    codat_sync_client.sync.request_sync(COMPANY)
    assert codat_clock.now() >= 20
    assert codat_fake.syncs_started() == 1


def test_the_server_is_on_loopback(codat_server):
    assert codat_server.base_url.startswith("http://127.0.0.1:")
    response = httpx.get(codat_server.base_url + "/_fake/ledger")
    assert response.json()["requests"] == 0


def test_codat_env_serves_a_client_built_from_the_environment(codat_env):
    with SyncClient() as client:
        client.sync.request_sync(COMPANY)
    assert codat_env.fake.syncs_started(COMPANY) == 1


def test_an_async_client_is_built_without_a_loop(codat_client):
    assert isinstance(codat_client, AsyncSyncClient)
'''


def test_the_fixtures_work_in_plain_sync_tests_without_async_plugins(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(f'pytest_plugins = ["{PLUGIN}"]\n')
    pytester.makepyfile(test_plain=PLAIN)
    result = run(pytester, "-p", "no:asyncio", "-p", "no:anyio", "-p", "no:trio")
    result.assert_outcomes(passed=4)
