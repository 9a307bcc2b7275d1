"""tests/redisserver.py: without redis-server the Redis tests skip, saying how to enable them;
under ``ACQUIRE_REQUIRE_REDIS=1`` (CI) they fail instead."""

from __future__ import annotations

import os
import shutil

import pytest
import redisserver


@pytest.fixture
def no_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)


@pytest.mark.usefixtures("no_redis_server")
def test_missing_redis_server_skips_with_how_to_enable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redisserver.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        redisserver.redis_binary()


@pytest.mark.usefixtures("no_redis_server")
def test_missing_redis_server_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(redisserver.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="ACQUIRE_REQUIRE_REDIS=1"):
        redisserver.redis_binary()
