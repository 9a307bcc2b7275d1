"""A minimal HTTP/1.1 keep-alive server that answers every join with the canned join payload.

It runs in its own process (:func:`serve` starts it, prints nothing, and always stops it) so the
client under test has a core to itself and is the bottleneck. The server is an
``asyncio.Protocol`` on uvloop when available: it parses just enough HTTP (the header block and a
``Content-Length`` body, pipelining included) and writes one precomputed response per request,
optionally after ``delay`` seconds (``loop.call_later``) to model a slow API. The case's ``id``
in the payload is the request's ``caseId``, as Acquire's is: the SDK refuses an answer for
another case.

Run directly: ``python -m benchmarks._server --delay 0.02``; it prints ``PORT <n>`` once
listening, and exits when its parent dies or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ._common import REPO_ROOT, join_payload, optional

__all__ = ["Server", "content_length", "serve"]

MAX_HEAD = 64 * 1024
START_TIMEOUT = 20.0


def _response(status: str, body: bytes, *, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


class JoinProtocol(asyncio.Protocol):
    """One connection: split the byte stream into requests and answer each in order."""

    def __init__(self, ok: _Answer, bad: bytes, delay: float) -> None:
        self._ok = ok
        self._bad = bad
        self._delay = delay
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._answer(self._bad)
                return
            head = bytes(buffer[:end]).lower()
            if b"\r\ntransfer-encoding:" in head:
                self._answer(self._bad)  # our clients send Content-Length; keep the parser small
                return
            total = end + 4 + content_length(head)
            if len(buffer) < total:
                return  # the body is still on its way
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            close = b"\r\nconnection: close" in head
            self._answer(self._ok.render(_case_id(body), close=close), close=close)

    def _answer(self, response: bytes, *, close: bool = True) -> None:
        if self._delay > 0:
            asyncio.get_running_loop().call_later(self._delay, self._write, response, close)
        else:
            self._write(response, close)

    def _write(self, response: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        if close:
            transport.close()


class _Answer:
    """The join payload with its case ``id`` replaced by the one asked for."""

    def __init__(self, payload: bytes) -> None:
        marker = b'"id":1684,'
        at = payload.index(marker) + len(b'"id":')
        self._before, self._after = payload[:at], payload[at + len(b"1684") :]

    def render(self, case_id: bytes, *, close: bool) -> bytes:
        length = len(self._before) + len(case_id) + len(self._after)
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode("ascii")
        return b"".join((head, self._before, case_id, self._after))


def _case_id(body: bytes) -> bytes:
    """The digits of ``"caseId":N`` in a request body (``1684`` when there is none)."""
    at = body.find(b'"caseId":')
    if at < 0:
        return b"1684"
    at += len(b'"caseId":')
    while body[at : at + 1] == b" ":
        at += 1
    stop = at
    while body[stop : stop + 1].isdigit():
        stop += 1
    return body[at:stop] or b"1684"


def content_length(head: bytes) -> int:
    """The ``Content-Length`` of a lower-cased header block (0 when it has none)."""
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    return int(head[start : stop if stop >= 0 else len(head)].strip())


async def _main(host: str, delay: float, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    ok = _Answer(join_payload())
    bad = _response("400 Bad Request", b'{"error":"bad request"}', close=True)
    server = await loop.create_server(lambda: JoinProtocol(ok, bad, delay), host, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    parent = os.getppid()
    deadline = loop.time() + max_seconds
    async with server:
        # A watchdog instead of serve_forever: never outlive the benchmark that started us.
        while loop.time() < deadline and os.getppid() == parent:
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    uvloop = None if args.no_uvloop else optional("uvloop")
    coro = _main(args.host, args.delay, args.max_seconds)
    with contextlib.suppress(KeyboardInterrupt):
        if uvloop is not None:
            uvloop.run(coro)
        else:
            asyncio.run(coro)


# --------------------------------------------------------------------------- the parent side


class Server:
    """A running server process: its ``port`` and its CPU time so far."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def base_url(self) -> str:
        """The SDK's ``base_url`` for this server."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the server used so far (Linux only, else ``None``)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve(delay: float = 0.0) -> Iterator[Server]:
    """Start the server in a subprocess, yield it once it listens, always stop it after."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server", "--delay", repr(delay)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        yield Server(process, _read_port(process))
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _read_port(process: subprocess.Popen[bytes]) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line.startswith(b"PORT "):
        raise RuntimeError(f"the benchmark server did not start (exit code {process.poll()})")
    return int(line.split()[1])


if __name__ == "__main__":
    main()
