"""Shared test helpers: an aioresponses mock that works with this aiohttp version, and a real
``redis-server`` for the tests that need one."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses
from redisserver import RedisServer, redis_binary


class _CompatClientResponse(aiohttp.ClientResponse):
    # aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that
    # aiohttp >= 3.14 requires; a finished request only reads its ``output_size``.
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mock_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """An active ``aioresponses`` (no real request leaves the process)."""
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatClientResponse)
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh real ``redis-server`` on a free loopback port (see ``tests/redisserver.py``)."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
