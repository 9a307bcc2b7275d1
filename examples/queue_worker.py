"""Join the chats whose ids wait on an `asyncio.Queue`, with N workers; stop gracefully.

Configuration, from the environment:

    ACQUIRE_API_KEY      the API key (its agent joins)
    ACQUIRE_ACCOUNT_ID   your account id (https://{id}.acquire.io), or instead:
    ACQUIRE_BASE_URL     an API base URL (the emulator: http://127.0.0.1:8081/api/v1)
    ACQUIRE_WORKERS      how many joins run at once (8)
    ACQUIRE_DRAIN        seconds the joins in flight get to finish after a signal (20: below
                         the 30 s an orchestrator such as Kubernetes waits before SIGKILL)

Run it with the case ids as arguments: `python examples/queue_worker.py 1684 1685 1686`, or
`seq 1000 1999 | xargs python examples/queue_worker.py`. Each id gets exactly one JSON line:
`joined`, `already_joined`, `failed`, or `left` when SIGTERM or Ctrl-C came first: the
workers then take no new id, finish the joins in flight, and the ids still queued are
reported as left. Joins still in flight after `ACQUIRE_DRAIN` seconds, or at a second signal,
are cancelled and reported as left too, with `"in_flight": true` (that join may have
happened: joining again is safe, an already-joined chat counts as success). A last `stopped`
line counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import Counter
from typing import Any

from acquire_async import AcquireClient
from acquire_async.errors import AlreadyJoinedError, APIError


def show(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def join_one(client: AcquireClient, case_id: int) -> str:
    """Join one chat, print its outcome, and return the outcome's kind."""
    extra: dict[str, Any] = {}
    try:
        case = await client.join_chat(case_id)
    except AlreadyJoinedError:
        kind = "already_joined"
    except (APIError, ValueError) as exc:  # ValueError: not a case id; nothing was sent
        kind, extra = "failed", {"error": type(exc).__name__, "message": str(exc)}
    else:
        kind, extra = "joined", {"status": case.status}
    show({"kind": kind, "case_id": case_id, **extra})
    return kind


async def worker(
    client: AcquireClient,
    queue: asyncio.Queue[int],
    stopping: asyncio.Event,
    done: Counter[str],
    in_hand: set[int],
) -> None:
    # The check comes before each get: once stopping, no new id is taken, and the join in
    # hand (if any) has already finished.
    while not stopping.is_set():
        try:
            case_id = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        in_hand.add(case_id)  # until its outcome is printed: a cancelled join is left
        done[await join_one(client, case_id)] += 1
        in_hand.discard(case_id)


async def drain_deadline(stopping: asyncio.Event, forced: asyncio.Event, seconds: float) -> None:
    """Return `seconds` after the first signal, or at a second one."""
    await stopping.wait()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(forced.wait(), seconds)


async def main(case_ids: list[int]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for case_id in case_ids:
        queue.put_nowait(case_id)
    stopping, forced = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:  # the first stops taking ids; a second cancels what is in flight
        (forced if stopping.is_set() else stopping).set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    done: Counter[str] = Counter()
    in_hand: set[int] = set()
    async with AcquireClient() as client:  # ACQUIRE_API_KEY, ACQUIRE_BASE_URL or _ACCOUNT_ID
        count = int(os.environ.get("ACQUIRE_WORKERS", "8"))
        workers = [
            asyncio.create_task(worker(client, queue, stopping, done, in_hand))
            for _ in range(count)
        ]
        deadline = asyncio.create_task(
            drain_deadline(stopping, forced, float(os.environ.get("ACQUIRE_DRAIN", "20")))
        )
        # Until every worker has returned (the queue is empty, or a signal came and the
        # joins in hand finished), or the drain deadline: then the joins still in flight are
        # cancelled (their connections released).
        pending: set[asyncio.Task[None]] = {*workers, deadline}
        while pending != {deadline} and deadline in pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for result in await asyncio.gather(*workers, deadline, return_exceptions=True):
            if isinstance(result, Exception):  # a bug, not an outcome: let it show
                raise result
    for case_id in sorted(in_hand):
        show({"kind": "left", "case_id": case_id, "in_flight": True})
    left = [queue.get_nowait() for _ in range(queue.qsize())]
    for case_id in left:
        show({"kind": "left", "case_id": case_id})
    show({"kind": "stopped", **done, "left": len(left) + len(in_hand)})


if __name__ == "__main__":
    try:
        ids = [int(arg) for arg in sys.argv[1:]]
    except ValueError:
        sys.exit("usage: queue_worker.py CASE_ID [CASE_ID ...] (integers)")
    asyncio.run(main(ids))
