"""examples/bot.py runs: started as a process against FakeAcquire, it joins and greets an
invited case once, runs its handler, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aiohttp
import pytest
from recipes import EXAMPLES, environment, stop

from acquire_async.testing import FakeAcquire
from acquire_async.webhooks import SIGNATURE_HEADER, sign

EXAMPLE = EXAMPLES / "bot.py"
SECRET = "example-bot-test-secret"


async def next_record(stdout: asyncio.StreamReader, kind: str) -> dict[str, Any]:
    """The next JSON line of that kind the bot prints (earlier ones are skipped)."""
    while True:
        line = await asyncio.wait_for(stdout.readline(), 20.0)
        assert line, "the example exited early"
        record: dict[str, Any] = json.loads(line)
        if record["kind"] == kind:
            return record


async def post(http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> int:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
    async with http.post(url, data=body, headers=headers) as response:
        return response.status


@pytest.mark.slow
async def test_the_example_bot_joins_and_greets_once() -> None:
    async with FakeAcquire(cases=2) as fake:
        env = environment(
            fake,
            ACQUIRE_WEBHOOK_SECRET=SECRET,
            ACQUIRE_BOT_PORT="0",
            ACQUIRE_BOT_GREETING="Hi from the example",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), env=env, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        try:
            port = (await next_record(process.stdout, "listening"))["port"]
            url = f"http://127.0.0.1:{port}/acquire"
            invite = {"event": "user:case-invite", "data": {"caseId": "1000", "userId": "25"}}
            async with aiohttp.ClientSession() as http:
                assert await post(http, url, invite) == 200
                greeted = await next_record(process.stdout, "greeted")
                assert greeted["case_id"] == 1000
                assert await post(http, url, invite) == 200  # redelivered: not run again
                closed = {"event": "case:status", "data": {"caseId": "1000", "status": "closed"}}
                assert await post(http, url, closed) == 200
                assert (await next_record(process.stdout, "closed"))["case_id"] == 1000
            assert fake.is_joined(1000)
            assert [m["message"] for m in fake.messages(1000)] == ["Hi from the example"]
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20.0) == 0
        finally:
            await stop(process)


@pytest.mark.slow
async def test_the_example_bot_exits_soon_on_sigterm_with_a_sender_stalled_mid_body() -> None:
    async with FakeAcquire(cases=1) as fake:
        env = environment(fake, ACQUIRE_WEBHOOK_SECRET=SECRET, ACQUIRE_BOT_PORT="0")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), env=env, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        try:
            port = (await next_record(process.stdout, "listening"))["port"]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            await writer.drain()
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            # aiohttp's default shutdown_timeout (60 s) would keep it until the read_timeout
            # (10 s) ends the read; the example asks for 2.
            assert await asyncio.wait_for(process.wait(), 6.0) == 0
            writer.close()
        finally:
            await stop(process)
