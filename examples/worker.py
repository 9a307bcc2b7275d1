"""Join chats with a fleet of worker processes on any number of machines, fed from Redis.

Configuration, from the environment:

    ACQUIRE_REDIS_URL    the Redis holding the queue and the results (redis://host:6379/0)
    ACQUIRE_API_KEY      the API key (its agent joins); only `work` needs it
    ACQUIRE_ACCOUNT_ID   your account id (https://{id}.acquire.io), or instead:
    ACQUIRE_BASE_URL     an API base URL (the emulator: http://127.0.0.1:8081/api/v1)
    ACQUIRE_RATE_LIMIT   joins per second for the whole account, over every worker (none)

Three commands, run where they belong:

    python examples/worker.py enqueue 1684 1685 1686   # or the ids on stdin, one a line
    python examples/worker.py work 2                   # on each machine: 2 processes
    python examples/worker.py results                  # waits for every id's outcome

`enqueue` prints how many ids it put on the queue. `work` runs until SIGTERM or Ctrl-C: each
process stops reading, finishes the chunks in hand and exits; a process that dies is
restarted, and a chunk it held is taken over by another worker after `idle_timeout` (10
minutes). `results` waits until no id is pending, then prints one JSON line per id,
`joined`, `already_joined` or `dead` (with its error: no such case, not a case id, or a
failure that outlived every retry), and a last `done` line counting them. The queue keeps
every id it was given, earlier batches too: to read one batch's results alone, give it its
own Redis database (the `/0` of the URL).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import msgspec

from acquire_async.worker import JoinQueue, WorkerSettings, run_workers

USAGE = "usage: worker.py enqueue [CASE_ID ...] | work [PROCESSES] | results"


def show(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def case_id(text: str) -> int | str:
    """An int for a number; any other text as given (the queue records it dead, unsent)."""
    try:
        return int(text)
    except ValueError:
        return text


async def enqueue(redis_url: str, items: list[str]) -> None:
    async with JoinQueue(redis_url) as queue:
        count = await queue.enqueue(map(case_id, items), chunk=100)
    show({"kind": "enqueued", "count": count})


def work(redis_url: str, processes: int) -> int:
    rate_limit = os.environ.get("ACQUIRE_RATE_LIMIT")
    settings = WorkerSettings(
        redis_url=redis_url,
        account_id=os.environ.get("ACQUIRE_ACCOUNT_ID"),
        base_url=os.environ.get("ACQUIRE_BASE_URL"),
        rate_limit=float(rate_limit) if rate_limit else None,
    )
    # The processes read ACQUIRE_API_KEY themselves: the key is never put in the settings.
    return run_workers(settings, processes=processes, log_level="WARNING")


async def results(redis_url: str) -> None:
    async with JoinQueue(redis_url) as queue:
        counts = await queue.wait()
        async for result in queue.results():
            error = {"error": result.error} if result.error else {}
            show({"kind": result.status, "case_id": result.case_id, **error})
    show({"kind": "done", **msgspec.structs.asdict(counts)})  # queued: 0, then the outcomes


def main(argv: list[str]) -> int:
    redis_url = os.environ.get("ACQUIRE_REDIS_URL")
    if not redis_url:
        sys.exit("set ACQUIRE_REDIS_URL, e.g. redis://127.0.0.1:6379/0")
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "enqueue":
        asyncio.run(enqueue(redis_url, args or sys.stdin.read().split()))
    elif command == "work" and len(args) <= 1 and all(a.isdecimal() for a in args):
        return work(redis_url, int(args[0]) if args else 1)
    elif command == "results" and not args:
        asyncio.run(results(redis_url))
    else:
        sys.exit(USAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
