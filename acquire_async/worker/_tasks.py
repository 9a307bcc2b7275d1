"""The taskiq side: the broker a worker process runs, its one task, and the per-process client.

A chunk's life in a worker process: taskiq reads it from the stream (`_broker`), calls
`join_chunk`, and acknowledges it (XACK + XDEL) only after the task returned. The task
joins the chunk with the process's one `AcquireClient` (`join_all`),
records one result per id (`_store`'s transition script), puts transient failures back on the
stream as a new chunk of the next generation, and returns. Killed at any point before the
acknowledgement, the chunk is reclaimed after `idle_timeout` and done again: joins may
repeat, and the store keeps the first success.

Example (what `acquire-async worker` runs in each process):

```python
broker = make_broker(WorkerSettings(redis_url=url, account_id="mycompany"))
```
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import msgspec
from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqState

from acquire_async._bulk import JoinOutcome
from acquire_async._client import AcquireClient

from ._broker import AcquireStreamBroker, until_redis
from ._settings import WorkerSettings, redact_url
from ._store import TASK_NAME, JoinQueue, Keys, Result, Status, encode, is_transient

__all__ = ["Worker", "make_broker", "worker_broker"]

log = logging.getLogger("acquire_async.worker")

_MAX_REQUEUE_DELAY = 30.0


class Worker:
    """What one worker process holds: its settings, its client and its queue handle."""

    def __init__(self, settings: WorkerSettings, client: AcquireClient, queue: JoinQueue) -> None:
        self.settings = settings
        self.client = client
        self.queue = queue

    async def run_chunk(self, ids: list[int], generation: int, delay: float) -> None:
        """Join one chunk and record every id's result; requeue the transient failures."""
        # The delay comes off the stream: bounded, whatever an entry says.
        if math.isfinite(delay) and delay > 0:
            await asyncio.sleep(min(delay, _MAX_REQUEUE_DELAY))
        outcomes = await self.client.join_all(ids, concurrency=self.settings.concurrency)
        entries: list[tuple[str, Status, bytes]] = []
        for outcome in outcomes:
            status = self.decide(outcome, generation)
            result = Result.of(outcome, status, generation)
            entries.append((str(result.case_id), status, encode(result)))
        # The chunk is in hand, not acknowledged: never give it up for a Redis outage.
        where = redact_url(self.settings.redis_url)
        applied = await until_redis(where, "recording a chunk", self.queue.record, entries)
        retry = {case_id for case_id, status, _ in entries if status == "queued"}
        again = [int(case_id) for case_id in applied if case_id in retry]
        if again:
            delay = min(2.0**generation, _MAX_REQUEUE_DELAY)
            await until_redis(where, "requeueing", self.queue.requeue, again, generation + 1, delay)

    async def run_chunk_until_stopped(
        self,
        ids: list[int],
        generation: int,
        delay: float,
        stopping: asyncio.Event | None,
        grace: float,
    ) -> bool:
        """`run_chunk`; once `stopping` is set, give it `grace` seconds more, then
        cancel it and return `False` (the chunk is then left on the queue, not lost)."""
        chunk = asyncio.ensure_future(self.run_chunk(ids, generation, delay))
        if stopping is None:  # not in a worker process: nothing asks it to stop
            await chunk
            return True
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({chunk, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not chunk.done():
                await asyncio.wait({chunk}, timeout=grace)
            if not chunk.done():
                return False  # cancelled below: its ids stay queued, its entry pending
            chunk.result()  # its exception, if it failed
            return True
        finally:
            stop.cancel()
            if not chunk.done():
                chunk.cancel()
                await asyncio.gather(chunk, return_exceptions=True)

    def decide(self, outcome: JoinOutcome, generation: int) -> Status:
        """`joined`/`already_joined` on success; `queued` for a transient failure with
        generations left; `dead` otherwise."""
        error = outcome.error
        if error is None:
            return "already_joined" if outcome.already_joined else "joined"
        if is_transient(error) and generation + 1 < self.settings.max_generations:
            return "queued"
        return "dead"


def make_broker(settings: WorkerSettings) -> AcquireStreamBroker:
    """A taskiq broker for `settings`, with the `join_chunk` task registered and the
    per-process client opened at worker startup and closed at shutdown.

    The client gets a `RedisThrottle` on the same Redis:
    the account's rate limit and any 429 cool-down are shared by every worker of the queue.
    The API key comes from `ACQUIRE_API_KEY` in the worker's environment.

    Example (your own taskiq app):

    ```python
    broker = make_broker(WorkerSettings(redis_url=url, account_id="mycompany"))
    # taskiq worker mymodule:broker
    ```
    """
    if not isinstance(settings, WorkerSettings):
        raise TypeError(f"settings must be a WorkerSettings, not {type(settings).__name__}")
    keys = Keys(settings.namespace)

    async def bury(data: bytes, deliveries: int) -> None:
        # A chunk whose worker died (or stalled past idle_timeout) every time: its ids get a
        # final outcome instead of circling for ever. A live worker's later success still wins.
        ids = _chunk_ids(data)
        reason = (
            f"WorkerLost: the chunk was delivered {deliveries} times and never finished "
            "(its worker died or outlived idle_timeout each time)"
        )
        async with JoinQueue(settings.redis_url, namespace=settings.namespace) as queue:
            entries: list[tuple[str, Status, bytes]] = []
            for case_id in ids:
                result = Result(case_id=case_id, status="dead", error=reason, at=time.time())
                entries.append((str(case_id), "dead", encode(result)))
            if entries:
                await queue.record(entries)
        log.error("dead-lettered %d ids of a chunk delivered %d times", len(ids), deliveries)

    broker = AcquireStreamBroker(
        settings.redis_url,
        queue_name=keys.stream,
        idle_timeout=int(settings.idle_timeout * 1000),
        on_poison=bury,
    )

    @broker.on_event(TaskiqEvents.WORKER_STARTUP)
    async def open_client(state: TaskiqState) -> None:
        from acquire_async.contrib.redis import RedisThrottle

        throttle = RedisThrottle(
            settings.redis_url,
            rate_limit=settings.rate_limit,
            burst=settings.burst,
            key=settings.namespace,
            unavailable_timeout=None,  # a worker waits Redis out: it cannot ack without it
        )
        client = AcquireClient(
            settings.account_id,
            base_url=settings.base_url,
            throttle=throttle,
            max_concurrency=settings.concurrency,
        )
        queue = JoinQueue(settings.redis_url, namespace=settings.namespace)
        state.acquire_worker = Worker(settings, client, queue)
        state.acquire_throttle = throttle
        log.info("worker ready: %r", settings)

    @broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
    async def close_client(state: TaskiqState) -> None:
        worker: Worker | None = getattr(state, "acquire_worker", None)
        if worker is not None:
            await worker.client.aclose()
            await worker.queue.aclose()
            await state.acquire_throttle.aclose()

    @broker.task(task_name=TASK_NAME)
    async def join_chunk(
        ids: list[int],
        generation: int = 0,
        delay: float = 0.0,
        context: Context = TaskiqDepends(),  # noqa: B008 (taskiq's injection)
    ) -> None:
        worker: Worker = context.state.acquire_worker
        task_id = context.message.task_id
        try:
            finished = await worker.run_chunk_until_stopped(
                ids, generation, delay, broker.stop_event, settings.shutdown_grace
            )
        except asyncio.CancelledError:
            broker.keep_pending.add(task_id)
            raise
        except Exception:
            # taskiq would acknowledge a failed task, and its ids would wait for ever with no
            # chunk to carry them: leave it pending instead, to be redone (and dead-lettered
            # by the delivery cap if it fails every time).
            broker.keep_pending.add(task_id)
            log.exception("a chunk of %d ids failed; it stays on the queue to be redone", len(ids))
            return
        if not finished:
            broker.keep_pending.add(task_id)
            log.warning(
                "stopping: a chunk of %d ids did not finish within %gs; it goes back to the queue",
                len(ids),
                settings.shutdown_grace,
            )

    return broker


def _chunk_ids(data: bytes) -> list[int]:
    """The ids of a chunk as the stream carries it (`[]` if it is not one of ours)."""
    try:
        args = msgspec.json.decode(data).get("args") or [[]]
        return [i for i in args[0] if type(i) is int]
    except (msgspec.DecodeError, AttributeError, TypeError, IndexError):
        return []


def worker_broker() -> AcquireStreamBroker:
    """The broker factory taskiq's worker processes import (settings from the environment)."""
    return make_broker(WorkerSettings.from_env())
