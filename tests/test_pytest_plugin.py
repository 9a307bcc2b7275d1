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


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_fixtures_in_a_user_project(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(INI.format(mode=mode))
    pytester.makeconftest(CONFTEST)
    tests = USER_TESTS
    if mode == "strict":  # strict mode runs only the tests marked for asyncio
        tests = tests.replace("\nasync def", "\n@pytest.mark.asyncio\nasync def")
    pytester.makepyfile(test_user=tests)
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


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
