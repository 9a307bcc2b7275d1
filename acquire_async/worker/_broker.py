"""taskiq-redis's stream broker, with the four changes a queue that loses nothing needs.

`RedisStreamBroker` (XREADGROUP, XACK after the task ran, XAUTOCLAIM of what a dead consumer
left) is the engine; `AcquireStreamBroker` keeps it and changes only what would lose or
stall chunks:

1. **The group reads from the start of the stream** (`consumer_id="0"`), not from `$`:
   with `$`, chunks enqueued before the first worker ever started are never read.
2. **Reclaiming runs on a timer, not only after new messages.** The stock loop runs XAUTOCLAIM
   only when XREADGROUP returned something, so the chunk of a worker killed near the end of a
   run (nothing new arrives) would wait forever. Here it runs every `idle_timeout / 4` at
   most, whether or not anything new came.
3. **An acknowledged entry is deleted** (XACK and XDEL in one transaction) instead of trimming
   the stream with `maxlen`: trimming drops the *oldest* entries whether or not they were
   processed, so a backlog longer than `maxlen` would silently lose chunks. The stream holds
   exactly the chunks not yet done.
4. **A lost Redis connection is waited out**, not fatal: the loop logs once per outage, backs
   off up to 2 s, recreates the group if Redis came back empty, and goes on. An
   acknowledgement that meets a dropped connection is tried again (XACK and XDEL are
   idempotent) for up to `_ACK_PATIENCE` seconds, then left for the reclaim.
   When Redis is back, the loop first reads this consumer's own pending list again: Redis
   may have applied a read (the entry is pending for us, and in its append-only file) and
   gone down before the answer left, and the entry would otherwise wait for idle_timeout.
   On SIGTERM/SIGINT the loop stops reading at its next turn (within `xread_block`), even
   where a client library turns the cancellation of a read into a connection error (seen on
   Python 3.10 after a Redis restart: the loop then retried for ever and the worker never
   exited).
5. **A stopping worker gives back what it read but did not do.** taskiq finishes the tasks in
   hand before it shuts the broker down, so whatever is still pending for this consumer then
   was never run (a read cut short by the shutdown, say): `shutdown` puts each such
   entry back at the end of the stream (XADD of its data, XACK and XDEL of the old one, in
   one transaction) for the next worker to take at once, instead of after `idle_timeout`.

6. **A chunk reclaimed too often is dead-lettered**, not retried forever: taskiq-redis has no
   delivery cap, so a chunk whose worker dies every time (or that always outlives
   `idle_timeout`) would circle for ever. Past `max_deliveries` deliveries (Redis counts
   them in the pending list) the broker hands the entry to `on_poison` (the worker records
   its ids `dead`, saying why) and deletes it.

It also reads one chunk at a time (`xread_count=1`): a worker holds only what it works on, so
chunks spread over processes and a stopping worker leaves nothing read-ahead behind.

Example:
    ```python
    broker = AcquireStreamBroker("redis://localhost:6379/0", queue_name="{acquire}:stream",
                                 idle_timeout=600_000)
    ```
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from ._settings import redact_url

__all__ = ["GROUP", "AcquireStreamBroker", "declare_group", "until_redis"]

log = logging.getLogger("acquire_async.worker")

T = TypeVar("T")

GROUP = "acquire-workers"
_MAX_BACKOFF = 2.0
_ACK_PATIENCE = 10.0
MAX_DELIVERIES = 5


class AcquireStreamBroker(RedisStreamBroker):
    """A taskiq `RedisStreamBroker` that reads from the stream's start, reclaims on a timer,
    deletes what it acknowledged and survives Redis restarts (see the module docstring).

    `idle_timeout` is in milliseconds, as in taskiq-redis.

    Example:
        ```python
        broker = AcquireStreamBroker(url, queue_name="{acquire}:stream", idle_timeout=600_000)
        ```
    """

    def __init__(
        self,
        url: str,
        *,
        queue_name: str,
        idle_timeout: int,
        max_deliveries: int = MAX_DELIVERIES,
        on_poison: Callable[[bytes, int], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("xread_block", 1000)
        super().__init__(
            url,
            queue_name=queue_name,
            consumer_group_name=GROUP,
            consumer_id="0",
            mkstream=True,
            maxlen=None,
            idle_timeout=idle_timeout,
            xread_count=1,
            **kwargs,
        )
        self._where = redact_url(url)
        self._claim_every = max(idle_timeout / 4000, 0.05)
        self.max_deliveries = max_deliveries
        self.on_poison = on_poison
        self.stopping = False  # set by SIGTERM/SIGINT in a worker process: stop reading
        self.stop_event: asyncio.Event | None = None  # the same, for tasks to wait on
        # Task ids whose chunk must stay pending (not acknowledged): abandoned at shutdown or
        # failed. It is then given back at shutdown or reclaimed, and done again.
        self.keep_pending: set[str] = set()
        self._in_hand: set[Any] = set()  # entry ids yielded and not acknowledged yet
        # The handlers _chain_signal replaced, put back at shutdown: after this broker's loop
        # is closed, a handler of ours would raise "Event loop is closed" on Ctrl-C.
        self._replaced_signals: dict[int, Any] = {}

    async def declare_group(self) -> None:
        """Create the consumer group (and the stream) if they do not exist yet."""
        async with Redis(connection_pool=self.connection_pool) as conn:
            await declare_group(conn, self.queue_name)

    async def startup(self) -> None:
        """Start taskiq's side and make sure the group exists."""
        await super().startup()
        self.stop_event = asyncio.Event()
        if self.is_worker_process and threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._chain_signal(signum, loop)
        await until_redis(self._where, "starting", self.declare_group)

    def _stop_requested(self) -> bool:
        # A method, not the attribute inline: the flag changes under the loop (a signal).
        return self.stopping

    def _chain_signal(self, signum: int, loop: asyncio.AbstractEventLoop) -> None:
        # taskiq's own handler (installed before startup) starts its shutdown; ours first
        # tells the read loop to stop at its next turn, and the tasks that they have a grace.
        previous = signal.getsignal(signum)
        event = self.stop_event

        def handler(sig: int, frame: Any) -> None:
            self.stopping = True
            if event is not None and not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
            if callable(previous):
                previous(sig, frame)

        self._replaced_signals.setdefault(signum, previous)
        signal.signal(signum, handler)

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        while self._replaced_signals:
            signum, previous = self._replaced_signals.popitem()
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    async def shutdown(self) -> None:
        """Give back the entries this consumer read but did not run, then close the pool."""
        if self.is_worker_process:
            try:
                released = await self.release_pending()
                if released:
                    log.info("gave back %d unfinished chunk(s) to the queue", released)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning(
                    "Redis at %s is unreachable (%s) at shutdown: the chunks this worker read "
                    "but did not finish will be reclaimed after idle_timeout",
                    self._where,
                    type(exc).__name__,
                )
            finally:
                self._restore_signals()
        await super().shutdown()

    async def release_pending(self) -> int:
        """Put back every entry pending for this consumer; return how many."""
        released = 0
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                pending = await conn.xpending_range(
                    self.queue_name,
                    GROUP,
                    min="-",
                    max="+",
                    count=100,
                    consumername=self.consumer_name,
                )
                if not pending:
                    break
                for item in pending:
                    entry_id = item["message_id"]
                    entries = await conn.xrange(self.queue_name, entry_id, entry_id)
                    pipe = conn.pipeline(transaction=True)
                    data = entries[0][1].get(b"data") if entries and entries[0][1] else None
                    if data:
                        pipe.xadd(self.queue_name, {b"data": data})
                        released += 1
                    pipe.xack(self.queue_name, GROUP, entry_id)
                    pipe.xdel(self.queue_name, entry_id)
                    await pipe.execute()
            await conn.xgroup_delconsumer(self.queue_name, GROUP, self.consumer_name)
        return released

    def _ack_generator(
        self,
        id: str,  # taskiq-redis names it so
        queue_name: str,
        task_id: str | None = None,
    ) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            self._in_hand.discard(id)
            if task_id is not None and task_id in self.keep_pending:
                self.keep_pending.discard(task_id)
                return  # left pending on purpose: it is done again
            deadline = time.monotonic() + _ACK_PATIENCE
            backoff = 0.05
            while True:
                try:
                    async with Redis(connection_pool=self.connection_pool) as conn:
                        pipe = conn.pipeline(transaction=True)
                        pipe.xack(queue_name, GROUP, id)
                        pipe.xdel(queue_name, id)
                        await pipe.execute()
                        return
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    if time.monotonic() + backoff > deadline:
                        # Left pending: it is redone after idle_timeout (or given back at
                        # shutdown), and the redo confirms what was recorded.
                        log.warning("could not acknowledge chunk %s; it will be redone", id)
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)

        return ack

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield chunks: new ones first, then any left idle by a dead consumer."""
        last_claim = time.monotonic()
        outage: float | None = None
        backoff = 0.05
        while not self._stop_requested():
            try:
                async with Redis(connection_pool=self.connection_pool) as conn:
                    if outage is not None:
                        await self.declare_group()  # Redis may have come back empty
                        log.warning(
                            "Redis at %s is back after %.1f s; reading the queue again",
                            self._where,
                            time.monotonic() - outage,
                        )
                        outage, backoff = None, 0.05
                        # A read the server answered as it went down: the entry is in this
                        # consumer's pending list, but the answer never arrived. Read the
                        # pending list again ("0", not ">") and take what is not in hand.
                        own = await conn.xreadgroup(
                            GROUP, self.consumer_name, {self.queue_name: "0"}, count=1000
                        )
                        for stream, entries in own or ():  # type: ignore[str-unpack]
                            for entry_id, fields in entries:  # type: ignore[str-unpack,union-attr]
                                if fields and entry_id not in self._in_hand:
                                    yield self._message(stream, entry_id, fields)
                    while not self._stop_requested():
                        fetched = await conn.xreadgroup(
                            GROUP,
                            self.consumer_name,
                            {self.queue_name: ">"},
                            block=self.block,
                            count=self.count,
                        )
                        for stream, entries in fetched or ():  # type: ignore[str-unpack]
                            for entry_id, fields in entries:  # type: ignore[str-unpack,union-attr]
                                yield self._message(stream, entry_id, fields)
                        if time.monotonic() - last_claim >= self._claim_every:
                            last_claim = time.monotonic()
                            _, claimed, *_ = await conn.xautoclaim(
                                self.queue_name,
                                GROUP,
                                self.consumer_name,
                                min_idle_time=self.idle_timeout,
                                start_id="0-0",
                                count=self.unacknowledged_batch_size,
                            )
                            deliveries = await self._deliveries(conn, claimed)
                            for entry_id, fields in claimed:
                                if not fields:  # an entry deleted meanwhile comes back empty
                                    continue
                                count = deliveries.get(entry_id, 0)
                                if count > self.max_deliveries and self.on_poison is not None:
                                    await self.on_poison(fields.get(b"data", b""), count)
                                    await self._ack_generator(entry_id, self.queue_name)()
                                    continue
                                yield self._message(self.queue_name, entry_id, fields)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self._stop_requested():
                    return
                if outage is None:
                    outage = time.monotonic()
                    log.warning(
                        "Redis at %s is unreachable (%s); retrying until it returns",
                        self._where,
                        type(exc).__name__,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _deliveries(self, conn: Redis, claimed: list[Any]) -> dict[Any, int]:
        """How many times each claimed entry was delivered (one XPENDING for the batch)."""
        if not claimed:
            return {}
        pending = await conn.xpending_range(
            self.queue_name, GROUP, min=claimed[0][0], max=claimed[-1][0], count=len(claimed)
        )
        return {item["message_id"]: int(item["times_delivered"]) for item in pending}

    def _message(self, stream: Any, entry_id: Any, fields: Any) -> AckableMessage:
        data = fields.get(b"data", b"") if isinstance(fields, dict) else b""
        ack = self._ack_generator(entry_id, stream, _task_id(data))
        self._in_hand.add(entry_id)
        return AckableMessage(data=data, ack=ack)


async def declare_group(redis: Redis, stream: str) -> None:
    """Create the workers' consumer group on `stream` (and the stream), reading from its
    start, unless it exists: for the workers at startup and the producer before it adds."""
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def until_redis(where: str, doing: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`await call(*args)`, tried again while Redis is unreachable (one warning, naming
    `where`, already redacted); for work that must not be given up for an outage."""
    backoff = 0.05
    warned = False
    while True:
        try:
            return await call(*args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if not warned:
                warned = True
                log.warning(
                    "Redis at %s is unreachable (%s) while %s; retrying",
                    where,
                    type(exc).__name__,
                    doing,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)


def _task_id(data: bytes) -> str | None:
    """The taskiq task id of a stream entry, or `None` for one that is not ours."""
    try:
        task_id = _ENVELOPE.decode(data).task_id
    except (msgspec.DecodeError, TypeError):
        return None
    return task_id if isinstance(task_id, str) else None


class _Envelope(msgspec.Struct):
    task_id: Any = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
