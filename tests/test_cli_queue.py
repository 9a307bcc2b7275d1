"""``acquire-async enqueue``, ``worker``, ``results``, ``queue`` and ``dead`` on a real
``redis-server``.

Every command runs as a subprocess (``python -m acquire_async …``) awaited on the test's event
loop, so the test can read and change the queue meanwhile with ``JoinQueue``, and serve the
emulator to the worker processes. The Redis has a password (``requirepass``) and every URL
carries it: :func:`run` checks that it never appears on stdout or stderr. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click
import msgspec
import pytest
from click.testing import CliRunner
from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redisserver import RedisServer, free_port

from acquire_async.cli import main
from acquire_async.cli._queue import redis_problem, redis_where, worker
from acquire_async.testing import FakeAcquire
from acquire_async.worker import JoinQueue, Result, WorkerSettings
from acquire_async.worker._store import Status

CLI = [sys.executable, "-m", "acquire_async"]
PASSWORD = "pw-Hunter2-s3cret"
RUN_TIMEOUT = 30.0
HINT = "pip install 'acquire-async[cli,redis]'"

T = TypeVar("T")

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


# --------------------------------------------------------------------------- helpers


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[Any]:
        """The JSON lines on stdout (nothing else may be there)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def cli_env(url: str | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("ACQUIRE_") or name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
            del env[name]
    env["PYTHONIOENCODING"] = "utf-8"
    if url is not None:
        env["ACQUIRE_REDIS_URL"] = url
    env.update(extra)
    return env


def check_clean(text: str, *secrets: str) -> None:
    for secret in (PASSWORD, *secrets):
        assert secret not in text, f"a secret was printed: {text!r}"
    assert "Traceback" not in text, text


async def run(
    *args: object,
    url: str | None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Run the command to its end; the password (and ``secrets``) never in its output."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(url) if env is None else env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = Run(proc.returncode or 0, out.decode(), err.decode())
    check_clean(result.stdout + result.stderr, *secrets)
    return result


def assert_one_error(result: Run, *needles: str) -> None:
    """Exit 2, nothing on stdout, one line ``acquire-async: error: …``, no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acquire-async: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], result.stderr


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The test Redis, with a password: ``redis://:PASSWORD@127.0.0.1:PORT/0``."""
    with SyncRedis.from_url(redis_server.url) as admin:
        admin.config_set("requirepass", PASSWORD)
    return f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"


def invoke(*args: object, url: str | None, secrets: tuple[str, ...] = (), **env: str) -> Run:
    """Run the command in this process (click's runner): quicker than a subprocess."""
    environ: dict[str, str | None] = {"ACQUIRE_REDIS_URL": url, "ACQUIRE_API_KEY": None}
    result = CliRunner().invoke(main, [str(a) for a in args], env={**environ, **env})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    ran = Run(result.exit_code, result.stdout, result.stderr)
    check_clean(ran.stdout + ran.stderr, *secrets)
    return ran


def on_queue(url: str, work: Callable[[JoinQueue], Awaitable[T]]) -> T:
    """``work(queue)`` on a queue of its own, on an event loop of its own."""

    async def main() -> T:
        async with JoinQueue(url) as join_queue:
            return await work(join_queue)

    return asyncio.run(main())


def statuses(url: str) -> dict[Any, str]:
    async def read(join_queue: JoinQueue) -> dict[Any, str]:
        return {r.case_id: r.status async for r in join_queue.results()}

    return on_queue(url, read)


def put(url: str, *ids: Any) -> None:
    on_queue(url, lambda q: q.enqueue(ids))


async def until(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float
) -> bool:
    """Poll ``read()`` until ``done`` of its value, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(await read()):
            return True
        await asyncio.sleep(0.02)
    return False


def record(url: str, *results: Result) -> None:
    """What a worker would record (the queue's own transition)."""
    entries = [(str(r.case_id), r.status, msgspec.json.encode(r)) for r in results]
    on_queue(url, lambda q: q.record(entries))


# --------------------------------------------------------------------------- enqueue


def test_enqueue_from_a_file_records_invalid_lines_dead(url: str, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# waiting\n1000\n\n1001  # vip\n12x\n-5\n1002\n")
    result = invoke("enqueue", "--from", ids, url=url)
    assert result.returncode == 0, result
    assert result.lines() == [{"enqueued": 5}]
    assert "2 invalid ids were recorded dead" in result.stderr
    assert statuses(url) == {
        1000: "queued",
        1001: "queued",
        1002: "queued",
        "12x": "dead",
        -5: "dead",
    }


@pytest.mark.slow
async def test_enqueue_from_stdin_reads_bytes_line_by_line(url: str) -> None:
    result = await run(
        "enqueue", "--from", "-", url=url, stdin=b"\xef\xbb\xbf2000\n20\xff01\r\n2001\n"
    )
    assert result.returncode == 0, result
    assert result.lines() == [{"enqueued": 3}]
    assert "1 invalid id was recorded dead" in result.stderr
    async with JoinQueue(url) as join_queue:
        found = {r.case_id: r.status async for r in join_queue.results()}
    assert found == {2000: "queued", "20\ufffd01": "dead", 2001: "queued"}


def test_enqueue_arguments_in_chunks(url: str) -> None:
    result = invoke("enqueue", "--chunk", "2", 3000, 3001, 3002, 3003, 3004, url=url)
    assert result.lines() == [{"enqueued": 5}]
    assert on_queue(url, lambda q: q.counts()).queued == 5
    with SyncRedis.from_url(url) as redis:
        assert redis.xlen("{acquire}:stream") == 3  # 2 + 2 + 1


def test_enqueue_needs_ids_or_from(url: str, tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("1\n")
    assert_one_error(invoke("enqueue", url=url), "--from")
    assert_one_error(invoke("enqueue", "1", "--from", tmp_path / "ids.txt", url=url), "--from")


@posix_only
@pytest.mark.slow
async def test_ctrl_c_enqueues_what_was_read_while_stdin_stays_open(url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "enqueue",
        "--from",
        "-",
        "--chunk",
        "2",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(url),
    )
    async with JoinQueue(url) as join_queue:
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"4000\n4001\n4002\n")
            await proc.stdin.drain()
            # The first chunk is in: the input is being read.
            assert await until(join_queue.counts, lambda c: c.queued >= 2, timeout=15)
            await asyncio.sleep(0.3)  # the third id, read, waits for a full chunk or the end
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        found = {r.case_id: r.status async for r in join_queue.results()}
    assert proc.returncode == 130, err
    assert json.loads(out) == {"enqueued": 3}
    assert "interrupted: the 3 ids read were enqueued" in err.decode()
    assert found == {4000: "queued", 4001: "queued", 4002: "queued"}


# --------------------------------------------------------------------------- results, queue


def test_results_as_json_lines_and_by_status(url: str) -> None:
    put(url, 5000, 5001, 5002, "bad")
    record(
        url,
        Result(case_id=5000, status="joined", attempts=1, at=1.5),
        Result(case_id=5001, status="already_joined", attempts=2),
    )
    every = invoke("results", url=url)
    assert every.returncode == 0, every
    lines = every.lines()
    assert Counter(line["case_id"] for line in lines) == Counter([5000, 5001, 5002, "bad"])
    by_id = {line["case_id"]: line for line in lines}
    assert by_id[5000] == {
        "case_id": 5000,
        "status": "joined",
        "generation": 0,
        "attempts": 1,
        "error": None,
        "http_status": None,
        "code": None,
        "at": 1.5,
    }
    assert by_id[5001]["status"] == "already_joined"
    assert by_id[5002]["status"] == "queued"
    assert by_id["bad"]["status"] == "dead"
    assert by_id["bad"]["error"].startswith("InvalidCaseIdError")

    dead = invoke("results", "--status", "dead", url=url)
    assert [line["case_id"] for line in dead.lines()] == ["bad"]
    queued = invoke("results", "--status", "queued", url=url)
    assert [line["case_id"] for line in queued.lines()] == [5002]


def test_results_escape_what_a_terminal_would_obey(url: str) -> None:
    hostile = "\u202eevil\x1b[2J\u0085"
    put(url, hostile)
    result = invoke("results", url=url)
    assert result.stdout.isascii(), result.stdout
    assert result.lines()[0]["case_id"] == hostile


def test_queue_counts_exit_1_when_some_are_dead(url: str) -> None:
    put(url, 6000, 6001, 6002)
    pending = invoke("queue", url=url)
    assert pending.returncode == 0, pending
    assert pending.lines() == [
        {"queued": 3, "joined": 0, "already_joined": 0, "dead": 0, "total": 3}
    ]
    record(url, Result(case_id=6001, status="dead", error="NotFoundError: no"))
    some_dead = invoke("queue", url=url)
    assert some_dead.returncode == 1, some_dead
    assert some_dead.lines()[0]["dead"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(("last", "status"), [("joined", 0), ("dead", 1)])
def test_queue_wait_until_drained(url: str, last: Status, status: int) -> None:
    put(url, 7000, 7001)
    finished = threading.Event()

    def workers() -> None:  # what the workers would record, meanwhile
        time.sleep(0.3)
        record(url, Result(case_id=7000, status="joined"))
        time.sleep(0.3)
        if not finished.is_set():  # queue --wait is still waiting: one id is pending
            record(url, Result(case_id=7001, status=last))

    thread = threading.Thread(target=workers)
    thread.start()
    try:
        result = invoke("queue", "--wait", "--poll", "0.05", url=url)
    finally:
        finished.set()
        thread.join(10)
    assert result.returncode == status, result
    assert result.lines() == [
        {
            "queued": 0,
            "joined": 2 if last == "joined" else 1,
            "already_joined": 0,
            "dead": 1 if last == "dead" else 0,
            "total": 2,
        }
    ]


@posix_only
@pytest.mark.slow
async def test_ctrl_c_ends_queue_wait_with_the_last_counts(url: str) -> None:
    async with JoinQueue(url) as join_queue:
        await join_queue.enqueue([7500])
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "queue",
        "--wait",
        "--poll",
        "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # CI saw this command outlive its Ctrl-C once (not reproduced in 15 runs alone): if it
        # does again, SIGABRT makes faulthandler print where every thread stands.
        env=cli_env(url, PYTHONFAULTHANDLER="1"),
    )
    try:
        async with AsyncRedis.from_url(url) as redis:  # it has read the counts once
            seen = await until(
                redis.client_list, lambda c: any(x["cmd"] == "hgetall" for x in c), timeout=15
            )
        assert seen, "queue --wait never read the counts"
        await asyncio.sleep(0.3)  # no worker: it waits
        assert proc.returncode is None
        proc.send_signal(signal.SIGINT)
        talk = asyncio.ensure_future(proc.communicate())
        try:
            out, err = await asyncio.wait_for(asyncio.shield(talk), 15)
        except asyncio.TimeoutError:
            proc.send_signal(signal.SIGABRT)
            _, err = await asyncio.wait_for(talk, 15)
            pytest.fail(f"queue --wait outlived Ctrl-C by 15 s; where it stood:\n{err.decode()}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err
    assert json.loads(out) == {"queued": 1, "joined": 0, "already_joined": 0, "dead": 0, "total": 1}
    check_clean((out + err).decode())


# --------------------------------------------------------------------------- dead


def test_dead_lists_and_requeues_the_dead_letters(url: str) -> None:
    put(url, 8000, 8001, "nope")
    record(
        url,
        Result(case_id=8000, status="dead", error="InternalServerError: HTTP 500", generation=4),
        Result(case_id=8001, status="joined"),
    )
    listed = invoke("dead", url=url)
    assert listed.returncode == 0, listed
    by_id = {line["case_id"]: line for line in listed.lines()}
    assert set(by_id) == {8000, "nope"}
    assert by_id[8000]["error"] == "InternalServerError: HTTP 500"
    assert by_id[8000]["generation"] == 4

    requeued = invoke("dead", "--requeue", url=url)
    assert requeued.returncode == 0, requeued
    assert requeued.lines() == [{"requeued": 1}]  # an invalid id cannot be joined
    assert statuses(url) == {8000: "queued", 8001: "joined", "nope": "dead"}
    assert [line["case_id"] for line in invoke("dead", url=url).lines()] == ["nope"]


# --------------------------------------------------------------------------- errors


COMMANDS = [
    ("enqueue", "1"),
    ("results",),
    ("queue",),
    ("queue", "--wait"),
    ("dead",),
    ("dead", "--requeue"),
    ("worker", "--base-url", "http://127.0.0.1:9/api/v1"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_redis_down_is_one_line_naming_host_and_port(command: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    result = invoke(*command, url=url, ACQUIRE_API_KEY="k-not-printed-1234")
    assert_one_error(result, f"cannot reach Redis at 127.0.0.1:{port}")
    check_clean(result.stderr, "k-not-printed-1234")


@pytest.mark.slow
async def test_redis_down_ends_the_process_without_a_traceback() -> None:
    port = free_port()
    result = await run("queue", url=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    assert_one_error(result, f"cannot reach Redis at 127.0.0.1:{port}")


def test_a_wrong_or_missing_password_is_one_line(url: str) -> None:
    wrong = url.replace(PASSWORD, "not-it-either")
    result = invoke("queue", url=wrong, secrets=("not-it-either",))
    assert_one_error(result, "refused the credentials")
    missing = invoke("queue", url=url.replace(f":{PASSWORD}@", "@"))
    assert_one_error(missing, "requires a password")


@pytest.mark.parametrize(
    "bad",
    [
        f"redis://:{PASSWORD}@127.0.0.1:port/0",
        f"http://:{PASSWORD}@127.0.0.1:1/0",
        f"redis://user:{PASSWORD}@[::1/0",
    ],
)
def test_a_bad_redis_url_is_one_line_without_the_password(bad: str) -> None:
    assert_one_error(invoke("queue", url=bad))


def test_messages_name_host_and_port_and_mask_the_password() -> None:
    assert redis_where(f"redis://:{PASSWORD}@db.internal/0") == "db.internal:6379"
    assert redis_where(f"rediss://user:{PASSWORD}@[::1]:6380/0") == "[::1]:6380"
    assert redis_where("unix:///run/redis.sock?db=0") == "/run/redis.sock"
    url = f"redis://:{quote(PASSWORD + '/@', safe='')}@127.0.0.1:7/0"
    # A library message that quotes the URL, or the decoded password, is masked.
    for text in (f"bad {url}", f"bad password {PASSWORD}/@ given"):
        message = redis_problem(RedisConnectionError(text), url)
        check_clean(message)
        assert "127.0.0.1:7" in message


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["enqueue", "--chunk", "0", "1"], "--chunk"),
        (["queue", "--poll", "0"], "--poll"),
        (["queue", "--poll", "nan"], "--poll"),
        (["results", "--status", "gone"], "--status"),
        (["dead", "--requeue", "yes"], "unexpected extra argument"),
        (["worker", "--processes", "0"], "--processes"),
        (["worker", "--rate-limit", "inf"], "--rate-limit"),
        (["worker", "--idle-timeout", "-1"], "--idle-timeout"),
        (["queue", "--namespace", "a b"], "--namespace"),
        (["worker", "--namespace", "{x}", "--base-url", "http://h/api"], "--namespace"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    result = invoke(*args, url=f"redis://:{PASSWORD}@127.0.0.1:1/0", ACQUIRE_API_KEY="k")
    assert_one_error(result, needle)


def test_worker_help_shows_the_library_defaults() -> None:
    ctx = click.Context(worker)
    shown = {
        param.name: record[1]
        for param in worker.params
        if (record := param.get_help_record(ctx)) is not None
    }
    for field in msgspec.structs.fields(WorkerSettings):
        if field.name in (
            "concurrency",
            "burst",
            "max_generations",
            "idle_timeout",
            "chunks_per_process",
        ):
            assert shown[field.name].endswith(f"[default: {field.default:g}]"), shown
    assert shown["rate_limit"].endswith("[default: none]"), shown


@pytest.mark.parametrize("command", ["enqueue", "results", "queue", "dead", "worker"])
def test_no_redis_url_is_a_usage_error(command: str) -> None:
    result = invoke(*([command, "1"] if command == "enqueue" else [command]), url=None)
    assert_one_error(result, "no Redis: pass --redis URL or set ACQUIRE_REDIS_URL")


def test_worker_without_a_key_is_a_usage_error() -> None:
    result = invoke("worker", "--base-url", "http://127.0.0.1:9/api/v1", url="redis://h:1/0")
    assert_one_error(result, "no API key")


@pytest.mark.parametrize("command", ["enqueue", "results", "queue", "dead", "worker"])
def test_without_the_redis_extra_a_one_line_hint(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "taskiq", None)  # as if not installed
    result = invoke(*([command, "1"] if command == "enqueue" else [command]), url="redis://h:1/0")
    assert_one_error(result, HINT)


# --------------------------------------------------------------------------- worker


@posix_only
@pytest.mark.slow
async def test_worker_joins_every_queued_id_once_and_stops_on_sigterm(
    url: str, tmp_path: Path
) -> None:
    key = "fake-worker-key-7781"  # only in the file: the command puts it in the environment
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    ids = list(range(1000, 1200))
    async with FakeAcquire(cases=len(ids), api_key=key) as fake:
        enqueued = await run("enqueue", "--chunk", "20", *ids, url=url)
        assert enqueued.lines() == [{"enqueued": len(ids)}]
        worker = await asyncio.create_subprocess_exec(
            *CLI,
            "worker",
            "--processes",
            "1",
            "--concurrency",
            "8",
            "--base-url",
            fake.base_url,
            "--api-key-file",
            str(key_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(url),
            start_new_session=True,  # its worker process goes with it if the test kills it
        )
        drained: Run | None = None
        try:
            with contextlib.suppress(asyncio.TimeoutError):  # then the logs say why
                drained = await run("queue", "--wait", "--poll", "0.1", url=url, timeout=60)
            worker.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(worker.communicate(), 30)
        finally:
            if worker.returncode is None:
                os.killpg(worker.pid, signal.SIGKILL)
                await worker.wait()
        joins = Counter(r.case_id for r in fake.requests if r.operation == "join_chat")
    logs = (out + err).decode(errors="replace")
    assert drained is not None, f"the queue was not drained in 60 s: {logs[-3000:]}"
    assert drained.returncode == 0, drained
    assert drained.lines() == [
        {"queued": 0, "joined": len(ids), "already_joined": 0, "dead": 0, "total": len(ids)}
    ]
    assert worker.returncode == 0, logs[-3000:]
    check_clean(logs, key)
    assert joins == Counter(ids), "the emulator did not see each case joined once"
    results = await run("results", url=url)
    assert sorted(line["case_id"] for line in results.lines()) == ids
    assert {line["status"] for line in results.lines()} == {"joined"}


def test_a_password_in_the_query_is_masked_in_messages() -> None:
    # redis-py takes ?password= too (the only way for a unix:// socket).

    for url in (
        "redis://127.0.0.1:6379/0?password=hunter2",
        "unix:///run/redis.sock?db=0&password=hunter%32",
    ):
        message = redis_problem(ConnectionError(f"cannot connect to {url} (hunter2)"), url)
        assert "hunter2" not in message and "hunter%32" not in message
