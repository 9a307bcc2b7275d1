"""pytest fixtures for code that talks to Acquire: a started fake and a client bound to it.

Enable it in a ``conftest.py`` (pytest-asyncio is required)::

    pytest_plugins = ["acquire_async.testing.pytest_plugin"]

then::

    async def test_join(acquire_client, fake_acquire):
        case = await acquire_client.join_chat(1000)
        assert fake_acquire.is_joined(case.id)

    @pytest.mark.acquire_fake(cases=3, faults=Faults(sequence=[503]))
    async def test_join_after_a_503(acquire_client, fake_acquire):
        await acquire_client.join_chat(1000)
        assert [r.status for r in fake_acquire.requests] == [503, 200]

``fake_acquire`` is a started :class:`~acquire_async.testing.FakeAcquire` with 10 waiting
cases (ids 1000-1009); the ``acquire_fake`` marker's keyword arguments replace or add to its
constructor arguments (a positional argument is ``cases``). ``acquire_client`` is an
``AcquireClient(api_key=fake.api_key, base_url=fake.base_url)``, entered with ``async with``.
Both are function-scoped and closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from acquire_async import AcquireClient

from ._fake import FakeAcquire

__all__ = ["acquire_client", "fake_acquire", "pytest_configure"]

DEFAULT_CASES = 10


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``acquire_fake`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "acquire_fake(cases=10, **options): FakeAcquire arguments for the fake_acquire fixture "
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


@pytest_asyncio.fixture
async def fake_acquire(request: pytest.FixtureRequest) -> AsyncIterator[FakeAcquire]:
    """A started :class:`FakeAcquire` (10 cases unless ``@pytest.mark.acquire_fake`` says)."""
    async with FakeAcquire(**_options(request)) as fake:
        yield fake


@pytest_asyncio.fixture
async def acquire_client(fake_acquire: FakeAcquire) -> AsyncIterator[AcquireClient]:
    """An ``acquire_async.AcquireClient`` bound to ``fake_acquire``, open for the test."""
    async with AcquireClient(
        api_key=fake_acquire.api_key, base_url=fake_acquire.base_url
    ) as client:
        yield client
