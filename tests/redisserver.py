"""A real ``redis-server`` for the tests: started on a free loopback port in a temp dir.

Tests that need Redis take the ``redis_server`` fixture (``tests/conftest.py``). Without a
``redis-server`` binary they skip, saying how to enable them, so the README's test command
passes on a machine with only Python; with ``ACQUIRE_REQUIRE_REDIS=1`` (set by ``.ci/run``,
which installs the Debian package) a missing binary fails them instead, so CI never skips.

The server writes an append-only file with ``appendfsync always``: a test may :meth:`stop`
and :meth:`start` it mid-run (a Redis restart) and find every acknowledged write again, as a
production queue with persistence would.

Example::

    async def test_ping(redis_server: RedisServer) -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        assert await client.ping()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REQUIRE_ENV = "ACQUIRE_REQUIRE_REDIS"
HOW_TO_ENABLE = (
    "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server) "
    "to run the Redis tests; .ci/run installs it and requires them"
)


def redis_binary() -> str:
    """The ``redis-server`` path, or skip (fail when ``ACQUIRE_REQUIRE_REDIS=1``)."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {HOW_TO_ENABLE}")
        pytest.skip(HOW_TO_ENABLE)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; :meth:`stop` and :meth:`start` restart it
    on the same port with the same data."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes its append-only file) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
