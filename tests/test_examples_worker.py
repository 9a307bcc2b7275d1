"""examples/worker.py runs: `enqueue`, two `work` fleets (real taskiq worker processes, as on
two machines) and `results`, each as its own process, against a real redis-server and the
emulator (FakeAcquire in the test's loop, real sockets). One fleet gets SIGTERM mid-run, as
in a rolling deploy; `results` must give every id exactly one outcome."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from typing import Any

import pytest
from recipes import EXAMPLES, environment, load
from redis.asyncio import Redis
from redisserver import RedisServer

from acquire_async.testing import FakeAcquire, Faults
from acquire_async.worker._broker import GROUP
from acquire_async.worker._store import Keys

EXAMPLE = EXAMPLES / "worker.py"

STREAM = Keys("acquire").stream  # the recipe's queue: the default namespace


async def start(*args: str, env: dict[str, str], **options: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), *args, env=env, stdout=asyncio.subprocess.PIPE, **options
    )


async def finish(process: asyncio.subprocess.Process, stdin: bytes | None = None) -> list[Any]:
    """The JSON lines a command printed; it must exit 0."""
    out, _ = await asyncio.wait_for(process.communicate(stdin), 30.0)
    assert process.returncode == 0
    return [json.loads(line) for line in out.splitlines()]


async def terminate(fleet: asyncio.subprocess.Process) -> None:
    """SIGTERM to the `work` command only, as `docker stop` sends it: it must stop its
    worker processes and exit 0, leaving no process of its session behind."""
    fleet.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(fleet.wait(), 30.0) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(fleet.pid, 0)


async def consumers(redis: Redis, count: int) -> None:
    """Wait until `count` worker processes read the queue."""
    for _ in range(1500):
        if len(await redis.xinfo_consumers(STREAM, GROUP)) == count:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"never {count} consumers")


@pytest.mark.slow
async def test_enqueue_work_results_give_every_id_exactly_one_outcome(
    redis_server: RedisServer,
) -> None:
    ids: list[int | str] = [5, "not-an-id", *range(1000, 2200)]  # 5: no such case
    faults = Faults(seed=7, latency=(0.02, 0.05), error_rates={503: 0.03})
    async with FakeAcquire(cases=1200, already_joined=[1000], faults=faults) as fake:
        env = environment(fake, ACQUIRE_REDIS_URL=redis_server.url)
        fleets: list[asyncio.subprocess.Process] = []
        try:
            # Ids as arguments, and on stdin: 1,202 ids are 13 chunks.
            head, tail = ids[:10], ids[10:]
            assert await finish(await start("enqueue", *map(str, head), env=env)) == [
                {"kind": "enqueued", "count": len(head)}
            ]
            stdin = "\n".join(map(str, tail)).encode()
            enqueued = await finish(await start("enqueue", env=env, stdin=-1), stdin)
            assert enqueued == [{"kind": "enqueued", "count": len(tail)}]
            results = await start("results", env=env)  # waits: no worker runs yet
            async with Redis.from_url(redis_server.url) as redis:
                for processes in ("2", "1"):
                    fleets.append(await start("work", processes, env=env, start_new_session=True))
                # A worker process joins the group when it first reads, so three consumers
                # mean both commands are past their start-up, when SIGTERM kills at once.
                await consumers(redis, 3)
                await terminate(fleets[0])  # mid-run: it finishes its chunks in hand
                await consumers(redis, 1)
                records = await finish(results)
                await terminate(fleets[1])
                await consumers(redis, 0)
                assert await redis.xlen(STREAM) == 0  # every chunk acknowledged
        finally:
            for fleet in fleets:
                if fleet.returncode is None:
                    os.killpg(fleet.pid, signal.SIGKILL)
                    await fleet.wait()
    done = records.pop()
    outcomes = {record["case_id"]: record for record in records}
    assert Counter(record["case_id"] for record in records) == Counter(ids)  # each id once
    kinds = Counter(record["kind"] for record in records)
    assert done == {"kind": "done", "queued": 0, **kinds}
    assert kinds == {"joined": len(ids) - 3, "already_joined": 1, "dead": 2}
    assert outcomes[1000]["kind"] == "already_joined"
    assert outcomes[5]["error"].startswith("NotFoundError")
    assert outcomes["not-an-id"]["error"].startswith("InvalidCaseIdError")
    # Every case was joined in the emulator, once (a repeat is answered CHAT_ALREADY_JOINED),
    # and nothing that is not a case id was ever sent.
    assert all(fake.is_joined(i) for i in range(1000, 2200))
    applied = Counter(r.case_id for r in fake.requests if r.applied)
    assert set(applied) == set(range(1001, 2200)) and max(applied.values()) == 1
    assert {r.case_id for r in fake.requests} == {5, *range(1000, 2200)}


def test_without_a_redis_url_or_with_a_wrong_command_it_says_how(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = load("worker").main
    monkeypatch.delenv("ACQUIRE_REDIS_URL", raising=False)
    with pytest.raises(SystemExit, match="set ACQUIRE_REDIS_URL"):
        main(["results"])
    monkeypatch.setenv("ACQUIRE_REDIS_URL", "redis://127.0.0.1:1/0")  # the usage comes first
    for argv in [[], ["join"], ["work", "two"], ["work", "1", "2"], ["results", "now"]]:
        with pytest.raises(SystemExit, match=r"^usage: worker\.py"):
            main(argv)
