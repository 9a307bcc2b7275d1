"""acquire_async.worker._store: one status per id, changed only by the transition script.

On a real redis-server (the ``redis_server`` fixture)."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis
from redisserver import RedisServer

from acquire_async import JoinOutcome
from acquire_async.errors import APIConnectionError, NotFoundError
from acquire_async.worker import JoinQueue, QueueCounts, Result
from acquire_async.worker._store import Keys, Status, is_transient


def _entry(case_id: int, status: Status, generation: int = 0) -> tuple[str, Status, bytes]:
    outcome = JoinOutcome(case_id, None, None, status == "already_joined", 1, 0.01)
    return str(case_id), status, msgspec.json.encode(Result.of(outcome, status, generation))


async def _stream_chunks(redis: Redis, keys: Keys) -> list[list[int]]:
    entries = await redis.xrange(keys.stream)
    return [msgspec.json.decode(fields[b"data"])["args"][0] for _, fields in entries]


@pytest.fixture
async def queue(redis_server: RedisServer) -> JoinQueue:
    async with JoinQueue(redis_server.url, namespace="t") as q:
        yield q  # type: ignore[misc]


async def test_enqueue_marks_queued_and_adds_chunks(
    queue: JoinQueue, redis_server: RedisServer
) -> None:
    progress: list[int] = []
    taken = await queue.enqueue(range(1, 251), chunk=100, on_progress=progress.append)
    assert taken == 250
    assert progress == [100, 200, 250]
    assert await queue.counts() == QueueCounts(queued=250)
    async with Redis.from_url(redis_server.url) as redis:
        chunks = await _stream_chunks(redis, queue.keys)
        # The consumer group exists before any worker started, reading from the start.
        groups = await redis.xinfo_groups(queue.keys.stream)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert sorted(i for c in chunks for i in c) == list(range(1, 251))
    assert groups[0]["name"] == b"acquire-workers"
    assert groups[0]["last-delivered-id"] == b"0-0"


async def test_an_invalid_item_is_dead_at_once_and_never_queued(
    queue: JoinQueue, redis_server: RedisServer
) -> None:
    await queue.enqueue([5, "abc", -3, True, 6], chunk=10)
    assert await queue.counts() == QueueCounts(queued=2, dead=3)
    dead = {r.case_id: r for r in [r async for r in queue.dead()]}
    assert set(dead) == {"abc", -3, "True"}  # as given; a non-int item as text
    assert dead["abc"].error is not None and dead["abc"].error.startswith("InvalidCaseIdError")
    async with Redis.from_url(redis_server.url) as redis:
        assert await _stream_chunks(redis, queue.keys) == [[5, 6]]


async def test_enqueue_refuses_text_and_bad_chunks(queue: JoinQueue) -> None:
    with pytest.raises(TypeError, match="case_ids"):
        await queue.enqueue("1684")
    with pytest.raises(ValueError, match="chunk"):
        await queue.enqueue([1], chunk=0)
    with pytest.raises(TypeError, match="chunk"):
        await queue.enqueue([1], chunk=1.5)  # type: ignore[arg-type]


async def test_first_success_wins_and_a_redo_never_duplicates(queue: JoinQueue) -> None:
    await queue.enqueue([1, 2, 3])
    assert await queue.record([_entry(1, "joined"), _entry(2, "dead"), _entry(3, "queued", 1)])
    # The chunk is redone (its worker was killed before acknowledging it): joins repeat.
    applied = await queue.record(
        [_entry(1, "already_joined"), _entry(2, "joined"), _entry(3, "already_joined")]
    )
    assert applied == ["2", "3"]  # 1 keeps its first outcome; dead 2 may still succeed
    assert await queue.counts() == QueueCounts(joined=2, already_joined=1)
    results = {r.case_id: r.status async for r in queue.results()}
    assert results == {1: "joined", 2: "joined", 3: "already_joined"}
    assert [r async for r in queue.dead()] == []


async def test_a_stale_retry_does_not_revive_a_dead_id(queue: JoinQueue) -> None:
    await queue.enqueue([7])
    await queue.record([_entry(7, "dead", 4)])
    assert await queue.record([_entry(7, "queued", 2)]) == []
    assert await queue.counts() == QueueCounts(dead=1)


async def test_counts_follow_every_transition(queue: JoinQueue) -> None:
    await queue.enqueue(range(1, 101))
    await queue.record([_entry(i, "joined") for i in range(1, 41)])
    await queue.record([_entry(i, "dead") for i in range(41, 51)])
    await queue.record([_entry(i, "queued", 1) for i in range(51, 61)])
    counts = await queue.counts()
    assert counts == QueueCounts(queued=50, joined=40, dead=10)
    assert (counts.total, counts.pending, counts.done) == (100, 50, 50)
    # Enqueued again: done ids go back to queued, nothing counted twice.
    await queue.enqueue(range(1, 11))
    assert await queue.counts() == QueueCounts(queued=60, joined=30, dead=10)


async def test_requeue_dead_puts_valid_ids_back(
    queue: JoinQueue, redis_server: RedisServer
) -> None:
    await queue.enqueue([1, 2, "x"])
    await queue.record([_entry(1, "dead"), _entry(2, "joined")])
    assert await queue.requeue_dead() == 1  # "x" stays dead: it can never be joined
    assert await queue.counts() == QueueCounts(queued=1, joined=1, dead=1)
    assert [r.case_id async for r in queue.dead()] == ["x"]
    async with Redis.from_url(redis_server.url) as redis:
        assert (await _stream_chunks(redis, queue.keys))[-1] == [1]


async def test_results_filter_and_stale_status(queue: JoinQueue) -> None:
    await queue.enqueue([1, 2])
    await queue.record([_entry(1, "joined")])
    assert [r.case_id async for r in queue.results(status="joined")] == [1]
    queued = [r async for r in queue.results(status="queued")]
    assert [(r.case_id, r.status) for r in queued] == [(2, "queued")]
    with pytest.raises(ValueError, match="status"):
        [r async for r in queue.results(status="done")]  # type: ignore[arg-type]


async def test_wait_returns_when_nothing_is_pending(queue: JoinQueue) -> None:
    await queue.enqueue([1])
    with pytest.raises(TimeoutError, match="1 ids still pending"):
        await queue.wait(poll=0.01, timeout=0.05)
    await queue.record([_entry(1, "joined")])
    seen: list[QueueCounts] = []
    assert await queue.wait(poll=0.01, on_progress=seen.append) == QueueCounts(joined=1)
    assert seen


def test_namespace_and_redis_are_checked() -> None:
    with pytest.raises(TypeError, match="redis"):
        JoinQueue(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace"):
        JoinQueue("redis://127.0.0.1:1/0", namespace="a{b}")


def test_transient_errors_go_back_and_permanent_ones_do_not() -> None:
    assert is_transient(APIConnectionError("reset"))
    assert not is_transient(NotFoundError("gone", status=404))


async def test_requeue_dead_skips_digits_that_are_not_ascii(queue: JoinQueue) -> None:
    # Both are digits to str.isdigit(): int() of the superscript two raises, and the
    # full-width "12" would be joined as case 12.
    await queue.enqueue(["\u00b2", "\uff11\uff12", 5])
    await queue.record([_entry(5, "dead")])
    assert await queue.requeue_dead() == 1
    assert await queue.counts() == QueueCounts(queued=1, dead=2)
