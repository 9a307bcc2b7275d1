"""pytest fixtures for code that talks to Acquire: a started fake and a client bound to it.

Enable it in a `conftest.py` (pytest-asyncio is required):

```python
pytest_plugins = ["acquire_async.testing.pytest_plugin"]
```

then:

```python
async def test_join(acquire_client, fake_acquire):
    case = await acquire_client.join_chat(1000)
    assert fake_acquire.is_joined(case.id)

@pytest.mark.acquire_fake(cases=3, faults=Faults(sequence=[503]))
async def test_join_after_a_503(acquire_client, fake_acquire):
    await acquire_client.join_chat(1000)
    assert [r.status for r in fake_acquire.requests] == [503, 200]

def test_a_sync_client(fake_acquire_thread, monkeypatch):
    for name, value in fake_acquire_thread.env.items():
        monkeypatch.setenv(name, value)
    with TestClient(app) as http:  # FastAPI's: it blocks the test's thread
        assert http.post("/cases/1000/join").status_code == 200
```

`fake_acquire` is a started `FakeAcquire` with 10 waiting cases (ids 1000-1009); the
`acquire_fake` marker's keyword arguments replace or add to its constructor arguments (a
positional argument is `cases`). `acquire_client` is an
`AcquireClient(api_key=fake.api_key, base_url=fake.base_url)`, entered with `async with`.
Both are served by the test's event loop, so they are for `async def` tests: a sync test that
asks for them (itself, or through sync fixtures) fails at setup, with an error naming
`fake_acquire_thread`, a started `FakeAcquireThread` (the marker applies to it too). A sync
test may use values that the user's own async fixtures got from them (those awaits ran before
the body), but must not talk to the emulator itself. All are function-scoped and closed after
the test.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from acquire_async import AcquireClient

from ._fake import FakeAcquire
from ._thread import FakeAcquireThread

__all__ = ["acquire_client", "fake_acquire", "fake_acquire_thread", "pytest_configure"]

DEFAULT_CASES = 10


def pytest_configure(config: pytest.Config) -> None:
    """Register the `acquire_fake` marker (so `--strict-markers` accepts it).

    Example:
        ```python
        @pytest.mark.acquire_fake(cases=3, faults=Faults(sequence=[503]))
        async def test_join_after_a_503(acquire_client): ...
        ```
    """
    config.addinivalue_line(
        "markers",
        "acquire_fake(cases=10, **options): FakeAcquire arguments for the fake_acquire and "
        "fake_acquire_thread fixtures "
        "(cases, faults=Faults(...), api_key, already_joined, method_not_allowed, ...)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"cases": DEFAULT_CASES}
    marker = request.node.get_closest_marker("acquire_fake")
    if marker is not None:
        if len(marker.args) > 1:
            raise TypeError("acquire_fake takes at most one positional argument (cases)")
        if marker.args:
            options["cases"] = marker.args[0]
        options.update(marker.kwargs)
    return options


_ASYNC_FIXTURES = ("fake_acquire", "acquire_client")


def _refuse_a_sync_test(request: pytest.FixtureRequest) -> None:
    """Fail a sync test that reaches the async fixtures without a loop, before they start.

    `fake_acquire` is served by the test's event loop, which a sync test never lets run: every
    request to it during the test would wait out the client's timeouts and retries (minutes)
    and then fail. The test is refused when it names `fake_acquire` or `acquire_client`, or
    reaches them through sync fixtures only (one that builds a `TestClient`, say). Through an
    async fixture it is let be: that fixture's awaits ran on the loop before the body.
    """
    node = request.node
    test = getattr(node, "obj", None)
    if (
        test is None
        or inspect.iscoroutinefunction(test)
        # An async test under a sync wrapper (Hypothesis' @given), run on the loop.
        or pytest_asyncio.is_async_test(node)
    ):
        return
    path = _sync_path(node)
    if path is None:
        return
    through = f" (through {' -> '.join(path[:-1])})" if len(path) > 1 else ""
    pytest.fail(
        f"{node.name} is a sync test and asks for {path[-1]}{through}: that emulator runs on "
        "the test's event loop, which a sync test blocks, so no request to it would be "
        "answered. Use the fake_acquire_thread fixture (an emulator on its own thread, for "
        "sync clients such as FastAPI's TestClient), or make the test 'async def'.",
        pytrace=False,
    )


def _sync_path(node: Any) -> list[str] | None:
    """The fixtures from a test to `fake_acquire`/`acquire_client` through sync ones only."""
    info = getattr(node, "_fixtureinfo", None)  # pytest's; without it, the test's own names
    defs: dict[str, Any] = getattr(info, "name2fixturedefs", None) or {}
    start = getattr(info, "argnames", None)
    if start is None:
        start = tuple(inspect.signature(node.obj).parameters)
    seen: set[str] = set()

    def walk(names: Any, path: list[str]) -> list[str] | None:
        for name in names:
            if name in _ASYNC_FIXTURES:
                return [*path, name]
            if name in seen or not defs.get(name):
                continue
            seen.add(name)
            func = defs[name][-1].func
            if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
                continue
            found = walk(defs[name][-1].argnames, [*path, name])
            if found is not None:
                return found
        return None

    return walk(start, [])


@pytest_asyncio.fixture
async def fake_acquire(request: pytest.FixtureRequest) -> AsyncIterator[FakeAcquire]:
    """A started `FakeAcquire` (10 cases unless `@pytest.mark.acquire_fake` says).

    For `async def` tests; a sync test gets an error naming `fake_acquire_thread`.

    Example:
        ```python
        async def test_join(acquire_client, fake_acquire):
            await acquire_client.join_chat(1000)
            assert fake_acquire.is_joined(1000)
        ```
    """
    _refuse_a_sync_test(request)
    async with FakeAcquire(**_options(request)) as fake:
        yield fake


@pytest.fixture
def fake_acquire_thread(request: pytest.FixtureRequest) -> Iterator[FakeAcquireThread]:
    """A started `FakeAcquireThread`: the emulator on its own thread and event loop, for
    sync tests and sync clients (10 cases unless `@pytest.mark.acquire_fake` says).

    Example:
        ```python
        @pytest.mark.acquire_fake(cases=3)
        def test_join(fake_acquire_thread, monkeypatch):
            for name, value in fake_acquire_thread.env.items():
                monkeypatch.setenv(name, value)
            with TestClient(app) as http:
                assert http.post("/cases/1000/join").status_code == 200
            assert fake_acquire_thread.is_joined(1000)
        ```
    """
    with FakeAcquireThread(**_options(request)) as fake:
        yield fake


@pytest_asyncio.fixture
async def acquire_client(fake_acquire: FakeAcquire) -> AsyncIterator[AcquireClient]:
    """An `acquire_async.AcquireClient` bound to `fake_acquire`, open for the test.

    Example:
        ```python
        async def test_join(acquire_client):
            case = await acquire_client.join_chat(1000)
            assert case.id == 1000
        ```
    """
    async with AcquireClient(
        api_key=fake_acquire.api_key, base_url=fake_acquire.base_url
    ) as client:
        yield client
