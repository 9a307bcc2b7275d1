"""ACQUIRE_LOG: the SDK's logging switched on from the environment, in a fresh interpreter
(it is read when acquire_async is imported), against the emulator on a real socket."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from acquire_async.testing import FakeAcquire

PROGRAM = """
import asyncio, sys
from acquire_async import AcquireClient, RetryPolicy

async def main():
    async with AcquireClient(api_key=sys.argv[2], base_url=sys.argv[1],
                             retry=RetryPolicy(backoff_base=0.001)) as client:
        await client.join_chat(int(sys.argv[3]))

asyncio.run(main())
"""


async def run(fake: FakeAcquire, level: str | None, case_id: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACQUIRE_")}
    if level is not None:
        env["ACQUIRE_LOG"] = level
    fake.script([503])  # one retry
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROGRAM,
        fake.base_url,
        fake.api_key,
        str(case_id),
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    text = err.decode()
    assert fake.api_key not in text
    return text


@pytest.mark.slow
async def test_acquire_log_info_shows_retries_and_debug_every_attempt() -> None:
    async with FakeAcquire(cases=4) as fake:
        quiet = await run(fake, None, 1000)
        info = await run(fake, "info", 1001)
        debug = await run(fake, "DEBUG", 1002)
        wrong = await run(fake, "verbose", 1003)
    assert quiet == ""
    assert "INFO acquire_async: retrying join_chat case=1001 after attempt 1" in info
    assert "InternalServerError 503" in info
    assert "DEBUG" not in info
    assert "join_chat POST /api/v1/crm/messenger/chat/join case=1002 status=503" in debug
    assert "retrying join_chat" in debug
    assert "ACQUIRE_LOG='verbose' is not 'debug' or 'info': ignored" in wrong
    assert "retrying" not in wrong
