"""The ``acquire-async`` command, end to end: subprocesses against ``acquire-async serve``.

Every join runs as ``python -m acquire_async join …`` against the emulator, itself started as
``python -m acquire_async serve`` on a free port; nothing is imported into the process under
test. Each test takes its own block of case ids from the shared server (``Server.take``), so
the tests do not depend on each other's joins. Every wait is bounded.

A few pure helpers of ``acquire_async.cli`` (``parse_ids``, ``load_resume``,
``summary_lines``) are unit-tested at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest
from aiohttp import web
from faultserver import Action, FaultServer, error_body, ok, status

from acquire_async._stats import ClientStats
from acquire_async._version import __version__
from acquire_async.cli import Tally, load_resume, parse_ids, summary_lines
from acquire_async.testing import DEFAULT_API_KEY

CLI = [sys.executable, "-m", "acquire_async"]
ANNOUNCE = re.compile(r"Fake Acquire .*API on (\S+)$")  # the first line of serve's banner
READY = "Press Ctrl-C to stop."  # the last line of serve's banner
FIRST_CASE = 1000  # serve's first case id
CASES = 400  # cases on the shared server: ids 1000-1399
UNKNOWN_ID = 999_999  # not in any server's store
LATENCY = 0.25  # seconds the slow server waits before each answer
STARTUP_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0
OUTCOME_KEYS = {"case_id", "ok", "already_joined", "status", "attempts", "error"}

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


# --------------------------------------------------------------------------- helpers


def cli_env(key: str | None = DEFAULT_API_KEY) -> dict[str, str]:
    """``os.environ`` with the API key set (or removed) and nothing that changes the output."""
    env = dict(os.environ)
    for name in ("ACQUIRE_API_KEY", "ACQUIRE_ACCOUNT_ID", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    if key is not None:
        env["ACQUIRE_API_KEY"] = key
    return env


def run_cli(
    *args: object,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    secrets: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the command to its end; check that no API key (the env's, ``secrets``) leaked."""
    env = cli_env() if env is None else env
    feed: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    result = subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=RUN_TIMEOUT,
        check=False,
        **feed,
    )
    for secret in (*secrets, env.get("ACQUIRE_API_KEY", "")):
        if secret:
            assert secret not in result.stdout, "the API key was printed on stdout"
            assert secret not in result.stderr, "the API key was printed on stderr"
    return result


def outcomes(stdout: str) -> list[dict[str, Any]]:
    """The JSON Lines of a ``join`` run, each checked for the documented fields."""
    parsed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for outcome in parsed:
        assert outcome.keys() >= OUTCOME_KEYS, outcome
    return parsed


def by_id(stdout: str) -> dict[Any, dict[str, Any]]:
    lines = outcomes(stdout)
    counts = Counter(o["case_id"] for o in lines)
    assert all(n == 1 for n in counts.values()), f"an id was reported twice: {counts}"
    return {o["case_id"]: o for o in lines}


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, nothing on stdout, exactly one ``acquire-async: error:`` line, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acquire-async: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _pump(stream: IO[str], sink: Callable[[str], object]) -> None:
    with contextlib.suppress(ValueError, OSError):  # the pipe closed under us
        for line in stream:
            sink(line)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    """A CLI subprocess in the background; its stdout and stderr are collected as they come."""

    def __init__(self, *args: object, env: dict[str, str], stdin: int = subprocess.DEVNULL):
        self.proc = subprocess.Popen(
            [*CLI, *map(str, args)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, sink.append), daemon=True)
            for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for pump in self._pumps:
            pump.start()

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def finish(self, timeout: float) -> int:
        """Wait (bounded) for the exit and for the rest of the output."""
        code = self.proc.wait(timeout)
        for pump in self._pumps:
            pump.join(5)
        return code

    def close(self) -> None:
        """Whatever happened: close stdin, kill if still running, reap, close the pipes."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pump in self._pumps:
            pump.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@dataclass
class Server:
    """A running ``acquire-async serve``."""

    proc: subprocess.Popen[str]
    base_url: str
    port: int
    lines: queue.Queue[str]
    pump: threading.Thread
    output: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_CASE))
    cases: int = CASES

    def take(self, n: int) -> list[int]:
        """``n`` case ids no other test has used on this server."""
        ids = [next(self._ids) for _ in range(n)]
        assert ids[-1] < FIRST_CASE + self.cases, "the server ran out of cases"
        return ids

    def all_output(self) -> str:
        while True:
            try:
                self.output.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.output)


def _start_server(options: tuple[str, ...], key: str, cases: int) -> Server | str:
    """Start ``serve`` on a free port; the server once it announced itself, else its output."""
    port = _free_port()
    command = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--cases", str(cases)]
    proc = subprocess.Popen(
        [*command, *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=cli_env(key),
    )
    lines: queue.Queue[str] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(proc.stdout, lines.put), daemon=True)
    pump.start()
    server = Server(proc, "", port, lines, pump, cases=cases)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                if proc.poll() is not None and not pump.is_alive() and lines.empty():
                    break  # exited without announcing itself
                continue
            server.output.append(line)
            if announced := ANNOUNCE.match(line.strip()):
                server.base_url = announced[1]
            if server.base_url and line.startswith(READY):  # the whole banner is in
                return server
    except BaseException:
        _stop_server(proc, pump)
        raise
    _stop_server(proc, pump)
    return server.all_output() or f"serve exited with {proc.returncode} and printed nothing"


def _stop_server(proc: subprocess.Popen[str], pump: threading.Thread) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: serve stops cleanly
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    pump.join(5)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def serving(*options: str, key: str = DEFAULT_API_KEY, cases: int = CASES) -> Iterator[Server]:
    failure = ""
    for _ in range(3):  # the free port may be taken between our probe and serve's bind
        started = _start_server(options, key, cases)
        if isinstance(started, Server):
            break
        failure = started
    else:
        pytest.fail(f"acquire-async serve did not start:\n{failure}")
    try:
        assert started.base_url == f"http://127.0.0.1:{started.port}/api/v1"
        yield started
    finally:
        _stop_server(started.proc, started.pump)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


@pytest.fixture(scope="module")
def slow_server() -> Iterator[Server]:
    """Every answer waits ``LATENCY`` seconds: runs last long enough to interrupt them."""
    with serving("--faults", json.dumps({"latency": LATENCY}), cases=100) as running:
        yield running


def join_args(server: Server | FaultServer, *args: object) -> list[object]:
    return ["join", "--base-url", server.base_url, *args]


@contextlib.contextmanager
def fault_server(default: Action = ok, script: tuple[Action, ...] = ()) -> Iterator[FaultServer]:
    """A ``FaultServer`` (tests/faultserver.py) on its own event loop in a thread, so a test
    can count what the command under test sent."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FaultServer(script=list(script), default=default)
    try:
        asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def counting(per_case: Counter[int], delay: float = 0.0) -> Action:
    """Join as ``ok`` does after ``delay`` seconds; count each request per case on arrival."""

    async def action(request: web.Request, server: FaultServer, case_id: int) -> web.StreamResponse:
        per_case[case_id] += 1
        await asyncio.sleep(delay)
        return await ok(request, server, case_id)

    return action


def fault_ids(n: int, start: int = 5000) -> list[int]:
    return list(range(start, start + n))


@dataclass
class PtyRun:
    code: int
    terminal: str  # everything written to the terminal, decoded
    stdout: str  # stdout when it was a pipe


def run_in_pty(
    *args: object, env: dict[str, str], stdout_too: bool, columns: int = 250, timeout: float = 30
) -> PtyRun:
    """Run the command with stderr (and stdout, if ``stdout_too``) on a pseudo-terminal."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**env, "TERM": "xterm"}
    for name in ("COLUMNS", "LINES", "NO_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        with contextlib.suppress(OSError):  # EIO once the last writer closed the terminal
            while data := os.read(master, 65536):
                chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out = proc.stdout.read() if proc.stdout is not None else b""
        code = proc.wait(timeout)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(master)
    return PtyRun(code, b"".join(chunks).decode("utf-8", "replace"), out.decode())


_CONTROL = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|\x1b.|\r|\n|[^\x1b\r\n]")


def screen_rows(terminal: str, columns: int = 250) -> list[str]:
    """What a terminal shows after ``terminal`` was written to it: the cursor moves and
    erasures a progress bar uses are played, so text the bar overwrote is gone."""
    rows: list[list[str]] = [[]]
    row = col = 0
    for match in _CONTROL.finditer(terminal):
        token = match[0]
        if match[2]:
            n = int(match[1] or 1) if match[1].isdigit() else 1
            if match[2] == "A":
                row = max(row - n, 0)
            elif match[2] == "K":
                if match[1] == "2":
                    rows[row] = []
                else:
                    del rows[row][col:]
            elif match[2] == "G":
                col = n - 1
        elif token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            while len(rows) <= row:
                rows.append([])
        elif not token.startswith("\x1b"):
            if col >= columns:
                row, col = row + 1, 0
                while len(rows) <= row:
                    rows.append([])
            line = rows[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = token
            else:
                line.append(token)
            col += 1
    return ["".join(line).rstrip() for line in rows]


# --------------------------------------------------------------------------- joining


def test_all_joined_exit_0_with_one_json_line_per_id(server: Server) -> None:
    ids = server.take(3)
    result = run_cli(*join_args(server, *ids))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = outcomes(result.stdout)
    assert len(lines) == len(result.stdout.splitlines()) == 3  # nothing else on stdout
    assert sorted(o["case_id"] for o in lines) == ids
    for outcome in lines:
        assert outcome["ok"] is True
        assert outcome["already_joined"] is False
        assert outcome["status"] == "active"
        assert outcome["attempts"] == 1
        assert outcome["error"] is None
        assert outcome["message"] is None
    assert "joined 3, already joined 0, failed 0" in result.stderr


@pytest.mark.slow
def test_second_run_reports_already_joined_and_exits_0(server: Server) -> None:
    ids = server.take(2)
    assert run_cli(*join_args(server, *ids)).returncode == 0

    again = run_cli(*join_args(server, *ids))

    assert again.returncode == 0, again.stderr
    reported = by_id(again.stdout)
    assert sorted(reported) == ids
    for outcome in reported.values():
        assert outcome["ok"] is True
        assert outcome["already_joined"] is True
        assert outcome["error"] is None
    assert "joined 0, already joined 2, failed 0" in again.stderr


def test_failures_exit_1_and_the_run_goes_on(server: Server) -> None:
    first, last = server.take(2)
    result = run_cli(*join_args(server, first, UNKNOWN_ID, "abc", last))

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reported = by_id(result.stdout)
    assert set(reported) == {first, UNKNOWN_ID, "abc", last}
    assert reported[first]["ok"] and reported[last]["ok"]  # after the bad ones too
    unknown = reported[UNKNOWN_ID]
    assert unknown["ok"] is False and unknown["already_joined"] is False
    assert unknown["error"] == "NotFoundError"
    assert unknown["status"] is None and unknown["attempts"] >= 1
    bad = reported["abc"]
    assert bad["ok"] is False
    assert bad["error"] == "InvalidCaseIdError"
    assert bad["attempts"] == 0  # nothing was sent
    assert "failed 2 (InvalidCaseIdError 1, NotFoundError 1)" in result.stderr


def test_from_stdin_skips_blank_lines_and_comments(server: Server) -> None:
    a, b, commented = server.take(3)
    text = f"\n# ids to join\n{a}\n\n   \n  {b}  # trailing comment\n# {commented}\n"

    result = run_cli(*join_args(server, "--from", "-"), stdin=text)

    assert result.returncode == 0, result.stderr
    reported = by_id(result.stdout)
    assert sorted(reported) == [a, b]  # the commented-out id was not joined
    assert all(o["ok"] and not o["already_joined"] for o in reported.values())


def test_from_file(server: Server, tmp_path: Path) -> None:
    a, b, c = server.take(3)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(f"# batch\r\n{a}\r\n\r\nabc\r\n{UNKNOWN_ID}\r\n{b}\r\n{c}".encode())

    result = run_cli(*join_args(server, "--from", ids_file))

    assert result.returncode == 1, result.stderr
    reported = by_id(result.stdout)
    assert set(reported) == {a, "abc", UNKNOWN_ID, b, c}
    assert {i for i, o in reported.items() if o["ok"]} == {a, b, c}
    assert reported["abc"]["error"] == "InvalidCaseIdError"
    assert reported[UNKNOWN_ID]["error"] == "NotFoundError"


def test_output_table(server: Server) -> None:
    good = server.take(1)[0]
    result = run_cli(*join_args(server, "--output", "table", good, "abc"))

    assert result.returncode == 1, result.stderr
    out = result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])  # a table, not JSON Lines
    header = next(line for line in out.splitlines() if "case" in line)
    for column in ("case", "result", "status", "attempts", "ms", "error"):
        assert column in header
    assert re.search(rf"│ {good}\s+│ joined\s+│ active\s+│ 1\s+│", out), out
    assert re.search(r"│ abc\s+│ failed\s+│\s+│ 0\s+│.*│ InvalidCaseIdError: ", out), out
    assert "joined 1, already joined 0, failed 1" in result.stderr  # summary still on stderr


# --------------------------------------------------------------------------- usage errors


def test_ids_and_from_together_is_a_usage_error(server: Server, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1000\n")
    result = run_cli(*join_args(server, "--from", ids_file, "1001"))
    assert_usage_error(result, "--from")


def test_neither_ids_nor_from_is_a_usage_error(server: Server) -> None:
    assert_usage_error(run_cli(*join_args(server)), "--from")


@pytest.mark.parametrize("key", [None, ""], ids=["unset", "empty"])
def test_missing_api_key_is_a_usage_error(server: Server, key: str | None) -> None:
    env = cli_env(None)
    if key is not None:
        env["ACQUIRE_API_KEY"] = key
    result = run_cli(*join_args(server, server.take(1)[0]), env=env)
    assert_usage_error(result, "ACQUIRE_API_KEY", "--api-key-file")


def test_empty_api_key_file_is_a_usage_error(server: Server, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    result = run_cli(*join_args(server, "--api-key-file", key_file, 1000), env=cli_env(None))
    assert_usage_error(result, "empty")


@pytest.mark.slow
def test_api_key_file_is_read_and_wins_over_the_environment(server: Server, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(DEFAULT_API_KEY + "\n")
    a, b = server.take(2)

    only_file = run_cli(*join_args(server, "--api-key-file", key_file, a), env=cli_env(None))
    over_env = run_cli(
        *join_args(server, "--api-key-file", key_file, b), env=cli_env("a-wrong-key-in-env")
    )

    for result, case_id in ((only_file, a), (over_env, b)):
        assert result.returncode == 0, result.stderr
        assert by_id(result.stdout)[case_id]["ok"] is True


@pytest.mark.slow
def test_wrong_key_stops_the_run_after_one_request(server: Server, tmp_path: Path) -> None:
    ids = server.take(2)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{i}\n" for i in [*ids, *range(10_000, 12_000)]))

    result = run_cli(*join_args(server, "--from", ids_file), env=cli_env("not-the-emulator-key"))

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert [o["error"] for o in outcomes(result.stdout)] == ["AuthenticationError"]
    assert "requests 1, " in result.stderr  # not 2,002: the first id went out alone
    last = result.stderr.splitlines()[-1]
    assert last == (
        "acquire-async: error: the API key was refused (HTTP 401): "
        "check ACQUIRE_API_KEY or --api-key-file"
    )
    # The emulator applied nothing: with the right key they are joined now, not before.
    right = run_cli(*join_args(server, *ids))
    assert [o["already_joined"] for o in outcomes(right.stdout)] == [False, False]


@pytest.mark.parametrize("account", ["evil.com/", "user@evil.com", "evil.com#"])
def test_hostile_account_is_a_usage_error(account: str) -> None:
    result = run_cli("join", "--account", account, "1000")
    assert_usage_error(result, "--account must be one DNS label")


def test_hostile_account_from_the_environment_is_a_usage_error() -> None:
    env = cli_env()
    env["ACQUIRE_ACCOUNT_ID"] = "evil.com/"
    assert_usage_error(run_cli("join", "1000", env=env), "--account")


@pytest.mark.slow
def test_serve_usage_errors_are_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = run_cli("serve", "--port", port, "--cases", 1)
    assert_usage_error(taken, f"cannot listen on 127.0.0.1:{port}")
    assert_usage_error(run_cli("serve", "--faults", "{not json"), "--faults")


@pytest.mark.slow
def test_the_api_key_is_never_printed(tmp_path: Path) -> None:
    canary = "canary-7f3c9e1d-DO-NOT-PRINT-4b8a"
    env = cli_env(canary)
    with serving(key=canary, cases=5) as private:
        assert "the key in ACQUIRE_API_KEY (not shown)" in private.all_output()
        key_file = tmp_path / "key"
        key_file.write_text(canary)
        runs = [
            run_cli(*join_args(private, 1000, 1001), env=env),
            run_cli(*join_args(private, 1000, UNKNOWN_ID, "abc"), env=env),
            run_cli(*join_args(private, "--output", "table", 1002, "abc"), env=env),
            run_cli(
                *join_args(private, "--api-key-file", key_file, 1003),
                env=cli_env(None),
                secrets=(canary,),
            ),
            run_cli("join", "--account", "evil.com/", "1004", env=env),
        ]
        bad_key_env = cli_env(canary + " ")  # rejected: the error must not quote it
        runs.append(run_cli(*join_args(private, 1004), env=bad_key_env))
        serve_output = private.all_output()

    assert [r.returncode for r in runs] == [0, 1, 1, 0, 2, 2]
    for result in runs:
        assert canary not in result.stdout
        assert canary not in result.stderr
    assert canary not in serve_output


# --------------------------------------------------------------------------- --resume


@pytest.mark.slow
def test_resume_skips_recorded_ids_and_repeats_nothing(server: Server, tmp_path: Path) -> None:
    first = server.take(3)
    more = server.take(2)
    record = tmp_path / "done.txt"

    run1 = run_cli(*join_args(server, "--resume", record, *first, UNKNOWN_ID))
    assert run1.returncode == 1, run1.stderr
    assert sorted(int(i) for i in record.read_text().split()) == first  # failures not recorded

    run2 = run_cli(*join_args(server, "--resume", record, *first, *more, UNKNOWN_ID))

    assert run2.returncode == 1, run2.stderr
    reported = by_id(run2.stdout)
    assert set(reported) == {*more, UNKNOWN_ID}  # recorded ids: no line, no request
    assert all(not reported[i]["already_joined"] and reported[i]["ok"] for i in more)
    assert "skipped 3 ids already recorded as done (--resume)" in run2.stderr
    recorded = [int(i) for i in record.read_text().split()]
    assert sorted(recorded) == sorted(first + more)  # each once

    run3 = run_cli(*join_args(server, "--resume", record, *first, *more))
    assert run3.returncode == 0, run3.stderr
    assert run3.stdout == ""
    assert "skipped 5" in run3.stderr


def test_resume_file_without_a_final_newline(server: Server, tmp_path: Path) -> None:
    a, b = server.take(2)
    record = tmp_path / "done.txt"
    record.write_text(str(a))  # written by hand, no final newline

    result = run_cli(*join_args(server, "--resume", record, a, b))

    assert result.returncode == 0, result.stderr
    assert "skipped 1" in result.stderr
    assert load_resume(record) == {a, b}


def test_resume_in_a_missing_directory_is_a_usage_error(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "no-such-dir" / "done.txt"
    result = run_cli(*join_args(server, "--resume", record, server.take(1)[0]))
    assert_usage_error(result, "done.txt")


def test_a_unicode_digit_is_an_invalid_id_not_a_crash(server: Server) -> None:
    good = server.take(1)[0]
    result = run_cli(*join_args(server, good, "²"))

    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    reported = by_id(result.stdout)
    assert reported["²"]["error"] == "InvalidCaseIdError"
    assert reported[good]["ok"] is True


def test_api_key_file_not_utf8_is_a_usage_error(server: Server, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfekey")
    result = run_cli(*join_args(server, "--api-key-file", key_file, 1000), env=cli_env(None))
    assert_usage_error(result)


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
@posix_only
def test_ctrl_c_exits_130_and_resume_holds_exactly_the_reported_ids(
    slow_server: Server, tmp_path: Path
) -> None:
    ids = slow_server.take(20)
    record = tmp_path / "done.txt"
    run = Running(
        *join_args(slow_server, "--concurrency", 2, "--resume", record, *ids), env=cli_env()
    )
    try:
        assert wait_until(lambda: len(load_resume(record)) >= 2, 15), run.stderr
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(10)
    finally:
        run.close()

    assert code == 130, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    lines = outcomes(run.stdout)
    assert 2 <= len(lines) < len(ids)  # stopped early
    assert f"interrupted: {len(lines)} ids finished and were reported" in run.stderr
    recorded = [int(i) for i in record.read_text().split()]
    assert len(recorded) == len(set(recorded))
    assert sorted(recorded) == sorted(o["case_id"] for o in lines if o["ok"])

    # The rerun skips exactly those and does the rest: nothing repeated, nothing lost.
    rerun = run_cli(*join_args(slow_server, "--concurrency", 32, "--resume", record, *ids))
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(recorded)} " in rerun.stderr
    rest = by_id(rerun.stdout)
    assert set(rest).isdisjoint(recorded)
    assert sorted([*rest, *recorded]) == ids


@posix_only
def test_ctrl_c_while_stdin_stays_open(server: Server, tmp_path: Path) -> None:
    ids = server.take(2)
    record = tmp_path / "done.txt"
    run = Running(
        *join_args(server, "--from", "-", "--resume", record, "--grace", 30),
        env=cli_env(),
        stdin=subprocess.PIPE,
    )
    try:
        assert run.proc.stdin is not None
        run.proc.stdin.write("".join(f"{i}\n" for i in ids))
        run.proc.stdin.flush()  # ... and kept open: the command waits for more ids
        assert wait_until(lambda: load_resume(record) == set(ids), 3), "ids read, not joined"
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(5)  # stdin still open: the stop did not wait for another line
    finally:
        run.close()

    assert code == 130
    assert "Traceback" not in run.stderr
    assert "none was left in flight" in run.stderr
    assert sorted(o["case_id"] for o in outcomes(run.stdout) if o["ok"]) == ids
    assert load_resume(record) == set(ids)


@pytest.mark.slow
@posix_only
def test_outcome_lines_are_streamed_as_they_finish(slow_server: Server, tmp_path: Path) -> None:
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)
    record = tmp_path / "done.txt"
    ids = slow_server.take(6)
    run = Running(*join_args(slow_server, "--concurrency", 1, "--resume", record, *ids), env=env)
    try:
        assert wait_until(lambda: load_resume(record), 15), run.stderr
        recorded = load_resume(record)
        # Each line is written before its id is recorded, so it should already be readable.
        assert wait_until(lambda: {o["case_id"] for o in outcomes(run.stdout)} >= recorded, 1)
    finally:
        run.close()


@pytest.mark.slow
@posix_only
def test_ctrl_c_with_table_output_prints_the_finished_rows(
    slow_server: Server, tmp_path: Path
) -> None:
    ids = slow_server.take(10)
    record = tmp_path / "done.txt"
    run = Running(
        *join_args(slow_server, "--output", "table", "--concurrency", 2, "--resume", record, *ids),
        env=cli_env(),
    )
    try:
        assert wait_until(lambda: len(load_resume(record)) >= 2, 15), run.stderr
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(10)
    finally:
        run.close()

    assert code == 130
    assert "interrupted" in run.stderr
    recorded = load_resume(record)
    for case_id in recorded:
        assert re.search(rf"│ {case_id}\s+│ joined", run.stdout), run.stdout


# --------------------------------------------------------------------------- version, demo


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"acquire-async, version {__version__}\n"


@pytest.mark.slow
def test_demo_joins_every_case_and_prints_the_summary() -> None:
    result = run_cli("demo", "--cases", 200)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = result.stderr  # like join's, the summary goes to stderr
    match = re.search(r"joined (\d+), already joined (\d+), failed 0\b", summary)
    assert match, summary
    assert int(match[1]) + int(match[2]) == 200
    assert "200 outcomes in" in summary
    assert "joins/s" in summary
    assert re.search(r"p99 \d+\.\dms", summary), summary


# --------------------------------------------------------------------------- pure helpers


def test_parse_ids() -> None:
    lines = ["1000", "", "   ", "# a comment", " 1001 # why", "abc", "12x", "-5", "\t1002\r\n"]
    assert list(parse_ids(lines)) == [1000, 1001, "abc", "12x", -5, 1002]


def test_parse_ids_is_lazy() -> None:
    def source() -> Iterator[str]:
        yield "1000"
        raise AssertionError("read past the first id")

    assert next(parse_ids(source())) == 1000


def test_load_resume(tmp_path: Path) -> None:
    assert load_resume(tmp_path / "missing.txt") == set()
    record = tmp_path / "done.txt"
    record.write_text("1000\n# note\n\nabc\n1001  # later\n1000\n")
    assert load_resume(record) == {1000, 1001}


def test_summary_lines() -> None:
    stats = ClientStats()
    stats.requests, stats.retries, stats.rate_limited = 9, 2, 1
    stats.latencies.extend([0.010, 0.020, 0.030])
    client: Any = SimpleNamespace(stats=stats)
    tally = Tally(joined=3, already_joined=1, failed=Counter({"NotFoundError": 2}))
    tally.started = time.monotonic() - 2.0

    lines = summary_lines(tally, client)

    assert lines[0] == "joined 3, already joined 1, failed 2 (NotFoundError 2)"
    assert lines[1] == "requests 9, retries 2, 429s 1"
    assert lines[2].startswith("6 outcomes in 2.")
    assert "latency p50 20.0ms, p95 30.0ms, p99 30.0ms" in lines[2]
    assert "joins/s" in lines[2]
    assert len(lines) == 3  # no skipped, no interrupted line

    tally.skipped, tally.interrupted = 4, True
    more = summary_lines(tally, client)
    assert more[3] == "skipped 4 ids already recorded as done (--resume)"
    assert more[4].startswith("interrupted: 6 ids finished and were reported")


def test_summary_lines_without_latencies() -> None:
    client: Any = SimpleNamespace(stats=ClientStats())
    lines = summary_lines(Tally(), client)
    assert lines[0] == "joined 0, already joined 0, failed 0"
    assert "latency p50 -, p95 -, p99 -" in lines[2]


def test_parse_ids_takes_ascii_integers_only() -> None:
    from acquire_async.cli import parse_ids

    assert list(parse_ids(["12", "-3", "1_000", "+5", "\u0661\u0662", "4 # note"])) == [
        12,
        -3,
        "1_000",
        "+5",
        "\u0661\u0662",
        4,
    ]


# --------------------------------------------------------------------------- Ctrl-C, gracefully


@pytest.mark.slow
@posix_only
def test_ctrl_c_finishes_the_joins_in_flight_and_a_rerun_repeats_none(tmp_path: Path) -> None:
    per_case: Counter[int] = Counter()
    ids = fault_ids(16)
    record = tmp_path / "done.txt"
    with fault_server(counting(per_case, delay=0.4)) as api:
        args = join_args(api, "--concurrency", 4, "--resume", record, *ids)
        run = Running(*args, env=cli_env())
        try:
            # The first id goes alone, then 4 at a time: interrupt with 4 in flight.
            assert wait_until(lambda: sum(per_case.values()) >= 5, 15), run.stderr
            run.proc.send_signal(signal.SIGINT)
            code = run.finish(10)
        finally:
            run.close()

        assert code == 130, run.stderr
        assert "Traceback" not in run.stderr
        assert "interrupted: finishing the 4 joins in flight" in run.stderr
        lines = outcomes(run.stdout)
        assert all(o["ok"] for o in lines)
        assert sorted(o["case_id"] for o in lines) == sorted(per_case)  # each sent was reported
        assert load_resume(record) == set(per_case)  # ... and recorded
        summary = run.stderr.splitlines()[-1]
        assert summary.startswith(f"interrupted: {len(lines)} ids finished and were reported")
        assert "none was left in flight" in summary
        assert summary.endswith("(rerun with --resume to continue)")

        rerun = run_cli(*join_args(api, "--concurrency", 16, "--resume", record, *ids))

    assert rerun.returncode == 0, rerun.stderr
    assert sorted(per_case) == ids
    assert set(per_case.values()) == {1}, per_case  # no case was sent twice


@posix_only
def test_a_second_ctrl_c_cancels_the_joins_in_flight_at_once() -> None:
    per_case: Counter[int] = Counter()
    with fault_server(counting(per_case, delay=30)) as api:
        args = join_args(api, "--concurrency", 3, "--grace", 30, *fault_ids(6))
        run = Running(*args, env=cli_env())
        try:
            assert wait_until(lambda: sum(per_case.values()) >= 1, 15), run.stderr
            # The first id is in flight alone (the others wait up to 1 s for its answer).
            run.proc.send_signal(signal.SIGINT)
            assert wait_until(lambda: "interrupted: finishing" in run.stderr, 5), run.stderr
            run.proc.send_signal(signal.SIGINT)
            code = run.finish(5)  # not the 30 s the join (or the grace period) would take
        finally:
            run.close()

    assert code == 130, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    summary = run.stderr.splitlines()[-1]
    assert summary.startswith("interrupted: 0 ids finished and were reported; 1 in flight")
    assert "rerun with --resume" not in summary  # --resume is not in use


@pytest.mark.slow
@posix_only
def test_the_grace_period_ends_with_the_joins_in_flight_cancelled() -> None:
    per_case: Counter[int] = Counter()
    with fault_server(counting(per_case, delay=30)) as api:
        run = Running(*join_args(api, "--grace", 0.5, *fault_ids(3)), env=cli_env())
        try:
            assert wait_until(lambda: sum(per_case.values()) >= 1, 15), run.stderr
            started = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)
            code = run.finish(10)
            waited = time.monotonic() - started
        finally:
            run.close()

    assert code == 130, run.stderr
    assert 0.4 <= waited < 8  # the grace period, not the join's 30 s
    assert "1 in flight were cancelled" in run.stderr


# --------------------------------------------------------------------------- account-wide errors


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            status(401, body=error_body("ERROR_UNAUTHORIZED", "Unauthorized")),
            "the API key was refused (HTTP 401): check ACQUIRE_API_KEY or --api-key-file",
        ),
        (
            status(403, body=error_body("ERROR_UNAUTHORIZED_ACCESS", "Forbidden")),
            "the API key is not allowed to join chats (HTTP 403): check the key's permissions",
        ),
    ],
    ids=["401", "403"],
)
def test_a_refused_key_ends_the_run_after_one_request(answer: Action, message: str) -> None:
    with fault_server(answer) as api:
        result = run_cli(*join_args(api, *fault_ids(300)))
        requests = api.requests

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert requests == 1
    assert len(outcomes(result.stdout)) == 1
    assert result.stderr.splitlines()[-1] == f"acquire-async: error: {message}"


def test_a_key_revoked_mid_run_stops_the_feed(tmp_path: Path) -> None:
    refused = status(401, body=error_body("ERROR_UNAUTHORIZED", "Unauthorized"))
    with fault_server(refused, script=(ok,) * 10) as api:
        result = run_cli(
            *join_args(api, "--concurrency", 4, "--resume", tmp_path / "r", *fault_ids(500))
        )
        requests = api.requests

    assert result.returncode == 2, result.stderr
    assert requests < 10 + 2 * 4  # the joins in flight when the first 401 came, no more
    joined = [o for o in outcomes(result.stdout) if o["ok"]]
    assert len(joined) == 10
    assert load_resume(tmp_path / "r") == {o["case_id"] for o in joined}


def test_a_wrong_base_url_ends_the_run_with_one_line(server: Server) -> None:
    wrong = server.base_url.replace("/api/v1", "/v2/api")
    result = run_cli("join", "--base-url", wrong, *server.take(3), *range(20_000, 20_200))

    assert result.returncode == 2, result.stderr
    assert "requests 1, " in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"acquire-async: error: nothing answers the Acquire API at {wrong} (HTTP 404): "
        "check --base-url / --account"
    )


def test_a_404_without_an_acquire_envelope_ends_the_run() -> None:
    with fault_server() as api:
        wrong = api.base_url + "/nested"  # aiohttp's own plain-text 404
        result = run_cli("join", "--base-url", wrong, *fault_ids(50))
        requests = api.requests

    assert result.returncode == 2, result.stderr
    assert requests == 0  # the fault server counts only its join path
    assert "nothing answers the Acquire API at" in result.stderr.splitlines()[-1]
    assert len(outcomes(result.stdout)) == 1


# --------------------------------------------------------------------------- echoed keys


@pytest.mark.slow
@pytest.mark.parametrize("code", [401, 400])
def test_a_key_the_server_echoes_is_never_printed(code: int) -> None:
    canary = "canary-echo-5d1e0c2b-DO-NOT-PRINT"
    body = error_body(
        "ERROR_UNAUTHORIZED" if code == 401 else "ERROR_INVALID_INPUT",
        f"Invalid API key: {canary} (Bearer {canary})",
    )
    with fault_server(status(code, body=body)) as api:
        results = [
            run_cli(*join_args(api, *fault_ids(3)), env=cli_env(canary)),
            run_cli(*join_args(api, "--output", "table", *fault_ids(3)), env=cli_env(canary)),
        ]
    # run_cli checked stdout and stderr for the key; the error itself was reported.
    for result in results:
        assert result.returncode == (2 if code == 401 else 1), result.stderr
        assert ("AuthenticationError" if code == 401 else "BadRequestError") in result.stdout


# --------------------------------------------------------------------------- input bytes


def _mixed_bytes(a: int, b: int, c: int) -> bytes:
    return (
        b"\xef\xbb\xbf"  # a UTF-8 BOM: dropped
        + f"{a}\r\n".encode()
        + b"10\xff01\n"  # not UTF-8: an invalid id, shown with U+FFFD
        + b"\xff\xfe\x00\n"
        + f"{b}  # caf\xe9\n".encode("latin-1")  # a Latin-1 comment: only the comment is odd
        + b"# caf\xe9 ol\xe9\n"
        + b"9" * 10_000  # an over-long line: cut, invalid
        + f"\n{c}".encode()  # the last line without a newline
    )


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_input_bytes_that_are_not_utf8_make_invalid_ids_and_nothing_is_lost(
    server: Server, tmp_path: Path, via: str
) -> None:
    a, b, c = server.take(3)
    data = _mixed_bytes(a, b, c)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(data)
    if via == "file":
        result = run_cli(*join_args(server, "--from", ids_file))
    else:
        with ids_file.open("rb") as feed:
            result = subprocess.run(
                [*CLI, *map(str, join_args(server, "--from", "-"))],
                stdin=feed,
                capture_output=True,
                text=True,
                encoding="utf-8",
                env=cli_env(),
                timeout=RUN_TIMEOUT,
                check=False,
            )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reported = by_id(result.stdout)
    assert {i for i, o in reported.items() if o["ok"]} == {a, b, c}
    invalid = {i: o for i, o in reported.items() if not o["ok"]}
    assert set(invalid) == {"10\ufffd01", "\ufffd\ufffd\x00", "9" * 64 + "\u2026"}
    assert all(o["error"] == "InvalidCaseIdError" for o in invalid.values())
    assert "failed 3 (InvalidCaseIdError 3)" in result.stderr


def test_a_non_utf8_argument_is_an_invalid_id(server: Server) -> None:
    good = server.take(1)[0]
    result = subprocess.run(
        [*CLI, *map(str, join_args(server, good)), os.fsdecode(b"7\xff")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(),
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    reported = by_id(result.stdout)
    assert reported["7\ufffd"]["error"] == "InvalidCaseIdError"
    assert reported[good]["ok"] is True


# --------------------------------------------------------------------------- table output


def test_table_shows_server_and_input_text_literally(tmp_path: Path) -> None:
    hostile = "[/] [bold]b[/bold] \x1b[2J\x1b[31mred\x07 \u202eevil"
    body = error_body("ERROR_INVALID_INPUT", hostile)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"[/]\n[bold]x[/bold]\n\x1b[31mred\n5000\n")
    with fault_server(status(400, body=body)) as api:
        env = {**cli_env(), "COLUMNS": "400"}
        result = run_cli(*join_args(api, "--output", "table", "--from", ids_file), env=env)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", out), repr(out)
    assert re.search(r"│ \[/\]\s+│ failed", out), out
    assert re.search(r"│ \[bold\]x\[/bold\]\s+│ failed", out), out
    assert re.search(r"│ \\x1b\[31mred\s+│ failed", out), out
    assert "[/] [bold]b[/bold] \\x1b[2J\\x1b[31mred\\x07 \\u202eevil" in out


def test_table_width_follows_the_terminal(server: Server) -> None:
    env = {**cli_env(), "COLUMNS": "72"}
    result = run_cli(
        *join_args(server, "--output", "table", server.take(1)[0], UNKNOWN_ID), env=env
    )
    assert result.returncode == 1, result.stderr
    assert "NotFoundError" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 72


@posix_only
def test_table_width_on_a_terminal(server: Server) -> None:
    run = run_in_pty(
        *join_args(server, "--output", "table", server.take(1)[0], UNKNOWN_ID),
        env=cli_env(),
        stdout_too=True,
        columns=90,
    )
    assert run.code == 1, run.terminal
    plain = re.sub(r"\x1b\[[?0-9;]*[A-Za-z]", "", run.terminal)  # colours, cursor moves
    rows = [row for row in re.split(r"[\r\n]+", plain) if "│" in row]
    assert rows and max(len(row) for row in rows) <= 90


# --------------------------------------------------------------------------- progress


@pytest.mark.slow
@posix_only
def test_progress_of_a_file_shows_the_total_the_eta_and_the_skipped(
    slow_server: Server, tmp_path: Path
) -> None:
    ids = slow_server.take(8)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# to join\n" + "".join(f"{i}\n\n" for i in ids))
    record = tmp_path / "done.txt"
    record.write_text(f"{ids[0]}\n{ids[1]}\n")

    run = run_in_pty(
        *join_args(slow_server, "--from", ids_file, "--resume", record, "--concurrency", 2),
        env=cli_env(),
        stdout_too=False,
    )

    assert run.code == 0, run.terminal
    assert re.search(r"\b[2-7]/8 · 2 skipped · \d+/s · ETA \d+:\d\d", run.terminal), run.terminal
    assert "\x1b" not in run.stdout  # the bar stayed on the terminal
    assert sorted(o["case_id"] for o in outcomes(run.stdout)) == ids[2:]
    assert "skipped 2 ids already recorded as done (--resume)" in run.terminal


@pytest.mark.slow
@posix_only
def test_progress_and_lines_on_the_same_terminal_do_not_mix(slow_server: Server) -> None:
    ids = slow_server.take(6)
    run = run_in_pty(
        *join_args(slow_server, "--concurrency", 1, *ids), env=cli_env(), stdout_too=True
    )

    assert run.code == 0, run.terminal
    assert "joining" in run.terminal  # the bar was drawn
    rows = screen_rows(run.terminal)
    shown = [row for row in rows if "case_id" in row]
    assert [json.loads(row)["case_id"] for row in shown] == ids, rows
    assert not any("joining" in row for row in rows), rows  # and is gone


# --------------------------------------------------------------------------- small ones


@pytest.mark.parametrize(
    ("args", "env_key", "needles"),
    [
        (["--base-url", "ftp://example.com/api/v1"], None, ["--base-url must be an http(s) URL"]),
        (["--base-url", "http://example.com/api/v1?x=1"], None, ["--base-url must not have"]),
        (["--base-url", "http://user:pw@example.com/"], None, ["--base-url", "--api-key-file"]),
        ([], None, ["--account", "ACQUIRE_ACCOUNT_ID", "--base-url"]),
        (["--account", "a.b"], None, ["--account must be one DNS label"]),
        (
            ["--account", "acme"],
            " " + DEFAULT_API_KEY,
            ["the API key in ACQUIRE_API_KEY has leading or trailing whitespace"],
        ),
    ],
    ids=["scheme", "query", "credentials", "no-account", "bad-account", "key-spaces"],
)
def test_messages_name_the_flags(args: list[str], env_key: str | None, needles: list[str]) -> None:
    result = run_cli("join", *args, 1000, env=cli_env(env_key or DEFAULT_API_KEY))
    assert_usage_error(result, *needles)
    for python_name in ("base_url", "account_id", "api_key", "max_connections"):
        assert python_name not in result.stderr


def test_a_timeout_that_is_not_a_number_is_a_usage_error() -> None:
    result = run_cli("join", "--base-url", "http://127.0.0.1:9/api/v1", "--timeout", "nan", 1000)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--timeout" in result.stderr


def test_serve_with_a_bad_faults_spec_is_one_line() -> None:
    # Faults() took this seed, then the emulator's random.Random() refused it: a traceback.
    assert_usage_error(run_cli("serve", "--port", 0, "--faults", '{"seed": [1]}'), "--faults")


@pytest.mark.parametrize(
    "spec",
    [
        '{"seed": [1]}',
        '{"seed": "x"}',
        '{"seed": 1.5}',
        '{"latency": [1]}',
        '{"latency": "x"}',
        '{"error_rates": {"1e3": 0.1}}',
        '{"error_rates": [1]}',
        '{"sequence": 5}',
        '{"nope": 1}',
        '{"drop_after_read": 2}',
        "[1]",
        "{",
    ],
)
def test_every_bad_faults_spec_is_a_one_line_error(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from acquire_async.cli._emulator import faults_option

    with pytest.raises(SystemExit) as exit_:
        faults_option(spec, 0)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("acquire-async: error: --faults")


def test_serve_prints_the_key_and_a_join_command_to_paste(server: Server) -> None:
    banner = server.all_output()
    assert f"api key: {DEFAULT_API_KEY} (the emulator's test key, not a secret)" in banner
    command = next(line.strip() for line in banner.splitlines() if "acquire-async join" in line)
    assert command == (
        f"ACQUIRE_API_KEY={DEFAULT_API_KEY} acquire-async join "
        f"--base-url {server.base_url} 1000 1001 1002"
    )
    # Pasted (with this interpreter for acquire-async, no key of ours in the env, and an id
    # that no other test joins):
    words = shlex.split(command)
    env = cli_env(None)
    env.update(w.split("=", 1) for w in words[:1])
    result = run_cli(*words[2:-3], UNKNOWN_ID, env=env)
    assert result.returncode == 1, result.stderr
    assert by_id(result.stdout)[UNKNOWN_ID]["error"] == "NotFoundError"  # the key was taken


def test_serve_does_not_print_a_key_from_the_environment() -> None:
    with serving(key="my-own-serve-key-123", cases=3) as private:
        banner = private.all_output()
    assert "my-own-serve-key-123" not in banner
    assert "api key: the key in ACQUIRE_API_KEY (not shown)" in banner
    assert f"  acquire-async join --base-url {private.base_url} 1000 1001 1002" in banner


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("output", ["jsonl", "table"])
def test_a_closed_pipe_ends_the_run_quietly(output: str) -> None:
    # 300 failures with a long message: far more output than a pipe buffers.
    wordy = status(400, body=error_body("ERROR_INVALID_INPUT", "no " * 400))
    with fault_server(wordy) as api:
        proc = subprocess.Popen(
            [*CLI, *map(str, join_args(api, "--output", output, *fault_ids(300)))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**cli_env(), "COLUMNS": "200"},
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.readline()
            proc.stdout.close()  # like `| head -1`
            code = proc.wait(RUN_TIMEOUT)
            stderr = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()

    assert code == 141, stderr
    assert stderr == ""  # no traceback, no "Exception ignored", no summary


def test_decode_lines_keeps_memory_bounded_on_a_line_without_end() -> None:
    import tracemalloc

    from acquire_async.cli._input import MAX_LINE, decode_lines

    read, write = os.pipe()

    def produce() -> None:
        with os.fdopen(write, "wb") as sink:
            for _ in range(320):  # 20 MiB of digits without a newline, then two lines
                sink.write(b"9" * 65_536)
            sink.write(b"\n5\n")

    producer = threading.Thread(target=produce)
    producer.start()
    tracemalloc.start()
    try:
        lines = list(decode_lines(read))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        producer.join(10)
        os.close(read)

    assert lines == ["9" * 64 + "\u2026", "5"]
    assert peak < 8 * MAX_LINE + 4 * 65_536  # a few reads' worth, not 20 MiB
