"""Worker fleets end to end: real redis-server, real worker processes, the emulator with faults.

Each worker here is its own ``run_workers(processes=1)`` program in its own session, as on
its own machine: killing it with SIGKILL takes its taskiq process manager and its worker
process down together, mid-chunk. The emulator runs in the test's event loop on a real
socket; the queue is read with ``JoinQueue``, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redisserver import RedisServer

from acquire_async.testing import FakeAcquire, Faults
from acquire_async.worker import JoinQueue, QueueCounts
from acquire_async.worker._broker import GROUP
from acquire_async.worker._store import Keys

STREAM = Keys("acquire").stream  # the default namespace's

pytestmark = pytest.mark.slow

_PROGRAM = (
    "import json, sys\n"
    "from acquire_async.worker import WorkerSettings, run_workers\n"
    "settings = WorkerSettings(**json.loads(sys.argv[1]))\n"
    "sys.exit(run_workers(settings, processes=1, log_level='WARNING'))\n"
)


class Fleet:
    """Worker programs started in their own sessions; stopped (or killed) as a group."""

    def __init__(self, tmp: Path, api_key: str, settings: dict[str, Any]) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "ACQUIRE_API_KEY": api_key}
        self.settings = settings
        self.workers: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            with (self.tmp / f"worker{len(self.workers)}.log").open("ab") as log:
                self.workers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _PROGRAM, json.dumps(self.settings)],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def kill(self, index: int) -> None:
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()

    def stop(self) -> list[int | None]:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        codes: list[int | None] = []
        for worker in self.workers:
            try:
                codes.append(worker.wait(timeout=30))
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                codes.append(worker.wait())
        return codes

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(api_key: str, **settings: Any) -> Fleet:
        fleet = Fleet(tmp_path, api_key, settings)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[JoinQueue]:
    async with JoinQueue(redis_server.url) as q:
        yield q


async def _drain(queue: JoinQueue, fleet: Fleet, timeout: float) -> QueueCounts:
    try:
        return await queue.wait(poll=0.2, timeout=timeout)
    except TimeoutError:
        pytest.fail(f"not drained in {timeout}s: {await queue.counts()}\n{fleet.logs()}")


async def _results(queue: JoinQueue) -> dict[Any, str]:
    results: dict[Any, str] = {}
    async for result in queue.results():
        assert result.case_id not in results, "two results for one id"
        results[result.case_id] = result.status
    return results


FAULTS = Faults(
    seed=11,
    latency=(0.001, 0.01),
    error_rates={503: 0.03, 500: 0.02},
    drop_before_read=0.01,
    drop_after_read=0.01,
    malformed=0.005,
)


async def test_three_workers_give_every_id_exactly_one_final_outcome_under_faults(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 6000))
    async with FakeAcquire(cases=len(ids), faults=FAULTS) as fake:
        fleet = fleet_factory(
            fake.api_key, redis_url=redis_server.url, base_url=fake.base_url, concurrency=32
        )
        await queue.enqueue([*ids, "not-an-id"], chunk=50)
        fleet.start(3)
        counts = await _drain(queue, fleet, timeout=120)
        results = await _results(queue)
    assert counts.total == len(ids) + 1
    assert set(results) == {*ids, "not-an-id"}
    assert results["not-an-id"] == "dead"
    assert Counter(results.values())["dead"] == counts.dead
    # Transient faults are retried and requeued, so every real case ends joined here ...
    assert {results[i] for i in ids} <= {"joined", "already_joined"}
    # ... and joined in the emulator, which applied one join per case (the rest are repeats
    # of a join whose answer was lost, which Acquire answers with CHAT_ALREADY_JOINED).
    assert all(fake.is_joined(i) for i in ids)
    applied = Counter(r.case_id for r in fake.requests if r.applied)
    assert set(applied) == set(ids) and max(applied.values()) == 1


async def test_a_worker_killed_mid_chunk_loses_nothing(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 4000))
    # Slow enough answers that the victim always has a chunk in flight when it dies.
    faults = Faults(seed=5, latency=(0.02, 0.04), error_rates={503: 0.02})
    async with FakeAcquire(cases=len(ids), faults=faults) as fake:
        fleet = fleet_factory(
            fake.api_key,
            redis_url=redis_server.url,
            base_url=fake.base_url,
            concurrency=16,
            idle_timeout=2.0,
        )
        await queue.enqueue(ids, chunk=50)
        # The victim starts alone, so that the group's one consumer is its own; the other
        # two join once it has finished a few chunks.
        fleet.start(1)
        async with Redis.from_url(redis_server.url) as redis:
            while (await queue.counts()).done < 150:
                await asyncio.sleep(0.05)
            (victim,) = [c["name"] for c in await redis.xinfo_consumers(STREAM, GROUP)]
            fleet.start(2)
            # Killed while it holds chunks it read and has not acknowledged: those must be
            # reclaimed and redone by the others, or the queue never drains.
            while True:
                done = (await queue.counts()).done
                held = await redis.xpending_range(STREAM, GROUP, "-", "+", 10, victim)
                if done >= len(ids) // 4 and held:
                    break
                await asyncio.sleep(0.01)
            fleet.kill(0)
        counts = await _drain(queue, fleet, timeout=120)
        results = await _results(queue)
    assert counts == QueueCounts(joined=counts.joined, already_joined=counts.already_joined, dead=0)
    assert set(results) == set(ids)
    assert all(fake.is_joined(i) for i in ids)


async def test_workers_wait_out_a_redis_restart(
    redis_server: RedisServer, fleet_factory: Any
) -> None:
    ids = list(range(1000, 4000))
    faults = Faults(seed=3, latency=(0.005, 0.02))
    async with FakeAcquire(cases=len(ids), faults=faults) as fake:
        fleet = fleet_factory(
            fake.api_key, redis_url=redis_server.url, base_url=fake.base_url, concurrency=16
        )
        async with JoinQueue(redis_server.url) as queue:
            await queue.enqueue(ids, chunk=50)
            fleet.start(3)
            while (await queue.counts()).done < len(ids) // 4:
                await asyncio.sleep(0.05)
        redis_server.stop()
        await asyncio.sleep(1.5)
        redis_server.start()
        async with JoinQueue(redis_server.url) as queue:
            counts = await _drain(queue, fleet, timeout=120)
            results = await _results(queue)
        codes = await asyncio.to_thread(fleet.stop)
    assert set(results) == set(ids)
    assert counts.dead == 0 and counts.done == len(ids)
    assert all(fake.is_joined(i) for i in ids)
    assert codes == [0, 0, 0], fleet.logs()


async def test_sigterm_finishes_the_chunk_in_hand(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 1400))
    faults = Faults(seed=1, latency=(0.05, 0.08))
    async with FakeAcquire(cases=len(ids), faults=faults) as fake:
        fleet = fleet_factory(
            fake.api_key, redis_url=redis_server.url, base_url=fake.base_url, concurrency=8
        )
        await queue.enqueue(ids, chunk=40)
        fleet.start(1)
        while (await queue.counts()).done == 0:
            await asyncio.sleep(0.02)
        # In a thread: the emulator shares this loop and must answer the chunk in hand.
        assert await asyncio.to_thread(fleet.stop) == [0], fleet.logs()
        stopped = await queue.counts()
        # Nothing it took is lost: what it did not finish is still queued, not dropped.
        assert stopped.done + stopped.pending == len(ids)
        assert stopped.done % 40 == 0  # whole chunks: the ones in hand were finished
        fleet.start(1)  # a new worker takes over the rest, right away (nothing to reclaim)
        counts = await _drain(queue, fleet, timeout=60)
    assert counts.done == len(ids) and counts.dead == 0
    assert all(fake.is_joined(i) for i in ids)


def _max_per_window(times: list[float], window: float = 1.0) -> int:
    """The most requests in any window of ``window`` seconds (each starting at a request)."""
    times = sorted(times)
    best = end = 0
    for start, t in enumerate(times):
        while end < len(times) and times[end] < t + window:
            end += 1
        best = max(best, end - start)
    return best


class LoopLag:
    """The longest this event loop, where the emulator stamps each arrival, ran late.

    When it stalls for L seconds (a CPU-starved CI machine), requests sent over 1 + L seconds
    are stamped within one: the limit is kept, the stamps bunch.
    """

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - before - 0.005)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_rate_limit_is_shared_by_every_worker(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 1600))
    rate = 150
    async with FakeAcquire(cases=len(ids), faults=Faults(latency=(0.001, 0.005))) as fake:
        fleet = fleet_factory(
            fake.api_key,
            redis_url=redis_server.url,
            base_url=fake.base_url,
            concurrency=16,
            rate_limit=rate,
        )
        await queue.enqueue(ids, chunk=20)
        async with LoopLag() as lag:
            fleet.start(3)
            counts = await _drain(queue, fleet, timeout=60)
        arrivals = [r.received for r in fake.requests]
    assert counts.done == len(ids) and counts.dead == 0
    # Three processes, one limit: the slots are spaced exactly on Redis's clock; what the
    # emulator sees adds the scheduling and network jitter of each send (and a leased slot may
    # be used up to its 20 ms horizon late), so allow 5% over the rate plus the burst of 1,
    # and what the emulator's own loop stalls bunch (CI once saw 196 in a window).
    # Without the shared limiter each process would send 150/s: 450 in a window.
    assert _max_per_window(arrivals) <= rate * (1.05 + lag.worst) + 1, lag.worst
    span = max(arrivals) - min(arrivals)
    assert 0.8 * len(ids) / rate <= span <= 1.5 * len(ids) / rate


async def test_one_429_pauses_every_worker(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 2500))
    faults = Faults(latency=(0.005, 0.01), retry_after=2)
    async with FakeAcquire(cases=len(ids), faults=faults) as fake:
        fleet = fleet_factory(
            fake.api_key, redis_url=redis_server.url, base_url=fake.base_url, concurrency=8
        )
        await queue.enqueue(ids, chunk=25)
        fleet.start(3)
        # Once all three are joining, one request (whoever sends it) gets a 429.
        while len({r.case_id for r in fake.requests}) < 300:
            await asyncio.sleep(0.01)
        fake.script([429])
        counts = await _drain(queue, fleet, timeout=60)
        requests = list(fake.requests)
    assert counts.done == len(ids) and counts.dead == 0
    (limited,) = [r for r in requests if r.status == 429]
    # Grace for what was already on its way when the 429 left the emulator: requests in
    # flight (10 ms here), the pause's trip to Redis, and the other workers' slot leases
    # (horizon, 20 ms). After it, no worker sends until Retry-After is over.
    grace, end = 0.25, limited.received + 1.9
    during = [r for r in requests if limited.received + grace < r.received < end]
    assert during == [], f"{len(during)} requests during the cool-down"
    assert any(r.received >= end for r in requests)  # and they went on after it


async def test_sigterm_with_redis_down_stops_within_the_grace_and_loses_nothing(
    redis_server: RedisServer, queue: JoinQueue, fleet_factory: Any
) -> None:
    ids = list(range(1000, 1400))
    faults = Faults(seed=2, latency=(0.05, 0.08))
    async with FakeAcquire(cases=len(ids), faults=faults) as fake:
        fleet = fleet_factory(
            fake.api_key,
            redis_url=redis_server.url,
            base_url=fake.base_url,
            concurrency=8,
            idle_timeout=2.0,
            shutdown_grace=2.0,
        )
        await queue.enqueue(ids, chunk=40)
        fleet.start(1)
        while (await queue.counts()).done == 0:
            await asyncio.sleep(0.02)
        await queue.aclose()
        # Redis goes away with chunks in hand: they cannot be recorded or acknowledged.
        redis_server.stop()
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        codes = await asyncio.to_thread(fleet.stop)
        took = asyncio.get_running_loop().time() - started
        # Before: the chunks waited for Redis for ever, and so did the worker's exit.
        assert codes == [0], fleet.logs()
        assert took < 20, f"took {took:.1f}s to stop"
        redis_server.start()
        async with JoinQueue(redis_server.url) as after:
            fleet.start(1)  # the abandoned chunks are reclaimed after idle_timeout
            counts = await _drain(after, fleet, timeout=60)
    assert counts.done == len(ids) and counts.dead == 0
    assert all(fake.is_joined(i) for i in ids)
