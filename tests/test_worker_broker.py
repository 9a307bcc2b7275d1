"""acquire_async.worker._broker: what AcquireStreamBroker changes in taskiq-redis's stream
broker, each shown on a real redis-server; and _tasks.Worker's decisions per outcome."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redisserver import RedisServer
from stubs import StubTransport, answer

import acquire_async as aa
from acquire_async.testing import MockResponse
from acquire_async.worker import (
    AcquireStreamBroker,
    JoinQueue,
    QueueCounts,
    WorkerSettings,
    make_broker,
)
from acquire_async.worker._broker import GROUP
from acquire_async.worker._settings import redact_url
from acquire_async.worker._store import Keys, message
from acquire_async.worker._tasks import Worker

KEYS = Keys("t")


def _broker(url: str, idle_ms: int = 200, **kwargs: Any) -> AcquireStreamBroker:
    broker = AcquireStreamBroker(url, queue_name=KEYS.stream, idle_timeout=idle_ms, **kwargs)
    broker.is_worker_process = True
    return broker


async def _next(listen: AsyncIterator[Any], timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(listen.__anext__(), timeout)


def _ids(data: bytes) -> list[int]:
    ids: list[int] = msgspec.json.decode(data)["args"][0]
    return ids


async def test_chunks_enqueued_before_any_worker_are_read(redis_server: RedisServer) -> None:
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.stream, {b"data": message([1], 0, 0.0)})  # no group yet
    broker = _broker(redis_server.url)
    await broker.startup()
    listen = broker.listen()
    try:
        assert _ids((await _next(listen)).data) == [1]
    finally:
        await listen.aclose()
        await broker.shutdown()


async def test_a_dead_consumers_chunk_is_reclaimed_though_nothing_new_arrives(
    redis_server: RedisServer,
) -> None:
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xgroup_create(KEYS.stream, GROUP, id="0", mkstream=True)
        await redis.xadd(KEYS.stream, {b"data": message([7], 0, 0.0)})
        # A worker read it and died: it stays pending for a consumer that is gone.
        await redis.xreadgroup(GROUP, "dead-worker", {KEYS.stream: ">"}, count=1)
    broker = _broker(redis_server.url, idle_ms=300, xread_block=100)
    await broker.startup()
    listen = broker.listen()
    try:
        # The stock loop reclaims only after a read that returned something: it would wait
        # for a new chunk forever. Here the reclaim runs on its timer.
        assert _ids((await _next(listen)).data) == [7]
    finally:
        await listen.aclose()
        await broker.shutdown()


async def test_ack_deletes_the_entry(redis_server: RedisServer) -> None:
    broker = _broker(redis_server.url)
    await broker.startup()
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.stream, {b"data": message([1], 0, 0.0)})
        listen = broker.listen()
        try:
            received = await _next(listen)
            await received.ack()
            assert await redis.xlen(KEYS.stream) == 0  # XACK alone would keep it (maxlen)
            assert (await redis.xpending(KEYS.stream, GROUP))["pending"] == 0
        finally:
            await listen.aclose()
            await broker.shutdown()


async def test_shutdown_gives_back_what_was_read_but_not_run(redis_server: RedisServer) -> None:
    broker = _broker(redis_server.url, idle_ms=600_000)
    await broker.startup()
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.stream, {b"data": message([1, 2], 0, 0.0)})
        listen = broker.listen()
        await _next(listen)  # read, never run, never acknowledged
        await listen.aclose()
        await broker.shutdown()
        # Another worker gets it at once, not after idle_timeout (ten minutes here).
        fetched = await redis.xreadgroup(GROUP, "next-worker", {KEYS.stream: ">"}, count=10)
        assert [_ids(fields[b"data"]) for _, fields in fetched[0][1]] == [[1, 2]]
        assert (await redis.xpending(KEYS.stream, GROUP))["pending"] == 1  # only the new read
        consumers = {c["name"] for c in await redis.xinfo_consumers(KEYS.stream, GROUP)}
        assert broker.consumer_name.encode() not in consumers


async def test_listen_waits_out_a_redis_restart(redis_server: RedisServer) -> None:
    broker = _broker(redis_server.url, xread_block=100)
    await broker.startup()
    listen = broker.listen()
    try:
        async with Redis.from_url(redis_server.url) as redis:
            await redis.xadd(KEYS.stream, {b"data": message([1], 0, 0.0)})
        assert _ids((await _next(listen)).data) == [1]
        redis_server.stop()
        reading = asyncio.ensure_future(_next(listen, timeout=20))
        await asyncio.sleep(0.5)
        assert not reading.done()  # waiting, not failed
        redis_server.start()
        async with Redis.from_url(redis_server.url) as redis:
            await redis.xadd(KEYS.stream, {b"data": message([2], 0, 0.0)})
        assert _ids((await reading).data) == [2]
    finally:
        await listen.aclose()
        await broker.shutdown()


# Worker.run_chunk: what each outcome becomes.


async def _worker(redis_server: RedisServer, respond: Any, **settings: Any) -> Worker:
    client = aa.AcquireClient(
        "acme",
        "key",
        transport=StubTransport(respond),
        retry=aa.RetryPolicy.disabled(),
    )
    options = {"redis_url": redis_server.url, "namespace": "t", "account_id": "acme", **settings}
    return Worker(WorkerSettings(**options), client, JoinQueue(redis_server.url, namespace="t"))


def _by_id(case_id: int) -> MockResponse:
    if case_id == 2:  # gone: permanent
        return MockResponse(status=400, json={"error": {"code": "ERROR_RECORD_NOT_FOUND"}})
    if case_id == 3:  # a 503: transient
        return MockResponse(status=503, json={"error": {"code": "ERROR_SERVER_ERROR"}})
    if case_id == 4:
        return MockResponse(json={"error": {"code": "CHAT_ALREADY_JOINED", "message": "x"}})
    return answer(case_id)


async def test_each_outcome_gets_its_status_and_transients_go_back(
    redis_server: RedisServer,
) -> None:
    worker = await _worker(redis_server, _by_id, max_generations=3)
    try:
        await worker.queue.enqueue([1, 2, 3, 4])
        async with Redis.from_url(redis_server.url) as redis:
            await redis.delete(KEYS.stream)
            await worker.run_chunk([1, 2, 3, 4], generation=0, delay=0.0)
            assert await worker.queue.counts() == QueueCounts(
                queued=1, joined=1, already_joined=1, dead=1
            )
            (entry,) = await redis.xrange(KEYS.stream)
            requeued = msgspec.json.decode(entry[1][b"data"])["args"]
            assert requeued == [[3], 1, 1.0]  # the next generation, after a back-off
            # The last generation: a transient failure is dead, with its error.
            await worker.run_chunk([3], generation=2, delay=0.0)
            assert await redis.xlen(KEYS.stream) == 1  # nothing added this time
        dead = {r.case_id: r async for r in worker.queue.dead()}
        assert set(dead) == {2, 3}
        assert dead[3].http_status == 503 and dead[3].generation == 2
        assert dead[2].error is not None and "NotFoundError" in dead[2].error
    finally:
        await worker.client.aclose()
        await worker.queue.aclose()


def test_settings_check_their_values() -> None:
    url = "redis://127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="redis_url"):
        WorkerSettings(redis_url="http://x", account_id="a")
    with pytest.raises(ValueError, match="account_id or base_url"):
        WorkerSettings(redis_url=url)
    with pytest.raises(ValueError, match="concurrency"):
        WorkerSettings(redis_url=url, account_id="a", concurrency=0)
    with pytest.raises(TypeError, match="rate_limit"):
        WorkerSettings(redis_url=url, account_id="a", rate_limit="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        WorkerSettings(redis_url=url, account_id="a", idle_timeout=float("inf"))
    with pytest.raises(TypeError, match="shutdown_grace"):
        WorkerSettings(redis_url=url, account_id="a", shutdown_grace=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace"):
        WorkerSettings(redis_url=url, account_id="a", namespace="a b")


def test_settings_travel_by_environment_without_the_password_in_repr() -> None:
    settings = WorkerSettings(redis_url="redis://:hunter2@db:6379/0", account_id="a", rate_limit=50)
    assert WorkerSettings.from_env(settings.to_env()) == settings
    assert "hunter2" not in repr(settings)
    assert "redis://***@db:6379/0" in repr(settings)
    with pytest.raises(RuntimeError, match="ACQUIRE_WORKER_SETTINGS"):
        WorkerSettings.from_env({})


async def test_a_chunk_delivered_too_often_is_handed_to_on_poison(
    redis_server: RedisServer,
) -> None:
    buried: list[tuple[list[int], int]] = []

    async def on_poison(data: bytes, deliveries: int) -> None:
        buried.append((_ids(data), deliveries))

    async with Redis.from_url(redis_server.url) as redis:
        await redis.xgroup_create(KEYS.stream, GROUP, id="0", mkstream=True)
        poison = await redis.xadd(KEYS.stream, {b"data": message([9], 0, 0.0)})
        await redis.xadd(KEYS.stream, {b"data": message([10], 0, 0.0)})
        await redis.xreadgroup(GROUP, "dead-worker", {KEYS.stream: ">"}, count=2)
        # Its workers died five times already (Redis counts deliveries in the pending list).
        await redis.xclaim(KEYS.stream, GROUP, "dead-worker", 0, [poison], retrycount=5)
        broker = _broker(redis_server.url, idle_ms=200, xread_block=100, on_poison=on_poison)
        await broker.startup()
        listen = broker.listen()
        try:
            # The other one (delivered once) is redone; the poison one is not ...
            assert _ids((await _next(listen)).data) == [10]
            # ... it went to on_poison with its count, and left the stream.
            assert buried == [([9], 6)]
            assert poison not in {e for e, _ in await redis.xrange(KEYS.stream)}
        finally:
            await listen.aclose()
            await broker.shutdown()


async def test_the_workers_on_poison_records_the_ids_dead(redis_server: RedisServer) -> None:
    settings = WorkerSettings(redis_url=redis_server.url, namespace="t", account_id="acme")
    broker = make_broker(settings)
    async with JoinQueue(redis_server.url, namespace="t") as queue:
        await queue.enqueue([1, 2, 3])
        await queue.record(
            [("3", "joined", msgspec.json.encode({"case_id": 3, "status": "joined"}))]
        )
        assert broker.on_poison is not None
        await broker.on_poison(message([1, 2, 3], 0, 0.0), 6)
        await broker.on_poison(b"not json", 6)  # not one of ours: nothing to record
        assert await queue.counts() == QueueCounts(joined=1, dead=2)  # 3's success stays
        dead = [r async for r in queue.dead()]
        assert {r.case_id for r in dead} == {1, 2}
        assert all(r.error and r.error.startswith("WorkerLost") for r in dead)
    await broker.shutdown()


async def test_a_chunk_kept_pending_is_not_acknowledged(redis_server: RedisServer) -> None:
    # What join_chunk does for a chunk that failed or was stopped at shutdown: taskiq still
    # calls ack, and the entry must stay pending (to be given back or reclaimed), not vanish.
    broker = _broker(redis_server.url, idle_ms=600_000)
    await broker.startup()
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.stream, {b"data": message([1], 0, 0.0)})
        await redis.xadd(KEYS.stream, {b"data": b"not json"})  # not ours: acked as usual
        listen = broker.listen()
        try:
            kept, hostile = await _next(listen), await _next(listen)
            broker.keep_pending.add(msgspec.json.decode(kept.data)["task_id"])
            await kept.ack()
            await hostile.ack()
            assert (await redis.xpending(KEYS.stream, GROUP))["pending"] == 1
            assert broker.keep_pending == set()  # used once
        finally:
            await listen.aclose()
            await broker.shutdown()
        # ... and shutdown gives it back for the next worker.
        fetched = await redis.xreadgroup(GROUP, "next-worker", {KEYS.stream: ">"}, count=10)
        assert [_ids(fields[b"data"]) for _, fields in fetched[0][1]] == [[1]]


def test_a_redis_password_in_the_query_is_redacted_too() -> None:
    for url in (
        "redis://127.0.0.1:6379/0?password=hunter2",
        "unix:///run/redis.sock?db=0&password=hunter2",
        "redis://user:hunter2@db:6379/0?password=hunter2&db=1",
    ):
        settings = WorkerSettings(redis_url=url, account_id="a")
        assert "hunter2" not in repr(settings)
        assert "hunter2" not in redact_url(url)
    assert redact_url("unix:///s.sock?db=0&password=x") == "unix:///s.sock?db=0&password=***"


async def test_a_read_answered_as_redis_went_down_is_read_again(
    redis_server: RedisServer,
) -> None:
    # Redis may apply an XREADGROUP (the entry joins this consumer's pending list, and the
    # append-only file) and go down before its answer leaves: the consumer never sees it, and
    # without a second look it waits for idle_timeout (ten minutes here) to be reclaimed.
    broker = _broker(redis_server.url, idle_ms=600_000, xread_block=100)
    await broker.startup()
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.stream, {b"data": message([4], 0, 0.0)})
        await redis.xreadgroup(GROUP, broker.consumer_name, {KEYS.stream: ">"}, count=1)
    listen = broker.listen()
    reading = asyncio.ensure_future(_next(listen, timeout=15))
    try:
        await asyncio.sleep(0.3)
        assert not reading.done()  # nothing new on the stream
        redis_server.stop()
        await asyncio.sleep(0.3)
        redis_server.start()
        assert _ids((await reading).data) == [4]
    finally:
        reading.cancel()
        await listen.aclose()
        await broker.shutdown()


async def test_shutdown_puts_back_the_signal_handlers_it_replaced(
    redis_server: RedisServer,
) -> None:
    # A worker broker chains SIGTERM/SIGINT while it runs; after shutdown (its loop may close)
    # a handler of its own left behind would turn a Ctrl-C into "Event loop is closed".
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    broker = _broker(redis_server.url)
    await broker.startup()
    try:
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    finally:
        await broker.shutdown()
    assert {signum: signal.getsignal(signum) for signum in before} == before
