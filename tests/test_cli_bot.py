"""``acquire-async bot`` and ``acquire-async demo bot``, end to end.

The bot runs as a subprocess (``python -m acquire_async bot``) against a ``FakeAcquire`` on
the test's loop; the emulator delivers signed webhooks to it over loopback, as Acquire would.
The test reads the emulator's store afterwards (joined? greeted how often?) and the bot's
JSON lines. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections import Counter
from typing import Any

import pytest

from acquire_async.testing import DEFAULT_API_KEY, FakeAcquire, Faults, WebhookFaults

CLI = [sys.executable, "-m", "acquire_async"]
SECRET = "whsec-cli-test-0123456789"
TIMEOUT = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]


def bot_env(secret: str | None = SECRET) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "ACQUIRE_API_KEY",
        "ACQUIRE_ACCOUNT_ID",
        "ACQUIRE_BASE_URL",
        "ACQUIRE_WEBHOOK_SECRET",
    ):
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["ACQUIRE_API_KEY"] = DEFAULT_API_KEY
    if secret is not None:
        env["BOT_SECRET"] = secret
    return env


async def start_bot(*args: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    """Start the bot on a free port; return it and the URL its banner names."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "bot",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    for _ in range(5):  # a warning (signatures off) may come first
        line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
        seen.append(line)
        match = re.search(r"listening on (http://\S+);", line)
        if match is not None:
            _EARLY[proc.pid] = "".join(seen)
            return proc, match.group(1)
    proc.kill()
    await proc.wait()
    pytest.fail(f"no banner: {seen!r}")


async def stop_bot(proc: asyncio.subprocess.Process) -> tuple[int, list[dict[str, Any]], str]:
    """SIGTERM; the exit status, the JSON lines and the whole of stderr (banner included)."""
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    records = [json.loads(line) for line in out.decode().splitlines()]
    return proc.returncode, records, _EARLY.pop(proc.pid, "") + err.decode()


_EARLY: dict[int, str] = {}  # what a bot printed on stderr up to its banner, by pid


async def test_the_bot_joins_and_greets_each_invited_case_once() -> None:
    ids = list(range(1000, 1040))
    async with FakeAcquire(cases=len(ids)) as fake:
        proc, url = await start_bot(
            "--secret-env",
            "BOT_SECRET",
            "--greet",
            "Hello from the bot",
            "--base-url",
            fake.base_url,
            env=bot_env(),
        )
        try:
            fake.add_webhook(
                url,
                secret=SECRET,
                events=("user:case-invite",),
                faults=WebhookFaults(duplicate=0.3, reorder=0.2, seed=3),
            )
            for case_id in ids:
                fake.invite(case_id)
            await fake.webhooks_idle(timeout=TIMEOUT)
            for _ in range(200):  # the bot works after it answers: wait for the greetings
                if all(len(fake.messages(i)) == 1 for i in ids):
                    break
                await asyncio.sleep(0.05)
        finally:
            code, records, err = await stop_bot(proc)
        assert code == 0, err
        assert all(fake.is_joined(i) for i in ids)
        assert [len(fake.messages(i)) for i in ids] == [1] * len(ids)
        assert fake.messages(ids[0])[0]["message"] == "Hello from the bot"
        joined = [r for r in records if r["kind"] == "joined"]
        assert sorted(r["case_id"] for r in joined) == ids
        assert sum(r["kind"] == "duplicate" for r in records) > 0
        assert "stopped" in err
        for text in (json.dumps(records), err):
            assert SECRET not in text
            assert DEFAULT_API_KEY not in text


async def test_a_delivery_signed_with_another_secret_is_refused() -> None:
    async with FakeAcquire(cases=3) as fake:
        proc, url = await start_bot(
            "--secret-env", "BOT_SECRET", "--base-url", fake.base_url, env=bot_env()
        )
        try:
            fake.add_webhook(
                url,
                secret="not-the-secret",
                events=("user:case-invite",),
                faults=WebhookFaults(retries=0),
            )
            fake.invite(1000)
            await fake.webhooks_idle(timeout=TIMEOUT)
        finally:
            code, records, _ = await stop_bot(proc)
        assert code == 0
        assert [d.status for d in fake.deliveries] == [401]
        assert not fake.is_joined(1000)
        assert [r["kind"] for r in records] == ["rejected"]


async def test_join_on_a_status_and_no_verify() -> None:
    async with FakeAcquire(cases=0) as fake:
        # The emulator from the environment, as an app would be pointed at it.
        env = {**bot_env(secret=None), "ACQUIRE_BASE_URL": fake.base_url}
        proc, url = await start_bot("--no-verify", "--join-on", "case:status=pending", env=env)
        try:
            fake.add_webhook(url, events=("case:status",))
            pending = fake.add_case(status="pending")["id"]
            queued = fake.add_case(status="queue")["id"]
            await fake.webhooks_idle(timeout=TIMEOUT)
            for _ in range(200):
                if fake.is_joined(pending):
                    break
                await asyncio.sleep(0.05)
        finally:
            code, _, err = await stop_bot(proc)
        assert code == 0, err
        assert fake.is_joined(pending)
        assert not fake.is_joined(queued)


async def _usage_error(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2
    assert out == b""
    text = err.decode()
    assert text.startswith("acquire-async: error: ") and text.count("\n") == 1, text
    return text


async def test_usage_errors_are_one_line_before_anything_listens() -> None:
    no_secret = await _usage_error("--secret-env", "BOT_SECRET", env=bot_env(secret=None))
    assert "BOT_SECRET" in no_secret and "--no-verify" in no_secret
    secret = ("--secret-env", "BOT_SECRET")
    bad_rule = await _usage_error(*secret, "--join-on", "case:status=", env=bot_env())
    assert "case:status=" in bad_rule and "--join-on" in bad_rule
    both = await _usage_error(*secret, "--no-join", "--join-on", "user:case-invite", env=bot_env())
    assert "--no-join" in both
    path = await _usage_error(*secret, "--path", "acquire", env=bot_env())
    assert "--path" in path


async def run_demo_bot(cases: int) -> tuple[Counter[str], str]:
    """``demo bot --records``: the count of each record kind, and stderr (exit status 0)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "demo",
        "bot",
        "--cases",
        str(cases),
        "--records",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=bot_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return Counter(json.loads(line)["kind"] for line in out.decode().splitlines()), err.decode()


async def test_demo_bot_settles_before_closing() -> None:
    # With few cases the bot's last joins end after the emulator's deliveries went idle: the
    # case:status those joins cause must still reach an open bot, not a closing one.
    kinds, _ = await run_demo_bot(3)
    assert kinds["received"] == 3 * 3  # new case, invite, active after the join
    assert kinds["busy"] == kinds["dropped"] == 0, kinds


async def test_demo_bot_joins_and_greets_every_case_once() -> None:
    kinds, text = await run_demo_bot(60)
    # The demo waits until the deliveries its own joins cause are in: nothing is refused
    # as the bot closes, nothing dropped.
    assert kinds["joined"] == kinds["greeted"] == 60
    assert kinds["busy"] == kinds["dropped"] == kinds["failed"] == 0, kinds
    assert "60 cases: 60 joined, 60 greeted once, 0 greeted twice" in text
    assert "duplicates without running them again" in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_delivers_invites_to_a_bot_in_another_process() -> None:
    # Two programs, as a user runs them in two shells: the emulator with --webhook, the bot.
    api_port = _free_port()
    bot, url = await start_bot(
        "--secret-env",
        "BOT_SECRET",
        "--greet",
        "hi",
        "--base-url",
        f"http://127.0.0.1:{api_port}/api/v1",
        env=bot_env(),
    )
    serve = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(api_port),
        "--cases",
        "5",
        "--webhook",
        url,
        "--webhook-secret-env",
        "BOT_SECRET",
        "--invite",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=bot_env(),
    )
    try:
        greeted: set[int] = set()
        assert bot.stdout is not None
        while len(greeted) < 5:
            line = await asyncio.wait_for(bot.stdout.readline(), TIMEOUT)
            assert line, "the bot ended early"
            record = json.loads(line)
            if record["kind"] == "greeted":
                greeted.add(record["case_id"])
    finally:
        serve.send_signal(signal.SIGTERM)
        serve_out, _ = await asyncio.wait_for(serve.communicate(), TIMEOUT)
        code, _, err = await stop_bot(bot)
    assert greeted == set(range(1000, 1005))
    assert code == 0, err
    assert SECRET not in serve_out.decode()


async def _hanging_bot(*args: str) -> tuple[FakeAcquire, asyncio.subprocess.Process]:
    """A bot whose every join hangs (the API answers after 60 s), with one event in hand."""
    fake = FakeAcquire(cases=1, faults=Faults(latency=(60.0, 60.0)))
    await fake.start()
    proc, url = await start_bot(
        "--secret-env", "BOT_SECRET", "--base-url", fake.base_url, *args, env=bot_env()
    )
    fake.add_webhook(url, secret=SECRET, events=("user:case-invite",))
    fake.invite(1000)
    await fake.webhooks_idle(timeout=TIMEOUT)
    for _ in range(200):  # the join is on its way
        if fake.requests:
            break
        await asyncio.sleep(0.02)
    return fake, proc


async def test_work_not_finished_within_the_grace_is_dropped_and_exits_1() -> None:
    fake, proc = await _hanging_bot("--shutdown-grace", "0.5")
    try:
        code, records, err = await stop_bot(proc)
    finally:
        await fake.close()
    assert code == 1, err
    assert [r["kind"] for r in records if r["kind"] == "dropped"] == ["dropped"]
    assert "1 accepted event(s) were not finished" in err


async def test_a_second_signal_stops_at_once() -> None:
    fake, proc = await _hanging_bot("--shutdown-grace", "600")
    try:
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.close()
    assert proc.returncode == 130
    assert "forced stop; 1 accepted event(s) not finished" in err.decode()


async def test_a_closed_stdout_stops_the_bot() -> None:
    async with FakeAcquire(cases=2) as fake:
        read, write = os.pipe()
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "bot",
            "--port",
            "0",
            "--secret-env",
            "BOT_SECRET",
            "--base-url",
            fake.base_url,
            stdout=write,
            stderr=asyncio.subprocess.PIPE,
            env=bot_env(),
        )
        os.close(write)
        os.close(read)  # like `acquire-async bot | head -0`
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
        url = re.search(r"listening on (http://\S+);", line)
        assert url is not None, line
        fake.add_webhook(url.group(1), secret=SECRET, events=("user:case-invite",))
        fake.invite(1000)
        try:
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        err = await proc.stderr.read()
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err


async def test_a_secret_with_surrounding_whitespace_is_warned_about() -> None:
    env = bot_env(secret=SECRET + "\n")
    proc, _ = await start_bot(
        "--secret-env", "BOT_SECRET", "--base-url", "http://127.0.0.1:9", env=env
    )
    code, _, err = await stop_bot(proc)
    assert code == 0
    assert "BOT_SECRET has leading or trailing whitespace" in err
    assert SECRET not in err


async def test_a_sender_stalled_mid_body_does_not_hold_the_exit() -> None:
    proc, url = await start_bot(
        "--secret-env", "BOT_SECRET", "--base-url", "http://127.0.0.1:9", env=bot_env()
    )
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"event":'
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the bot is reading this body now
        started = asyncio.get_running_loop().time()
        code, _, err = await stop_bot(proc)
        took = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    assert code == 0, err
    # Without a short shutdown_timeout the runner waits for the stalled request: the bot's
    # read deadline (10 s), or aiohttp's own 60 s.
    assert took < 6.0, took


async def test_malformed_http_does_not_fill_stderr() -> None:
    proc, url = await start_bot(
        "--secret-env", "BOT_SECRET", "--base-url", "http://127.0.0.1:9", env=bot_env()
    )
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Headers and a broken chunk in one packet: aiohttp answers it before the handler runs.
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX\r\n"
        )
        await writer.drain()
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    code, _, err = await stop_bot(proc)
    assert code == 0, err
    assert "Traceback" not in err and "BadHttpMessage" not in err, err
