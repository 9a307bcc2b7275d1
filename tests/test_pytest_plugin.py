"""``acquire_async.testing.pytest_plugin``, run the way a user runs it: in a throw-away project.

The ``acquire_client`` tests need ``acquire_async.AcquireClient``.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = 'pytest_plugins = ["acquire_async.testing.pytest_plugin"]\n'

INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error::ResourceWarning
    error::pytest.PytestUnraisableExceptionWarning
"""

USER_TESTS = """
import pytest

from acquire_async import AcquireClient, Case
from acquire_async.testing import FakeAcquire, Faults


async def test_default_fake(fake_acquire):
    assert isinstance(fake_acquire, FakeAcquire)
    assert sorted(fake_acquire.cases) == list(range(1000, 1010))
    assert fake_acquire.base_url.startswith("http://127.0.0.1:")
    assert fake_acquire.requests == []


@pytest.mark.acquire_fake(cases=3, already_joined=[1001], api_key="plugin-key")
async def test_marker_configures_the_fake(fake_acquire):
    assert sorted(fake_acquire.cases) == [1000, 1001, 1002]
    assert fake_acquire.is_joined(1001)
    assert fake_acquire.api_key == "plugin-key"


@pytest.mark.acquire_fake(2)
async def test_marker_positional_cases(fake_acquire):
    assert len(fake_acquire.cases) == 2


async def test_client_joins_through_the_fake(acquire_client, fake_acquire):
    assert isinstance(acquire_client, AcquireClient)
    case = await acquire_client.join_chat(1004)
    assert isinstance(case, Case)
    assert case.participant(25).status == "joined"
    assert fake_acquire.is_joined(1004)
    assert [r.status for r in fake_acquire.requests] == [200]


@pytest.mark.acquire_fake(cases=1, faults=Faults(sequence=[503]))
async def test_client_sees_the_marker_faults(acquire_client, fake_acquire):
    await acquire_client.join_chat(1000)
    assert [r.status for r in fake_acquire.requests] == [503, 200]
"""


def run_user_tests(pytester: pytest.Pytester, mode: str, tests: str) -> pytest.RunResult:
    """Run `tests` as a user project's test file, with the plugin, in asyncio `mode`."""
    pytester.makeini(INI.format(mode=mode))
    pytester.makeconftest(CONFTEST)
    if mode == "strict":  # strict mode runs only the tests marked for asyncio
        tests = tests.replace("\nasync def test", "\n@pytest.mark.asyncio\nasync def test")
    pytester.makepyfile(test_user=tests)
    return pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_fixtures_in_a_user_project(pytester: pytest.Pytester, mode: str) -> None:
    run_user_tests(pytester, mode, USER_TESTS).assert_outcomes(passed=5)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="auto"))
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.acquire_fake(cases=10, **options):*"])


def test_marker_rejects_two_positional_arguments(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="auto"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_user="""
import pytest

@pytest.mark.acquire_fake(1, 2)
async def test_two(fake_acquire):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*at most one positional argument*"])


THREAD_TESTS = """
import json
import urllib.request

import pytest

from acquire_async.testing import FakeAcquireThread


def join(fake, case_id):
    request = urllib.request.Request(
        fake.base_url + "/crm/messenger/chat/join",
        data=json.dumps({"caseId": case_id}).encode(),
        headers={"Authorization": f"Bearer {fake.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def test_default_thread_fake(fake_acquire_thread):
    assert isinstance(fake_acquire_thread, FakeAcquireThread)
    assert sorted(fake_acquire_thread.cases) == list(range(1000, 1010))
    assert join(fake_acquire_thread, 1003) == 200
    assert fake_acquire_thread.is_joined(1003)


@pytest.mark.acquire_fake(3, already_joined=[1001], api_key="thread-key")
def test_marker_configures_the_thread_fake(fake_acquire_thread):
    assert sorted(fake_acquire_thread.cases) == [1000, 1001, 1002]
    assert fake_acquire_thread.is_joined(1001)
    assert fake_acquire_thread.env["ACQUIRE_API_KEY"] == "thread-key"


async def test_thread_fake_in_an_async_test(fake_acquire_thread):
    assert fake_acquire_thread.requests == []
"""


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_the_thread_fixture_in_a_user_project(pytester: pytest.Pytester, mode: str) -> None:
    run_user_tests(pytester, mode, THREAD_TESTS).assert_outcomes(passed=3)


SYNC_ASKS_FOR_ASYNC = """
import types

import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def joined(acquire_client):
    return await acquire_client.join_chat(1000)


def test_sync_fake(fake_acquire):
    raise AssertionError("the body ran")


def test_sync_client(acquire_client):
    raise AssertionError("the body ran")


@pytest.fixture
def http_client(fake_acquire):
    return object()  # a sync client (FastAPI's TestClient) pointed at the emulator


def test_sync_through_a_sync_fixture(http_client):
    raise AssertionError("the body ran")


def test_sync_using_what_an_async_fixture_awaited(joined):
    assert joined.id == 1000  # the join ran on the loop, before this body: nothing blocks


async def _inner_test(acquire_client):
    await acquire_client.join_chat(1001)


# What Hypothesis' @given makes of an async test: a sync wrapper whose .hypothesis.inner_test
# is the coroutine function; pytest-asyncio runs that on the loop.
@pytest.mark.asyncio
def test_async_under_a_sync_wrapper(acquire_client):
    return test_async_under_a_sync_wrapper.hypothesis.inner_test(acquire_client)


test_async_under_a_sync_wrapper.is_hypothesis_test = True
test_async_under_a_sync_wrapper.hypothesis = types.SimpleNamespace(inner_test=_inner_test)


@pytest.mark.acquire_fake(cases=1)
async def test_async_is_fine(acquire_client, fake_acquire):
    await acquire_client.join_chat(1000)
    assert fake_acquire.is_joined(1000)
"""


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_a_sync_test_asking_for_the_async_fixtures_is_told_what_to_use(
    pytester: pytest.Pytester, mode: str
) -> None:
    result = run_user_tests(pytester, mode, SYNC_ASKS_FOR_ASYNC)
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*test_sync_fake is a sync test and asks for fake_acquire: *"
            "Use the fake_acquire_thread fixture*",
            "*test_sync_client is a sync test and asks for acquire_client: *fake_acquire_thread*",
            "*test_sync_through_a_sync_fixture is a sync test and asks for fake_acquire "
            "(through http_client)*fake_acquire_thread*",
        ]
    )
    result.stdout.no_fnmatch_line("*the body ran*")


# The case: a FastAPI app whose lifespan builds its client from the environment, driven
# by the sync TestClient, against the async fixture. The app's requests to the emulator used to
# wait out the client's retries (4 x 60 s) before failing; now the test errors at setup.
FASTAPI_HANG = """
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from acquire_async import AcquireClient


@asynccontextmanager
async def lifespan(app):
    async with AcquireClient() as client:
        app.state.acquire = client
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/cases/{case_id}/join")
async def join(case_id: int):
    case = await app.state.acquire.join_chat(case_id)
    return {"id": case.id}


def test_testclient_against_fake_acquire(fake_acquire, monkeypatch):
    Path("body-ran").touch()
    monkeypatch.setenv("ACQUIRE_BASE_URL", fake_acquire.base_url)
    monkeypatch.setenv("ACQUIRE_API_KEY", fake_acquire.api_key)
    with TestClient(app) as http:
        assert http.post("/cases/1000/join").status_code == 200
"""

# Far below the 4 minutes the old behaviour took, far above a pytest start on a busy machine.
HANG_BOUND = 60


@pytest.mark.slow
def test_the_old_hang_is_an_immediate_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="auto"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=FASTAPI_HANG)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=HANG_BOUND)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*sync test*fake_acquire*Use the fake_acquire_thread fixture*"])
    assert not (pytester.path / "body-ran").exists()
