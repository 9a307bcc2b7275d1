"""RedisThrottle (acquire_async.contrib.redis): one rate limit and one cool-down for every process.

The Lua scripts and the process-side logic run on fakeredis with a hand-moved clock (fast);
the behaviour is proven on a real ``redis-server`` (the ``redis_server`` fixture) with real
worker processes joining against one ``FakeAcquire`` on real sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import fakeredis
import fakeredis._socket._base
import fakeredis.aioredis
import fakeredis.commands_mixins.server_mixin
import pytest
from redis.asyncio import Redis
from redisserver import RedisServer, free_port

from acquire_async import AcquireClient, Throttle, ThrottleUnavailableError
from acquire_async.contrib.redis import LEASE_SCRIPT, PAUSE_SCRIPT, RedisThrottle
from acquire_async.errors import AcquireError
from acquire_async.testing import FakeAcquire, Faults

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["{acquire}:tat", "{acquire}:pause"]
EPOCH = 1_800_000_000.0  # the fake server's clock starts here (seconds)
SKEW = 43_200.0  # the process clock is 12 hours off the server's: it must not matter
LOGGER = "acquire_async.contrib.redis"


class ServerClock:
    """fakeredis's clock (``TIME`` and expiries) and a process clock skewed from it, both
    moved by hand: by :meth:`advance`, or by the throttle's own ``sleep``."""

    def __init__(self) -> None:
        self.elapsed = 0.0  # kept apart from EPOCH: a microsecond is below 1.8e9's precision

    def time(self) -> float:  # fakeredis calls time.time()
        return EPOCH + self.elapsed

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def clock(self) -> float:
        return SKEW + self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.elapsed += max(seconds, 0.0)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ServerClock:
    server_clock = ServerClock()
    monkeypatch.setattr(fakeredis._socket._base, "time", server_clock)
    monkeypatch.setattr(fakeredis.commands_mixins.server_mixin, "time", server_clock)
    return server_clock


@pytest.fixture
async def fake_redis() -> AsyncIterator[fakeredis.aioredis.FakeRedis]:
    client = fakeredis.aioredis.FakeRedis()
    yield client
    await client.aclose()


def throttle_on(client: Any, clock: ServerClock, **kwargs: Any) -> RedisThrottle:
    return RedisThrottle(client, clock=clock.clock, sleep=clock.sleep, **kwargs)


# --------------------------------------------------------------------------- the Lua, alone


async def lease(
    client: Any, want: int, *, interval: float = 100_000, slack: float = 0, horizon: float = 250_000
) -> list[int]:
    script = client.register_script(LEASE_SCRIPT)
    return [int(x) for x in await script(keys=KEYS, args=[interval, slack, want, horizon])]


async def pause(client: Any, microseconds: int) -> int:
    return int(await client.register_script(PAUSE_SCRIPT)(keys=KEYS[1:], args=[microseconds]))


async def test_lease_grants_the_slots_within_the_horizon(
    fake_redis: Any, clock: ServerClock
) -> None:
    # 10/s: slots at 0, 100 and 200 ms fall within 250 ms; the fourth does not.
    assert await lease(fake_redis, 5) == [3, 0, 0]
    assert float(await fake_redis.get(KEYS[0])) == EPOCH * 1e6 + 300_000
    assert await fake_redis.pttl(KEYS[0]) == 300  # gone once it no longer binds anyone
    # Nothing within the horizon: the offset of the next slot, and nothing taken.
    assert await lease(fake_redis, 5) == [0, 300_000, 0]
    assert float(await fake_redis.get(KEYS[0])) == EPOCH * 1e6 + 300_000
    clock.advance(0.1)
    assert await lease(fake_redis, 5) == [1, 200_000, 0]
    assert await lease(fake_redis, 1, horizon=10_000_000) == [1, 300_000, 0]  # want caps it


async def test_lease_allows_the_burst_back_to_back_then_the_rate(
    fake_redis: Any, clock: ServerClock
) -> None:
    # burst 5: slack = 4 intervals. Slot i at max(now, -400 ms + i * 100 ms): five at once.
    assert await lease(fake_redis, 10, slack=400_000, horizon=0) == [5, -400_000, 0]
    assert await lease(fake_redis, 10, slack=400_000, horizon=0) == [0, 100_000, 0]
    # Idle past the schedule: the key expires and the whole burst is there again.
    clock.advance(0.501)
    assert await fake_redis.exists(KEYS[0]) == 0
    assert await lease(fake_redis, 10, slack=400_000, horizon=0) == [5, -400_000, 0]


async def test_a_fractional_interval_survives_the_stored_schedule(
    fake_redis: Any, clock: ServerClock
) -> None:
    clock.advance(0.123457)  # a 16-digit microsecond clock: %.14g would round it
    assert (await lease(fake_redis, 3, interval=1e6 / 3, horizon=900_000))[0] == 3
    granted, first, _ = await lease(fake_redis, 1, interval=1e6 / 3, horizon=0)
    assert granted == 0
    assert abs(first - 1_000_000) <= 1


async def test_pause_the_later_deadline_wins_and_expires(
    fake_redis: Any, clock: ServerClock
) -> None:
    assert await pause(fake_redis, 2_000_000) == 2_000_000
    assert await pause(fake_redis, 1_000_000) == 2_000_000  # shorter: the later one stays
    assert await fake_redis.pttl(KEYS[1]) == 2000
    clock.advance(0.5)
    assert await lease(fake_redis, 5) == [0, 0, 1_500_000]  # paused: no slot leased
    assert await fake_redis.exists(KEYS[0]) == 0
    assert await pause(fake_redis, 3_000_000) == 3_000_000  # longer: it wins
    clock.advance(3.001)
    assert await fake_redis.exists(KEYS[1]) == 0
    assert await lease(fake_redis, 5) == [3, 0, 0]


async def test_lease_without_a_rate_only_reads_the_pause(
    fake_redis: Any, clock: ServerClock
) -> None:
    assert await lease(fake_redis, 0, interval=0) == [0, 0, 0]
    assert await fake_redis.exists(*KEYS) == 0
    await pause(fake_redis, 250_000)
    assert await lease(fake_redis, 0, interval=0) == [0, 0, 250_000]


async def test_a_schedule_that_rounds_back_to_now_still_gets_an_expiry(
    fake_redis: Any, clock: ServerClock
) -> None:
    # 1e7/s: 0.1 µs a slot, below a double's step near 1.8e15 µs, so tat rounds back to now.
    # Redis refuses PX 0 ("invalid expire time"): every expiry is at least 1 ms.
    clock.advance(0.123457)
    assert (await lease(fake_redis, 1, interval=0.1, horizon=20_000))[0] == 1
    assert await fake_redis.pttl(KEYS[0]) == 1


# --------------------------------------------------------------------------- the process side


def test_it_is_a_throttle_with_the_fast_path(fake_redis: Any) -> None:
    throttle = RedisThrottle(fake_redis)
    assert isinstance(throttle, Throttle)
    assert callable(throttle.try_acquire)
    assert throttle.paused_for == 0.0
    assert throttle.round_trips == 0


async def test_burst_then_the_rate(fake_redis: Any, clock: ServerClock) -> None:
    throttle = throttle_on(fake_redis, clock, rate_limit=10, burst=3)
    start = clock.clock()
    times = []
    for _ in range(6):
        await throttle.acquire()
        times.append(round(clock.clock() - start, 6))
    assert times == [0, 0, 0, 0.1, 0.2, 0.3]


async def test_leased_slots_are_taken_without_a_round_trip(
    fake_redis: Any, clock: ServerClock
) -> None:
    throttle = throttle_on(fake_redis, clock, rate_limit=100_000)
    for _ in range(500):
        if not throttle.try_acquire():
            await throttle.acquire()
    # The lease doubles while every slot is used: 2, 4, ... 64, then 64 a round trip.
    assert throttle.round_trips <= 15


async def test_a_leased_slot_unused_past_the_horizon_is_dropped(
    fake_redis: Any, clock: ServerClock
) -> None:
    throttle = throttle_on(fake_redis, clock, rate_limit=1000, horizon=0.02)
    await throttle.acquire()  # a lease of two: now and 1 ms from now
    assert throttle.round_trips == 1
    clock.advance(0.001 + 0.015)
    assert throttle.try_acquire()  # 15 ms late: still within the horizon
    await throttle.acquire()  # a lease of four: now, +1, +2 and +3 ms
    assert throttle.round_trips == 2
    clock.advance(0.001 + 0.025)
    # The other three, 23 to 25 ms late: dropped, never spent later in a burst.
    assert not throttle.try_acquire()
    await throttle.acquire()
    assert throttle.round_trips == 3


async def test_waiters_are_served_in_order_by_one_refill(
    fake_redis: Any, clock: ServerClock
) -> None:
    throttle = throttle_on(fake_redis, clock, rate_limit=100_000)
    order: list[int] = []

    async def one(i: int) -> None:
        await throttle.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(20)))
    assert order == list(range(20))
    assert throttle.round_trips == 1  # one refill leased a slot for every waiter


async def test_a_newcomer_does_not_jump_a_queue_the_lease_does_not_cover(
    fake_redis: Any, clock: ServerClock
) -> None:
    throttle = throttle_on(fake_redis, clock, rate_limit=10)
    await throttle.acquire()
    order: list[int] = []

    async def one(i: int) -> None:
        await throttle.acquire()
        order.append(i)

    waiters = [asyncio.create_task(one(i)) for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not throttle.try_acquire()  # three queued for slots 100 ms apart: none for it
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    assert clock.clock() - SKEW == pytest.approx(0.3)


async def test_a_loop_lagging_past_the_horizon_still_uses_its_answer(fake_redis: Any) -> None:
    # No limit. Every clock read 30 ms after the last, as in a process whose loop lags more
    # than the 20-ms horizon: each "not paused" answer had expired by the time its waiter
    # ran, and the waiter asked Redis again, for ever (a busy loop on Redis).
    ticks = [0.0]

    def lagging() -> float:
        ticks[0] += 0.03
        return ticks[0]

    async def sleep(seconds: float) -> None:
        ticks[0] += max(seconds, 0.0)
        await asyncio.sleep(0)

    throttle = RedisThrottle(fake_redis, clock=lagging, sleep=sleep)
    for _ in range(3):
        await asyncio.wait_for(throttle.acquire(), 5)
    assert throttle.round_trips <= 3


async def test_a_pause_holds_back_every_process_of_the_account(clock: ServerClock) -> None:
    server = fakeredis.FakeServer()
    first = fakeredis.aioredis.FakeRedis(server=server)
    other = fakeredis.aioredis.FakeRedis(server=server)
    try:
        got_429 = throttle_on(first, clock)  # no rate limit: only the shared cool-down
        elsewhere = throttle_on(other, clock)
        await elsewhere.acquire()  # "not paused", trusted for the horizon (20 ms)
        await got_429.pause(2.0)
        assert got_429.paused_for == pytest.approx(2.0)
        assert not got_429.try_acquire()
        assert elsewhere.try_acquire()  # within its horizon: the documented grace
        clock.advance(0.021)
        assert not elsewhere.try_acquire()
        start = clock.clock()
        await elsewhere.acquire()
        assert clock.clock() - start == pytest.approx(2.0 - 0.021, abs=1e-3)
    finally:
        await first.aclose()
        await other.aclose()


async def test_pause_ignores_what_is_not_a_positive_finite_number(fake_redis: Any) -> None:
    throttle = RedisThrottle(fake_redis)
    for seconds in (0, -1, float("nan"), float("inf"), "2"):
        await throttle.pause(seconds)  # type: ignore[arg-type]
    assert throttle.paused_for == 0.0
    assert throttle.round_trips == 0


async def test_a_cancelled_waiter_reserves_nothing(fake_redis: Any) -> None:
    throttle = RedisThrottle(fake_redis, rate_limit=4)  # real time: a slot every 250 ms
    start = time.monotonic()
    await throttle.acquire()
    schedule = await fake_redis.get(KEYS[0])
    waiter = asyncio.create_task(throttle.acquire())  # its slot is 250 ms away
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()  # CancelledError passed through
    assert await fake_redis.get(KEYS[0]) == schedule  # nothing was reserved for it
    await throttle.acquire()  # the next caller gets that very slot
    assert time.monotonic() - start < 0.45


async def test_an_error_answer_from_redis_fails_at_once(fake_redis: Any) -> None:
    await fake_redis.hset(KEYS[0], "x", "1")  # the schedule's key holds a hash
    throttle = RedisThrottle(fake_redis, rate_limit=10, unavailable_timeout=None)
    with pytest.raises(ThrottleUnavailableError, match="WRONGTYPE") as info:
        await throttle.acquire()
    assert isinstance(info.value, AcquireError)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("reply", [[b"many", 0, 0], [1, 2], None, [1, 2, 3, 4]])
async def test_a_reply_of_the_wrong_shape_fails_as_documented(fake_redis: Any, reply: Any) -> None:
    throttle = RedisThrottle(fake_redis, rate_limit=10)

    async def garbled(keys: Any, args: Any) -> Any:
        return reply

    throttle._lease_script = garbled  # type: ignore[assignment]  # a proxy, a wrong server
    with pytest.raises(ThrottleUnavailableError, match="answered the throttle's script"):
        await throttle.acquire()


async def test_aclose_ends_waiting_and_later_calls(fake_redis: Any) -> None:
    throttle = RedisThrottle(fake_redis, rate_limit=2)
    await throttle.acquire()
    waiter = asyncio.create_task(throttle.acquire())
    await asyncio.sleep(0.02)
    await throttle.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiter
    with pytest.raises(RuntimeError, match="closed"):
        await throttle.acquire()
    assert not throttle.try_acquire()
    await throttle.pause(1.0)  # never raises
    await throttle.aclose()  # idempotent
    assert await fake_redis.ping()  # a client it did not build stays open


async def test_a_throttle_built_from_a_url_closes_its_client(redis_server: RedisServer) -> None:
    async with Redis.from_url(redis_server.url) as watcher:
        async with RedisThrottle(redis_server.url, rate_limit=100) as throttle:
            await throttle.acquire()
            assert len(await watcher.client_list()) == 2  # the watcher and the throttle
        # The server notices a closed socket on its next turn: wait for it, a bounded while.
        for _ in range(100):
            if len(await watcher.client_list()) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(await watcher.client_list()) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"redis": 6379}, TypeError, "redis"),
        ({"redis": "http://127.0.0.1:6379"}, ValueError, "redis"),
        ({"rate_limit": "5"}, TypeError, "rate_limit"),
        ({"rate_limit": True}, TypeError, "rate_limit"),
        ({"rate_limit": 0}, ValueError, "rate_limit"),
        ({"rate_limit": float("inf")}, ValueError, "rate_limit"),
        ({"burst": 1.5}, TypeError, "burst"),
        ({"burst": 0}, ValueError, "burst"),
        ({"key": b"acquire"}, TypeError, "key"),
        ({"key": ""}, ValueError, "key"),
        ({"key": "a{b}"}, ValueError, "key"),
        ({"horizon": "0.02"}, TypeError, "horizon"),
        ({"horizon": 0}, ValueError, "horizon"),
        ({"horizon": float("nan")}, ValueError, "horizon"),
        ({"max_lease": 2.0}, TypeError, "max_lease"),
        ({"max_lease": 0}, ValueError, "max_lease"),
        ({"unavailable_timeout": "10"}, TypeError, "unavailable_timeout"),
        ({"unavailable_timeout": -1}, ValueError, "unavailable_timeout"),
        ({"clock": 1.0}, TypeError, "clock"),
        ({"sleep": None}, TypeError, "sleep"),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    arguments: dict[str, Any] = {"redis": "redis://127.0.0.1:1/0", **kwargs}
    with pytest.raises(error, match=name):
        RedisThrottle(**arguments)


SECRET = "s3cr3t-Pa55"


async def test_the_password_appears_in_no_repr_error_or_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    throttle = RedisThrottle(f"redis://:{SECRET}@127.0.0.1:{port}/0", unavailable_timeout=0.2)
    assert repr(throttle) == (
        f"RedisThrottle('127.0.0.1:{port}', key='acquire', rate_limit=None, burst=1)"
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        start = time.monotonic()
        with pytest.raises(ThrottleUnavailableError) as info:
            await asyncio.wait_for(throttle.acquire(), 10)
        assert 0.2 <= time.monotonic() - start < 2.0
        await throttle.pause(1.0)  # never raises: the pause stays here
    assert throttle.paused_for == pytest.approx(1.0, abs=0.2)
    await throttle.aclose()
    error = info.value
    assert f"127.0.0.1:{port}" in str(error) and "unreachable" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    seen = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        caplog.text,
        *(record.getMessage() for record in caplog.records),
    ]
    assert all(SECRET not in text for text in seen)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one for the outage, one for the pause kept in this process
    assert f"127.0.0.1:{port}" in warnings[0]
    with pytest.raises(ValueError, match="redis") as bad:
        RedisThrottle(f"redis://:{SECRET}@127.0.0.1:notaport/0")
    assert SECRET not in str(bad.value)
    assert bad.value.__cause__ is None and bad.value.__context__ is None


async def test_unavailable_timeout_zero_fails_at_the_first_failed_try() -> None:
    throttle = RedisThrottle(f"redis://127.0.0.1:{free_port()}/0", unavailable_timeout=0)
    with pytest.raises(ThrottleUnavailableError):
        await asyncio.wait_for(throttle.acquire(), 10)
    assert throttle.round_trips == 2  # the try, and the one at once for a stale connection
    await throttle.aclose()


# --------------------------------------------------------------------------- on real Redis

# A worker process: its own AcquireClient and RedisThrottle, joining its share of the ids
# once the test says go; prints what it did as one JSON line.
WORKER = r"""
import asyncio, json, sys

from acquire_async import AcquireClient
from acquire_async.contrib.redis import RedisThrottle


async def main() -> None:
    redis_url, base_url, api_key, first, count, rate, concurrency = sys.argv[1:8]
    throttle = RedisThrottle(redis_url, rate_limit=None if rate == "none" else float(rate))
    async with throttle, AcquireClient(
        api_key=api_key, base_url=base_url, throttle=throttle
    ) as client:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        ok, errors = 0, []
        ids = range(int(first), int(first) + int(count))
        async with client.join_many(ids, concurrency=int(concurrency)) as outcomes:
            async for outcome in outcomes:
                if outcome.ok:
                    ok += 1
                else:
                    errors.append(repr(outcome.error))
    print(json.dumps({"ok": ok, "errors": errors, "round_trips": throttle.round_trips}))


asyncio.run(main())
"""

FIRST_ID = 1000


async def run_workers(
    redis_url: str,
    fake: FakeAcquire,
    *,
    processes: int,
    per_process: int,
    rate: float | None,
    concurrency: int,
    during: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Start the worker processes, let them all go at once, and return their reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    try:
        for index in range(processes):
            args = [
                redis_url,
                fake.base_url,
                fake.api_key,
                str(FIRST_ID + index * per_process),
                str(per_process),
                "none" if rate is None else str(rate),
                str(concurrency),
            ]
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    WORKER,
                    *args,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                    env=env,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        side = asyncio.ensure_future(during()) if during is not None else None
        reports = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0
            reports.append(json.loads(out.decode().splitlines()[-1]))
        if side is not None:
            await side
        return reports
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any window (t - 1 s, t]: the worst window ends at an arrival."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def process_of(case_id: int | None, per_process: int) -> int:
    assert case_id is not None
    return (case_id - FIRST_ID) // per_process


@pytest.mark.slow
async def test_three_processes_share_one_rate_limit(redis_server: RedisServer) -> None:
    # 20/s over 120 joins: 6 s. At 20/s a slot is 50 ms apart, so the window bound R + burst
    # holds as long as a request reaches the emulator within 50 ms of its slot on the server
    # (slots are used at most `horizon`, 20 ms, late; the rest is loopback and loop lag).
    rate, per_process, processes = 20, 40, 3
    total = per_process * processes
    async with FakeAcquire(cases=total) as fake:
        reports = await run_workers(
            redis_server.url,
            fake,
            processes=processes,
            per_process=per_process,
            rate=rate,
            concurrency=4,
        )
        received = [r.received for r in fake.requests]
        senders = {process_of(r.case_id, per_process) for r in fake.requests}
    assert [(r["ok"], r["errors"]) for r in reports] == [(per_process, [])] * processes
    assert len(received) == total and senders == {0, 1, 2}
    assert busiest_second(received) <= rate + 1  # burst 1
    duration = max(received) - min(received)
    assert 0.8 * total / rate <= duration <= 1.5 * total / rate


@pytest.mark.slow
async def test_a_429_in_one_process_pauses_every_process(redis_server: RedisServer) -> None:
    rate, per_process, processes = 30, 40, 3
    total = per_process * processes
    # After the 429 reaches the emulator: its answer reaches the worker, which shares the
    # pause in one Redis round trip; another process may still hold a slot leased before
    # that (used at most 2 x horizon = 40 ms after the lease) and have one request in
    # flight. 100 ms more covers both round trips and the loop lag of a loaded 2-core box.
    grace = 2 * 0.02 + 0.1
    async with FakeAcquire(cases=total, faults=Faults(retry_after=2)) as fake:

        async def one_429() -> None:
            while len(fake.requests) < 30:
                await asyncio.sleep(0.005)
            fake.script([429])

        reports = await run_workers(
            redis_server.url,
            fake,
            processes=processes,
            per_process=per_process,
            rate=rate,
            concurrency=4,
            during=one_429,
        )
        requests = list(fake.requests)
    assert [(r["ok"], r["errors"]) for r in reports] == [(per_process, [])] * processes
    limited = [r for r in requests if r.status == 429]
    assert len(limited) == 1  # and its join was retried after the pause
    at = limited[0].received
    assert [r for r in requests if at + grace < r.received < at + 2.0] == []
    for index in range(processes):  # every process was sending before, and again after
        mine = [r.received for r in requests if process_of(r.case_id, per_process) == index]
        assert min(mine) < at < at + 2.0 <= max(mine)


async def join_all(client: AcquireClient, count: int, concurrency: int) -> list[Any]:
    ids = range(FIRST_ID, FIRST_ID + count)
    async with client.join_many(ids, concurrency=concurrency) as outcomes:
        return [outcome async for outcome in outcomes]


@pytest.mark.slow
async def test_redis_stopped_mid_run_holds_requests_back_then_they_resume(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    count = 100
    async with FakeAcquire(cases=count) as fake:
        async with RedisThrottle(redis_server.url, rate_limit=50) as throttle:
            async with AcquireClient(
                api_key=fake.api_key, base_url=fake.base_url, throttle=throttle
            ) as client:

                async def outage() -> tuple[float, float]:
                    while len(fake.requests) < 25:
                        await asyncio.sleep(0.005)
                    await asyncio.to_thread(redis_server.stop)
                    stopped = loop.time()
                    await asyncio.sleep(1.0)
                    restarting = loop.time()
                    await asyncio.to_thread(redis_server.start)
                    return stopped, restarting

                with caplog.at_level(logging.INFO, logger=LOGGER):
                    side = asyncio.ensure_future(outage())
                    outcomes = await join_all(client, count, concurrency=4)
                    stopped, restarting = await side
        received = [r.received for r in fake.requests]
    assert [o.case_id for o in outcomes if not o.ok] == []
    assert len(outcomes) == count == len(received)
    # Failed closed: nothing sent while Redis was down (past the slots leased before).
    assert [t for t in received if stopped + 0.1 < t < restarting] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"127.0.0.1:{redis_server.port} is unreachable" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("answers again" in message for message in infos)


async def test_an_outage_past_unavailable_timeout_fails_the_call(
    redis_server: RedisServer,
) -> None:
    loop = asyncio.get_running_loop()
    async with FakeAcquire(cases=1) as fake:
        async with RedisThrottle(
            redis_server.url, rate_limit=50, unavailable_timeout=0.5
        ) as throttle:
            async with AcquireClient(
                api_key=fake.api_key, base_url=fake.base_url, throttle=throttle
            ) as client:
                await asyncio.to_thread(redis_server.stop)
                start = loop.time()
                with pytest.raises(ThrottleUnavailableError) as info:
                    await asyncio.wait_for(client.join_chat(FIRST_ID), 10)
                elapsed = loop.time() - start
                assert client.stats.failed == 1
        assert fake.requests == []
    assert 0.5 <= elapsed < 3.0
    assert info.value.attempts == 0
    assert f"127.0.0.1:{redis_server.port}" in str(info.value)


async def test_a_restart_while_idle_costs_no_wait(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with RedisThrottle(redis_server.url, rate_limit=1000) as throttle:
        await throttle.acquire()
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)  # the pooled connection is now dead
        with caplog.at_level(logging.INFO, logger=LOGGER):
            start = time.monotonic()
            await throttle.acquire()
            await throttle.pause(0.01)
        assert time.monotonic() - start < 0.5
    assert caplog.records == []


@pytest.mark.slow
@pytest.mark.parametrize("rate", [1_000_000, None], ids=["far-above", "unlimited"])
async def test_a_fast_process_pays_far_less_than_a_round_trip_per_join(
    redis_server: RedisServer, rate: float | None
) -> None:
    count = 1500
    async with FakeAcquire(cases=count) as fake:
        async with RedisThrottle(redis_server.url, rate_limit=rate) as throttle:
            async with AcquireClient(
                api_key=fake.api_key, base_url=fake.base_url, throttle=throttle
            ) as client:
                outcomes = await join_all(client, count, concurrency=32)
    assert sum(o.ok for o in outcomes) == count
    per_join = throttle.round_trips / count
    print(f"round trips per join ({rate}): {per_join:.4f}")
    assert per_join < 0.1


async def test_a_rate_far_above_a_microsecond_acquires(redis_server: RedisServer) -> None:
    async with RedisThrottle(redis_server.url, rate_limit=1e7) as throttle:
        for _ in range(5):
            await asyncio.sleep(0.02)  # idle: the schedule falls behind now, base == now
            await asyncio.wait_for(throttle.acquire(), 5)
