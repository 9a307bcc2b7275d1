"""``acquire-async message``, ``reject`` and ``close``, end to end against the emulator.

Each test starts a ``FakeAcquire`` on its own event loop and runs the command as a
subprocess (``python -m acquire_async …``) awaited on that loop, so the test reads the
emulator's store afterwards: the stored messages, the case's state, the request bodies.
Every wait is bounded. A few pure helpers are unit-tested at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from acquire_async.errors import (
    APIConnectionError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ResponseDecodeError,
)
from acquire_async.testing import DEFAULT_API_KEY, FakeAcquire, Faults

CLI = [sys.executable, "-m", "acquire_async"]
RUN_TIMEOUT = 30.0
MAYBE_POSTED = "check the chat before sending it again"
ADD_MESSAGE = "/api/v1/crm/messenger/chat/add-message"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines on stdout (nothing else may be there)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def cli_env(key: str | None = DEFAULT_API_KEY) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("ACQUIRE_API_KEY", "ACQUIRE_ACCOUNT_ID", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    if key is not None:
        env["ACQUIRE_API_KEY"] = key
    return env


async def start(*args: object, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env() if env is None else env,
    )


async def finish(
    proc: asyncio.subprocess.Process, stdin: bytes = b"", key: str = DEFAULT_API_KEY
) -> Result:
    """Wait (bounded) for the command; check that the API key was not printed."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), RUN_TIMEOUT)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    result = Result(proc.returncode, out.decode(), err.decode())
    if key:
        assert key not in result.stdout, "the API key was printed on stdout"
        assert key not in result.stderr, "the API key was printed on stderr"
    assert "Traceback" not in result.stderr
    return result


async def run(
    *args: object, stdin: bytes = b"", env: dict[str, str] | None = None, key: str = ""
) -> Result:
    env = cli_env() if env is None else env
    return await finish(await start(*args, env=env), stdin, key or env.get("ACQUIRE_API_KEY", ""))


def invoke(*args: object, stdin: bytes = b"", key: str | None = DEFAULT_API_KEY) -> Result:
    """The command in this process (click's runner): for usage errors, which end before any
    I/O. ``--base-url`` defaults to a closed port, so a request that went out would fail
    with exit 1, not the 2 these tests expect."""
    from click.testing import CliRunner

    from acquire_async.cli import main

    env: dict[str, str | None] = {
        "ACQUIRE_API_KEY": key,
        "ACQUIRE_ACCOUNT_ID": None,
        "FORCE_COLOR": None,
        "TTY_COMPATIBLE": None,
    }
    result = CliRunner().invoke(main, [str(a) for a in args], input=stdin, env=env)
    assert not isinstance(result.exception, AssertionError | TypeError), result.exception
    out = Result(result.exit_code, result.stdout, result.stderr)
    if key:
        assert key not in out.stdout + out.stderr
    return out


NOWHERE = "http://127.0.0.1:9/api/v1"
"""A base URL nothing listens on (the discard port)."""


def on(fake: FakeAcquire, *args: object) -> list[object]:
    """``COMMAND --base-url FAKE ARGS…``: the command's arguments for the emulator."""
    command, *rest = args
    return [command, "--base-url", fake.base_url, *rest]


def requests_to(fake: FakeAcquire, operation: str) -> list[Any]:
    return [r for r in fake.requests if r.operation == operation]


def assert_usage_error(result: Result, *needles: str) -> None:
    """Exit 2, nothing on stdout, one line ``acquire-async: error: …`` naming the flag."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acquire-async: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def agent_status(fake: FakeAcquire, case_id: int) -> str | None:
    """The status of the key's agent's entry in a stored case."""
    for entry in fake.cases[case_id].get("users") or []:
        if entry.get("userId") == fake.agent_id:
            return str(entry.get("status"))
    return None


async def wait_for_request(fake: FakeAcquire, operation: str, n: int = 1) -> None:
    """Until the emulator logged ``n`` requests of ``operation`` (at most 15 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while len(requests_to(fake, operation)) < n:
        assert loop.time() < deadline, f"no {operation} request came"
        await asyncio.sleep(0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAcquire]:
    async with FakeAcquire(cases=10) as emulator:
        yield emulator


# --------------------------------------------------------------------------- message


async def test_message_posts_exactly_one_message(fake: FakeAcquire) -> None:
    result = await run(*on(fake, "message", 1000, "Hi! I'm here to help."))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.lines()
    assert line["ok"] is True
    assert line["case_id"] == 1000
    assert line["type"] == "message"
    assert line["message"] == "Hi! I'm here to help."
    stored = fake.messages(1000)
    assert len(stored) == 1
    assert stored[0]["message"] == "Hi! I'm here to help."
    assert line["id"] == stored[0]["id"]
    assert line["date_created"] is not None
    assert len(requests_to(fake, "add_message")) == 1


async def test_message_text_dash_reads_stdin(fake: FakeAcquire) -> None:
    text = "Bonjour, ça va ?\nSecond line.\n"  # the final line end is dropped

    result = await run(*on(fake, "message", 1000, "-"), stdin=text.encode())

    assert result.returncode == 0, result.stderr
    assert [m["message"] for m in fake.messages(1000)] == ["Bonjour, ça va ?\nSecond line."]
    assert result.lines()[0]["message"] == "Bonjour, ça va ?\nSecond line."


async def test_message_type_channel_and_translate_key_are_sent(fake: FakeAcquire) -> None:
    args = ("--type", "note", "--channel", "chat", "--translate-lang-key", "fr")

    result = await run(*on(fake, "message", 1000, "internal", *args))

    assert result.returncode == 0, result.stderr
    assert result.lines()[0]["type"] == "note"
    (request,) = requests_to(fake, "add_message")
    assert request.body["message"]["type"] == "note"
    assert request.body["message"]["translateLangKey"] == "fr"
    assert request.body["channel"] == "chat"


async def test_message_sends_no_optional_field_that_was_not_given(fake: FakeAcquire) -> None:
    assert (await run(*on(fake, "message", 1000, "hi"))).returncode == 0

    (request,) = requests_to(fake, "add_message")
    assert "channel" not in request.body
    assert "translateLangKey" not in request.body["message"]


async def test_a_dropped_answer_is_not_sent_again_and_says_check_the_chat() -> None:
    faults = Faults(sequence=["drop_after_read"])
    async with FakeAcquire(cases=3, faults=faults) as fake:
        result = await run(*on(fake, "message", 1000, "Hello!"))

        assert result.returncode == 1, result.stderr
        (line,) = result.lines()
        assert line["ok"] is False
        assert line["error"] == "APIConnectionError"
        assert line["request_sent"] is True
        assert line["maybe_posted"] is True
        assert MAYBE_POSTED in line["hint"]
        assert MAYBE_POSTED in result.stderr
        assert len(fake.messages(1000)) == 1  # posted once, the answer lost
        assert len(requests_to(fake, "add_message")) == 1  # and never sent again


async def test_a_500_may_have_posted_and_is_not_sent_again() -> None:
    async with FakeAcquire(cases=3, faults=Faults(sequence=[500])) as fake:
        result = await run(*on(fake, "message", 1000, "Hello!"))

        assert result.returncode == 1, result.stderr
        (line,) = result.lines()
        assert line["error"] == "InternalServerError"
        assert line["maybe_posted"] is True
        assert len(requests_to(fake, "add_message")) == 1


async def test_a_503_is_retried_the_server_did_not_post() -> None:
    async with FakeAcquire(cases=3, faults=Faults(sequence=[503])) as fake:
        result = await run(*on(fake, "message", 1000, "Hello!"))

        assert result.returncode == 0, result.stderr
        assert result.lines()[0]["attempts"] == 2
        assert len(fake.messages(1000)) == 1


async def test_a_refused_message_says_it_was_not_posted(fake: FakeAcquire) -> None:
    fake.close_case(1000)

    result = await run(*on(fake, "message", 1000, "Hello?"))

    assert result.returncode == 1, result.stderr
    (line,) = result.lines()
    assert line["error"] == "BadRequestError"
    assert line["request_sent"] is True  # it reached the server, which refused it
    assert line["maybe_posted"] is False
    assert line["hint"] is None
    assert MAYBE_POSTED not in result.stderr
    assert fake.messages(1000) == []


async def test_message_with_a_refused_key_is_an_account_error(fake: FakeAcquire) -> None:
    result = await run(*on(fake, "message", 1000, "hi"), env=cli_env("not-the-key"))

    assert result.returncode == 2, result.stderr
    assert result.lines()[0]["error"] == "AuthenticationError"
    assert result.stderr.splitlines()[-1] == (
        "acquire-async: error: the API key was refused (HTTP 401): "
        "check ACQUIRE_API_KEY or --api-key-file"
    )


async def test_a_key_the_server_echoes_is_never_printed_by_message() -> None:
    canary = "canary-echo-9f2b7c11-DO-NOT-PRINT"

    async def echo(request: web.Request) -> web.Response:
        said = request.headers.get("Authorization", "")
        body = {"error": {"code": "ERROR_INVALID_INPUT", "message": f"bad: {said}", "data": None}}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post(ADD_MESSAGE, echo)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        result = await run("message", "--base-url", base, 1000, "hi", env=cli_env(canary))
    finally:
        await runner.cleanup()

    # finish() checked stdout and stderr for the key; the error itself was reported.
    assert result.returncode == 1
    assert result.lines()[0]["error"] == "BadRequestError"


@pytest.mark.parametrize(
    ("args", "stdin", "needles"),
    [
        (["1000", "hi", "--type", "sms"], b"", ["--type", "'sms'"]),
        (["abc", "hi"], b"", ["CASE_ID", "'abc'"]),
        (["0", "hi"], b"", ["CASE_ID", "0"]),
        (["1000", ""], b"", ["TEXT must not be empty"]),
        (["1000"], b"", ["TEXT"]),
        (["1000", "-"], b"\n", ["TEXT on stdin is empty"]),
        (["1000", "-"], b"caf\xe9", ["TEXT on stdin is not UTF-8"]),
        (["1000", "hi", "--channel", ""], b"", ["--channel must not be empty"]),
        (["1000", "hi", "--translate-lang-key", ""], b"", ["--translate-lang-key"]),
        (["1000", "hi", "--nope"], b"", ["--nope"]),
    ],
    ids=[
        "type",
        "id",
        "id-zero",
        "empty",
        "no-text",
        "empty-stdin",
        "latin1",
        "channel",
        "lang",
        "flag",
    ],
)
def test_message_usage_errors_are_one_line(
    args: list[str], stdin: bytes, needles: list[str]
) -> None:
    assert_usage_error(invoke("message", "--base-url", NOWHERE, *args, stdin=stdin), *needles)


def test_message_text_longer_than_the_cap_is_a_usage_error() -> None:
    from acquire_async.cli._operations import MAX_TEXT

    result = invoke("message", "--base-url", NOWHERE, 1000, "-", stdin=b"x" * (MAX_TEXT + 1))

    assert_usage_error(result, "TEXT on stdin is longer than")


async def test_a_usage_error_sends_nothing(fake: FakeAcquire) -> None:
    # The whole process, against the emulator: one line, exit 2, no request.
    result = await run(*on(fake, "message", 1000, "hi", "--type", "sms"))

    assert_usage_error(result, "--type")
    assert fake.requests == []


def test_message_help_says_dash_reads_stdin() -> None:
    result = invoke("message", "--help")

    assert result.returncode == 0
    assert "TEXT - reads it from stdin" in " ".join(result.stdout.split())


# --------------------------------------------------------------------------- reject, close


async def test_reject_rejects_each_case_with_one_line_each(fake: FakeAcquire) -> None:
    result = await run(*on(fake, "reject", 1000, 1001))

    assert result.returncode == 0, result.stderr
    lines = result.lines()
    assert [line["case_id"] for line in lines] == [1000, 1001]
    assert all(line["ok"] and line["error"] is None for line in lines)
    assert agent_status(fake, 1000) == agent_status(fake, 1001) == "rejected"


async def test_close_closes_each_case_and_sends_only_the_flags_given(fake: FakeAcquire) -> None:
    result = await run(*on(fake, "close", 1000, 1001))

    assert result.returncode == 0, result.stderr
    assert [(line["case_id"], line["forever_closed"]) for line in result.lines()] == [
        (1000, True),
        (1001, True),
    ]
    assert fake.cases[1000]["status"] == fake.cases[1001]["status"] == "closed"
    bodies = [r.body for r in requests_to(fake, "close_chat")]
    assert bodies == [
        {"caseId": 1000, "closingState": "handled", "archive": "yes"},
        {"caseId": 1001, "closingState": "handled", "archive": "yes"},
    ]


@pytest.mark.slow
async def test_close_sends_each_flag_as_given(fake: FakeAcquire) -> None:
    flags = ("--closing-state", "resolved", "--no-archive", "--ask-feedback", "--leave-event")
    more = ("--no-ask-feedback", "--no-leave-event", "--leave-only", "--force-close")

    first = await run(*on(fake, "close", 1000, *flags))
    second = await run(*on(fake, "close", 1001, *more))

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    bodies = [r.body for r in requests_to(fake, "close_chat")]
    assert bodies == [
        {
            "caseId": 1000,
            "closingState": "resolved",
            "archive": "no",
            "askFeedback": True,
            "leaveEvent": True,
        },
        {
            "caseId": 1001,
            "closingState": "handled",
            "archive": "yes",
            "askFeedback": False,
            "leaveOnly": True,
            "forceClose": True,
            "leaveEvent": False,
        },
    ]
    assert fake.cases[1000]["closingState"] == "resolved"


async def test_some_failed_exit_1_and_the_others_are_done(fake: FakeAcquire) -> None:
    fake.close_case(1001)

    result = await run(*on(fake, "reject", 1000, 999_999, 1001, 1002))

    assert result.returncode == 1, result.stderr
    lines = result.lines()
    assert [(line["case_id"], line["ok"]) for line in lines] == [
        (1000, True),
        (999_999, False),
        (1001, False),
        (1002, True),
    ]
    assert lines[1]["error"] == "NotFoundError"
    assert lines[1]["status"] is None
    assert lines[1]["request_sent"] is True
    assert agent_status(fake, 1002) == "rejected"


async def test_a_refused_key_stops_close_after_one_request(fake: FakeAcquire) -> None:
    result = await run(*on(fake, "close", 1000, 1001, 1002), env=cli_env("not-the-key"))

    assert result.returncode == 2, result.stderr
    assert len(result.lines()) == 1
    assert len(fake.requests) == 1
    assert result.stderr.splitlines()[-1].startswith(
        "acquire-async: error: the API key was refused"
    )
    assert all(fake.cases[i]["status"] != "closed" for i in (1000, 1001, 1002))


async def test_a_wrong_base_url_stops_reject_after_one_request(fake: FakeAcquire) -> None:
    wrong = fake.base_url + "/v2"

    result = await run("reject", "--base-url", wrong, 1000, 1001)

    assert result.returncode == 2, result.stderr
    assert len(result.lines()) == 1
    assert len(fake.requests) == 1
    assert result.stderr.splitlines()[-1] == (
        f"acquire-async: error: nothing answers the Acquire API at {wrong} (HTTP 404): "
        "check --base-url / --account"
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["reject"], ["CASE_ID"]),
        (["reject", "1000", "abc"], ["CASE_ID", "'abc'"]),
        (["close", "1000", "--closing-state", ""], ["--closing-state must not be empty"]),
        (["close", "1000", "--archive"], ["--archive"]),
        (["close", "1000", "x1"], ["CASE_ID", "'x1'"]),
    ],
    ids=["no-id", "bad-id", "closing-state", "unknown-flag", "bad-close-id"],
)
def test_reject_and_close_usage_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    command, *rest = args
    assert_usage_error(invoke(command, "--base-url", NOWHERE, *rest), *needles)


@pytest.mark.parametrize(
    ("args", "key", "needles"),
    [
        (["--base-url", "ftp://example.com/api/v1"], DEFAULT_API_KEY, ["--base-url must be"]),
        (["--account", "a.b"], DEFAULT_API_KEY, ["--account must be one DNS label"]),
        ([], DEFAULT_API_KEY, ["--account", "--base-url"]),
        (["--base-url", NOWHERE], None, ["ACQUIRE_API_KEY", "--api-key-file"]),
        (["--account", "acme"], " " + DEFAULT_API_KEY, ["the API key in ACQUIRE_API_KEY has"]),
    ],
    ids=["scheme", "account", "no-account", "no-key", "key-spaces"],
)
@pytest.mark.parametrize("command", [["message", "1000", "hi"], ["reject", "1000"]])
def test_account_options_are_checked_as_for_join(
    command: list[str], args: list[str], key: str | None, needles: list[str]
) -> None:
    result = invoke(*command, *args, key=key)

    assert_usage_error(result, *needles)
    for python_name in ("base_url", "account_id", "api_key"):
        assert python_name not in result.stderr


# --------------------------------------------------------------------------- Ctrl-C


def slow_answers(interval: float) -> Faults:
    """Every answer dripped a byte at a time, ``interval`` seconds apart, after the store
    changed: a call stays in flight, already applied, as long as the test needs."""
    return Faults(slow_drip=1.0, drip_bytes=1, drip_interval=interval)


@pytest.mark.slow
@posix_only
async def test_ctrl_c_lets_the_message_in_flight_finish_and_exits_130() -> None:
    # The answer (~2 KB) in 64-byte pieces, 50 ms apart: 1-2 s in flight, under the grace.
    faults = Faults(slow_drip=1.0, drip_bytes=64, drip_interval=0.05)
    async with FakeAcquire(cases=3, faults=faults) as fake:
        proc = await start(*on(fake, "message", 1000, "Hello!"))
        await wait_for_request(fake, "add_message")
        proc.send_signal(signal.SIGINT)
        result = await finish(proc)

        assert result.returncode == 130, result.stderr
        assert "interrupted: finishing the message in flight" in result.stderr
        (line,) = result.lines()
        assert line["ok"] is True  # it finished and was reported
        assert len(fake.messages(1000)) == 1


@pytest.mark.slow
@posix_only
async def test_a_second_ctrl_c_cancels_the_message_and_says_it_may_be_posted() -> None:
    async with FakeAcquire(cases=3, faults=slow_answers(5.0)) as fake:
        proc = await start(*on(fake, "message", 1000, "Hello!"))
        await wait_for_request(fake, "add_message")
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)  # the first signal is handled before the second
        proc.send_signal(signal.SIGINT)
        result = await finish(proc)

        assert result.returncode == 130, result.stderr
        (line,) = result.lines()
        assert line["ok"] is False
        assert line["error"] == "CancelledError"
        assert line["request_sent"] is True
        assert line["maybe_posted"] is True
        assert MAYBE_POSTED in result.stderr
        assert len(fake.messages(1000)) == 1
        assert len(requests_to(fake, "add_message")) == 1


@pytest.mark.slow
@posix_only
async def test_ctrl_c_during_reject_starts_no_further_case() -> None:
    # The answer (~1.2 KB) in 64-byte pieces, 50 ms apart: about a second in flight.
    faults = Faults(slow_drip=1.0, drip_bytes=64, drip_interval=0.05)
    async with FakeAcquire(cases=3, faults=faults) as fake:
        proc = await start(*on(fake, "reject", 1000, 1001, 1002))
        await wait_for_request(fake, "reject_chat")
        proc.send_signal(signal.SIGINT)
        result = await finish(proc)

        assert result.returncode == 130, result.stderr
        assert [line["case_id"] for line in result.lines()] == [1000]
        assert len(requests_to(fake, "reject_chat")) == 1
        assert result.stderr.splitlines()[-1] == (
            "interrupted: 1 of 3 cases were reported; the rest were not started"
        )


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("error", "maybe"),
    [
        (APIConnectionError("refused", request_sent=False), False),
        (APIConnectionError("dropped after the request", request_sent=True), True),
        (ResponseDecodeError("not JSON", status=200), True),
        (InternalServerError("boom", status=500), True),
        (InternalServerError("busy", status=503), False),
        (BadRequestError("closed", status=400), False),
        (NotFoundError("no such case", status=400), False),
        (RateLimitError("slow down", status=429), False),
        (asyncio.CancelledError(), True),
    ],
    ids=["refused", "dropped", "decode", "500", "503", "400", "not-found", "429", "cancelled"],
)
def test_may_have_happened(error: BaseException, maybe: bool) -> None:
    from acquire_async.cli._operations import may_have_happened

    assert may_have_happened(error) is maybe


def test_case_ids_refuses_a_bad_id_before_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from acquire_async.cli._operations import case_ids

    assert case_ids(("1684", " 1685 ")) == [1684, 1685]
    with pytest.raises(SystemExit) as exit_:
        case_ids(("1684", "1_000"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "acquire-async: error: CASE_ID must be a positive integer, not '1_000'\n"
    )
