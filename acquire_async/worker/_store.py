"""The queue's state in Redis: one status per id, changed only by one Lua script.

Theory of operation. Every id given to the queue has exactly one entry in `{ns}:status`
(`queued`, `joined`, `already_joined` or `dead`), its last result in `{ns}:results`
(JSON), and `{ns}:counts` counts ids per status, so `queue` is one `HGETALL` however long
the run. `{ns}:dead` lists the dead ones for `dead --requeue`. Chunks of ids wait in the
stream `{ns}:stream` (see `_broker`). Every key has the hash tag `{ns}`, so one script
may touch them all, on a cluster too.

All changes go through `_TRANSITION`, atomically, with these rules:

- *enqueue* always sets `queued` (giving an id again means "join it again").
- a worker's *record* never overwrites a success (`joined` / `already_joined`): a chunk
  redone after its worker was killed finds its joins already made and would report
  `already_joined`; the first, truer, outcome stays. A worker's `queued` (an id put back
  after a transient failure) does not revive a `dead` one.

So an id has one final outcome however often its chunk runs, and a redone chunk overwrites,
never duplicates. The counts move with every applied transition and nothing else.

Example:
    ```python
    queue = JoinQueue("redis://localhost:6379/0")
    await queue.enqueue(range(1000, 6000), chunk=100)
    print(await queue.counts())
    ```
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis

from acquire_async._bulk import JoinOutcome
from acquire_async._checks import check_count, validate_case_id
from acquire_async._retry import is_transient as is_transient  # one definition, shared
from acquire_async.errors import APIStatusError

from ._broker import declare_group
from ._settings import check_namespace

__all__ = ["TASK_NAME", "JoinQueue", "Keys", "QueueCounts", "Result", "Status"]

TASK_NAME = "acquire_async.worker:join_chunk"

Status = Literal["queued", "joined", "already_joined", "dead"]
_FINAL = ("joined", "already_joined", "dead")

_TRANSITION = """
local mode = ARGV[1]
local applied = {}
for i = 2, #ARGV, 3 do
  local id, new, result = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[1], id)
  local ok = true
  if mode == 'record' and old then
    if old == 'joined' or old == 'already_joined' then
      ok = false
    elseif new == 'queued' and old == 'dead' then
      ok = false
    end
  end
  if ok then
    if old then redis.call('HINCRBY', KEYS[3], old, -1) end
    redis.call('HINCRBY', KEYS[3], new, 1)
    redis.call('HSET', KEYS[1], id, new)
    if result == '' then
      redis.call('HDEL', KEYS[2], id)
    else
      redis.call('HSET', KEYS[2], id, result)
    end
    if new == 'dead' then
      redis.call('SADD', KEYS[4], id)
    elseif old == 'dead' then
      redis.call('SREM', KEYS[4], id)
    end
    applied[#applied + 1] = id
  end
end
return applied
"""


class Keys:
    """The Redis keys of one queue namespace (all share the hash tag `{namespace}`).

    Example:
        ```python
        Keys("acquire").stream  # '{acquire}:stream'
        ```
    """

    __slots__ = ("counts", "dead", "results", "status", "stream")

    def __init__(self, namespace: str) -> None:
        tag = "{" + namespace + "}"
        self.stream = f"{tag}:stream"
        self.status = f"{tag}:status"
        self.results = f"{tag}:results"
        self.counts = f"{tag}:counts"
        self.dead = f"{tag}:dead"

    @property
    def state(self) -> list[str]:
        """The keys the transition script takes, in its order."""
        return [self.status, self.results, self.counts, self.dead]


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one id: one JSON line of `acquire-async results`.

    - `case_id`: the id as given (an int; the text of an item that is not an int).
    - `status`: `joined`, `already_joined`, `dead`, or `queued` (not final yet: it
      failed transiently and waits for its next `generation`).
    - `generation`: how many times it was put back on the queue before this result.
    - `attempts`: HTTP attempts of the last try; `error`: `"NotFoundError: …"` for a
      failure, with `http_status` and Acquire's `code` when there were; `at`: Unix time.

    Example:
        ```python
        async for result in queue.results():
            if result.status == "dead":
                print(result.case_id, result.error)
        ```
    """

    case_id: int | str
    status: Status
    generation: int = 0
    attempts: int = 0
    error: str | None = None
    http_status: int | None = None
    code: str | None = None
    at: float = 0.0

    @classmethod
    def of(
        cls,
        outcome: JoinOutcome,
        status: Status,
        generation: int,
    ) -> Result:
        """The result of one `join_many` outcome, given what the worker decided."""
        error = outcome.error
        http_status = code = text = None
        if error is not None:
            text = f"{type(error).__name__}: {error}"
            if isinstance(error, APIStatusError):
                http_status, code = error.status, error.code
        case_id = outcome.case_id if type(outcome.case_id) is int else str(outcome.case_id)
        return cls(
            case_id=case_id,
            status=status,
            generation=generation,
            attempts=outcome.attempts,
            error=text,
            http_status=http_status,
            code=code,
            at=round(time.time(), 3),
        )


class QueueCounts(msgspec.Struct, frozen=True):
    """How many ids are in each status; `pending` is what the workers still have to do.

    Example:
        ```python
        counts = await queue.counts()
        print(f"{counts.done}/{counts.total} done, {counts.dead} dead")
        ```
    """

    queued: int = 0
    joined: int = 0
    already_joined: int = 0
    dead: int = 0

    @property
    def total(self) -> int:
        """Every id the queue knows."""
        return self.queued + self.joined + self.already_joined + self.dead

    @property
    def pending(self) -> int:
        """Ids without a final outcome yet."""
        return self.queued

    @property
    def done(self) -> int:
        """Ids with a final outcome: joined, already joined or dead."""
        return self.joined + self.already_joined + self.dead


def message(ids: list[int], generation: int, delay: float) -> bytes:
    """A chunk as the stream carries it: the JSON of a taskiq message for `join_chunk`."""
    return msgspec.json.encode(
        {
            "task_id": uuid.uuid4().hex,
            "task_name": TASK_NAME,
            "labels": {},
            "labels_types": None,
            "args": [ids, generation, delay],
            "kwargs": {},
        }
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _case_id(key: str) -> int | str:
    """The id a status key stands for: an int for an ASCII number, else the text as given
    (`"²".isdigit()` is true, and `int("²")` raises)."""
    return int(key) if key.isascii() and key.isdigit() else key


def encode(result: Result) -> bytes:
    """A result as stored in `{ns}:results`."""
    return msgspec.json.encode(result)


class JoinQueue:
    """The producer's and the operator's side of a worker queue: enqueue ids, watch the
    counts, read the results, list and requeue dead letters.

    `redis` is a URL or a `redis.asyncio.Redis` (closed by `aclose` only when this
    object made it). Safe to use from many processes at once.

    Example:
        ```python
        async with JoinQueue("redis://localhost:6379/0") as queue:
            await queue.enqueue(ids, chunk=100)
            counts = await queue.wait()
            print(counts.joined, counts.dead)
        ```
    """

    def __init__(self, redis: str | Redis, *, namespace: str = "acquire") -> None:
        if isinstance(redis, str):
            self._redis: Redis = Redis.from_url(redis)
            self._owned = True
        elif isinstance(redis, Redis):
            self._redis, self._owned = redis, False
        else:
            raise TypeError(
                f"redis must be a URL or a redis.asyncio.Redis, not {type(redis).__name__}"
            )
        self.keys = Keys(check_namespace(namespace))
        self._transition = self._redis.register_script(_TRANSITION)

    async def __aenter__(self) -> JoinQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis connection if this queue opened it."""
        if self._owned:
            await self._redis.aclose()

    async def enqueue(
        self,
        case_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        chunk: int = 100,
        on_progress: Callable[[int], object] | None = None,
    ) -> int:
        """Put `case_ids` on the queue in chunks of `chunk`; return how many were given.

        Each chunk is marked `queued` and added to the stream in one transaction. An item
        that is not a case id is recorded `dead` at once (with why), never sent. Giving an
        id that is already done queues it again. `on_progress(n)` is called with the number
        of items taken so far, after each chunk.

        Example:
            ```python
            await queue.enqueue([1684, 1685, 1686], chunk=2)
            ```
        """
        check_count("chunk", chunk)
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, not {type(on_progress).__name__}")
        await declare_group(self._redis, self.keys.stream)
        taken = 0
        batch: list[Any] = []
        if isinstance(case_ids, AsyncIterable):
            async for item in case_ids:
                batch.append(item)
                if len(batch) == chunk:
                    taken = await self._put(batch, taken, on_progress)
                    batch = []
        else:
            if isinstance(case_ids, (str, bytes, bytearray, memoryview)):
                raise TypeError(
                    f"case_ids must be an iterable of ids, not {type(case_ids).__name__}"
                )
            for item in case_ids:
                batch.append(item)
                if len(batch) == chunk:
                    taken = await self._put(batch, taken, on_progress)
                    batch = []
        if batch:
            taken = await self._put(batch, taken, on_progress)
        return taken

    async def _put(
        self, items: list[Any], taken: int, on_progress: Callable[[int], object] | None
    ) -> int:
        ids: list[int] = []
        args: list[Any] = ["enqueue"]
        for item in items:
            try:
                case_id = validate_case_id(item)
            except (TypeError, ValueError) as exc:
                outcome = JoinOutcome.invalid(item, str(exc))
                result = Result.of(outcome, "dead", 0)
                args += [str(result.case_id), "dead", encode(result)]
            else:
                ids.append(case_id)
                args += [str(case_id), "queued", ""]
        pipe = self._redis.pipeline(transaction=True)
        await self._transition(keys=self.keys.state, args=args, client=pipe)
        if ids:
            pipe.xadd(self.keys.stream, {b"data": message(ids, 0, 0.0)})
        await pipe.execute()
        taken += len(items)
        if on_progress is not None:
            on_progress(taken)
        return taken

    async def record(self, entries: list[tuple[str, Status, bytes]]) -> list[str]:
        """Apply a worker's results (id, status, result JSON); return the ids it changed."""
        args: list[Any] = ["record"]
        for case_id, status, result in entries:
            args += [case_id, status, result]
        applied = await self._transition(keys=self.keys.state, args=args)
        return [_text(a) for a in applied]

    async def requeue(self, ids: list[int], generation: int, delay: float) -> None:
        """Add a chunk of already-`queued` ids back to the stream (a worker's retry)."""
        await self._redis.xadd(self.keys.stream, {b"data": message(ids, generation, delay)})

    async def counts(self) -> QueueCounts:
        """Ids per status, in one round trip.

        Example:
            ```python
            print((await queue.counts()).pending)
            ```
        """
        raw = await self._redis.hgetall(self.keys.counts)
        values = {_text(k): int(v) for k, v in raw.items()}
        return QueueCounts(
            queued=values.get("queued", 0),
            joined=values.get("joined", 0),
            already_joined=values.get("already_joined", 0),
            dead=values.get("dead", 0),
        )

    async def results(self, *, status: Status | None = None) -> AsyncIterator[Result]:
        """Every id's latest result (final or not), in no particular order.

        Example:
            ```python
            async for result in queue.results(status="dead"):
                print(result.case_id, result.error)
            ```
        """
        if status is not None and status not in ("queued", *_FINAL):
            raise ValueError(
                f"status must be one of queued, joined, already_joined, dead ({status!r})"
            )
        decoder = msgspec.json.Decoder(Result)
        cursor = 0
        while True:
            # A batch of ids per scan step, and their results in one HMGET.
            cursor, found = await self._redis.hscan(self.keys.status, cursor, count=500)
            batch: dict[Any, Any] = dict(found)  # type: ignore[arg-type]
            ids = [raw_id for raw_id, raw in batch.items() if status in (None, _text(raw))]
            stored = await self._redis.hmget(self.keys.results, ids) if ids else []
            for raw_id, raw_result in zip(ids, stored, strict=True):
                current: Status = _text(batch[raw_id])  # type: ignore[assignment]
                if raw_result:
                    result = decoder.decode(raw_result)
                    if result.status != current:  # queued again since: the stored one is stale
                        result = msgspec.structs.replace(result, status=current)
                    yield result
                else:
                    yield Result(case_id=_case_id(_text(raw_id)), status=current)
            if cursor == 0:
                return

    async def dead(self) -> AsyncIterator[Result]:
        """The dead letters, with their last error.

        Example:
            ```python
            async for result in queue.dead():
                print(result.case_id, result.error)
            ```
        """
        decoder = msgspec.json.Decoder(Result)
        cursor = 0
        while True:
            cursor, ids = await self._redis.sscan(self.keys.dead, cursor, count=500)
            if ids:
                for raw_result in await self._redis.hmget(self.keys.results, list(ids)):
                    if raw_result:
                        yield decoder.decode(raw_result)
            if cursor == 0:
                return

    async def requeue_dead(self, *, chunk: int = 100) -> int:
        """Put every dead letter that is a valid id back on the queue; return how many.

        Example:
            ```python
            requeued = await queue.requeue_dead()
            ```
        """
        check_count("chunk", chunk)
        ids: list[int] = []
        async for raw_id in self._redis.sscan_iter(self.keys.dead, count=500):
            case_id = _case_id(_text(raw_id))
            if isinstance(case_id, int):
                ids.append(case_id)
        if ids:
            return await self.enqueue(ids, chunk=chunk)
        return 0

    async def wait(
        self,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[QueueCounts], object] | None = None,
    ) -> QueueCounts:
        """Wait until no id is pending; return the final counts.

        `on_progress(counts)` is called at every poll. `timeout` (seconds) raises
        `TimeoutError` if ids are still pending then.

        Example:
            ```python
            counts = await queue.wait(on_progress=lambda c: print(c.done, "/", c.total))
            ```
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            counts = await self.counts()
            if on_progress is not None:
                on_progress(counts)
            if counts.pending == 0:
                return counts
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{counts.pending} ids still pending after {timeout:g}s")
            await asyncio.sleep(poll)
