"""Pure tests of the retry policy, the retry budget and the throttle (no sockets, fake clock)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import acquire_async as aa
from acquire_async._retry import RetryBudget, retry_delay


def status_error(code: int, retry_after: float | None = None) -> aa.APIStatusError:
    cls = {429: aa.RateLimitError, 400: aa.BadRequestError}.get(
        code, aa.InternalServerError if code >= 500 else aa.APIStatusError
    )
    return cls("x", status=code, retry_after=retry_after)


@pytest.mark.parametrize(
    ("retry", "unit", "expected"),
    [(1, 0.0, 0.0), (1, 0.5, 0.125), (2, 0.5, 0.25), (3, 1.0, 1.0), (10, 1.0, 10.0)],
)
def test_full_jitter_backoff(retry: int, unit: float, expected: float) -> None:
    assert aa.RetryPolicy().backoff(retry, unit) == pytest.approx(expected)


def test_backoff_does_not_overflow() -> None:
    assert aa.RetryPolicy().backoff(10_000, 0.999) < 10.0


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (aa.APIConnectionError("reset"), True),
        (aa.APITimeoutError("slow"), True),
        (aa.APITLSError("bad cert"), False),
        (aa.ResponseDecodeError("html"), False),
        (status_error(408), True),
        (status_error(429), True),
        (status_error(500), True),
        (status_error(502), True),
        (status_error(503), True),
        (status_error(504), True),
        (status_error(501), False),
        (status_error(400), False),
        (aa.AuthenticationError("x", status=401), False),
        (aa.NotFoundError("x", status=400, code="ERROR_RECORD_NOT_FOUND"), False),
        (aa.AlreadyJoinedError("x", status=200, code="CHAT_ALREADY_JOINED"), False),
        (aa.InternalServerError("x", status=200, code="ERROR_SERVER_ERROR"), True),
    ],
)
def test_what_is_retried(error: aa.AcquireError, retryable: bool) -> None:
    assert aa.RetryPolicy().is_retryable(error) is retryable


def test_retry_delay_rules() -> None:
    policy = aa.RetryPolicy(max_attempts=3, max_retry_after=60)
    budget = RetryBudget(policy)
    err = status_error(503)
    assert retry_delay(policy, budget, err, 1, 0.5, None) == pytest.approx(0.125)
    assert retry_delay(policy, budget, err, 3, 0.5, None) is None  # attempts used up
    assert retry_delay(policy, budget, status_error(429, 7.0), 1, 0.5, None) == 7.0
    assert retry_delay(policy, budget, status_error(429, 61.0), 1, 0.5, None) is None
    assert retry_delay(policy, budget, status_error(429, 7.0), 1, 0.5, 5.0) is None
    assert retry_delay(policy, budget, status_error(400), 1, 0.5, None) is None


def test_budget_caps_retries_and_refills_on_success() -> None:
    policy = aa.RetryPolicy(budget=50, retry_cost=5, timeout_cost=10, success_refund=1)
    budget = RetryBudget(policy)
    err = status_error(503)
    assert sum(retry_delay(policy, budget, err, 1, 0.1, None) is not None for _ in range(20)) == 10
    assert retry_delay(policy, budget, err, 1, 0.1, None) is None
    for _ in range(5):
        budget.refund()
    assert retry_delay(policy, budget, err, 1, 0.1, None) is not None
    budget.tokens = 9
    assert not budget.try_spend(aa.APITimeoutError("slow"))  # a timeout costs 10
    assert budget.try_spend(err)
    for _ in range(1000):
        budget.refund()
    assert budget.tokens == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"backoff_base": -1},
        {"backoff_cap": math.nan},
        {"max_retry_after": math.inf},
        {"budget": -5},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        aa.RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # Text is an iterable of characters: "503" used to match no status and silently
        # turn retries off.
        ({"retry_statuses": "503"}, TypeError, "retry_statuses must be an iterable"),
        ({"retry_statuses": b"503"}, TypeError, "retry_statuses must be an iterable"),
        ({"retry_statuses": 503}, TypeError, "retry_statuses must be an iterable"),
        ({"retry_statuses": None}, TypeError, "retry_statuses must be an iterable"),
        ({"retry_statuses": ["503"]}, TypeError, "retry_statuses items must be ints"),
        ({"retry_statuses": [503.0]}, TypeError, "retry_statuses items must be ints"),
        ({"retry_statuses": [True]}, TypeError, "retry_statuses items must be ints"),
        ({"retry_statuses": [503, 99]}, ValueError, "100..599"),
        ({"retry_statuses": [600]}, ValueError, "100..599"),
        ({"retry_statuses": [-503]}, ValueError, "100..599"),
        ({"max_attempts": "3"}, TypeError, "max_attempts must be an int, not str"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int, not bool"),
        ({"backoff_base": "0.5"}, TypeError, "backoff_base must be a number, not str"),
        ({"backoff_cap": None}, TypeError, "backoff_cap must be a number"),
        ({"max_retry_after": True}, TypeError, "max_retry_after must be a number"),
        ({"budget": "500"}, TypeError, "budget must be a number"),
        ({"retry_cost": [5]}, TypeError, "retry_cost must be a number"),
        ({"timeout_cost": b"1"}, TypeError, "timeout_cost must be a number"),
        ({"success_refund": "1"}, TypeError, "success_refund must be a number"),
        ({"success_refund": -1}, ValueError, "success_refund must be >= 0"),
        ({"timeout_cost": math.nan}, ValueError, "timeout_cost must be a finite number"),
    ],
)
def test_policy_wrong_type_is_type_error_wrong_value_is_value_error(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        aa.RetryPolicy(**kwargs)
    assert type(info.value) is error


@pytest.mark.parametrize(
    "statuses", [[503], (503, 429), {503}, frozenset({503}), range(500, 505), iter([503])]
)
def test_policy_takes_any_iterable_of_statuses(statuses: Any) -> None:
    policy = aa.RetryPolicy(retry_statuses=statuses)
    assert type(policy.retry_statuses) is frozenset
    assert 503 in policy.retry_statuses
    assert policy.is_retryable(status_error(503))
    assert aa.RetryPolicy(retry_statuses=()).retry_statuses == frozenset()


def test_policy_is_a_frozen_value() -> None:
    policy = aa.RetryPolicy(retry_statuses={503})  # type: ignore[arg-type]
    assert policy.retry_statuses == frozenset({503})
    assert aa.RetryPolicy.disabled().max_attempts == 1
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


async def test_throttle_rate_limit_spaces_requests() -> None:
    t = FakeTime()
    throttle = aa.LocalThrottle(rate_limit=10, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(5):
        await throttle.acquire()
        starts.append(t.now)
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


async def test_throttle_burst() -> None:
    t = FakeTime()
    throttle = aa.LocalThrottle(rate_limit=10, burst=3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await throttle.acquire()
    assert t.now == 0.0
    await throttle.acquire()
    assert t.now == pytest.approx(0.1)


async def test_throttle_pause_longest_wins_and_bad_values_ignored() -> None:
    t = FakeTime()
    throttle = aa.LocalThrottle(clock=t.clock, sleep=t.sleep)
    await throttle.pause(2.0)
    await throttle.pause(1.0)
    await throttle.pause(math.nan)
    await throttle.pause(-3)
    assert throttle.paused_for == 2.0
    await throttle.acquire()
    assert t.now == pytest.approx(2.0)
    await throttle.acquire()
    assert t.now == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"burst": "3"}, TypeError, "burst must be an int, not str"),
        ({"burst": 3.0}, TypeError, "burst must be an int, not float"),
        ({"burst": True}, TypeError, "burst must be an int, not bool"),
        ({"burst": None}, TypeError, "burst must be an int"),
        ({"burst": 0}, ValueError, "burst must be >= 1"),
        ({"burst": -2}, ValueError, "burst must be >= 1"),
        ({"rate_limit": "5"}, TypeError, "rate_limit must be a number"),
        ({"rate_limit": True}, TypeError, "rate_limit must be a number"),
        ({"rate_limit": 0}, ValueError, "rate_limit must be a finite number > 0"),
        ({"rate_limit": math.inf}, ValueError, "rate_limit must be a finite number > 0"),
        ({"clock": 0.0}, TypeError, "clock must be a callable"),
        ({"sleep": None}, TypeError, "sleep must be a callable"),
    ],
)
def test_throttle_wrong_type_is_type_error_wrong_value_is_value_error(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        aa.LocalThrottle(**kwargs)
    assert type(info.value) is error


def test_throttle_is_the_interface() -> None:
    assert isinstance(aa.LocalThrottle(), aa.Throttle)
    with pytest.raises(ValueError):
        aa.LocalThrottle(rate_limit=0)
    with pytest.raises(TypeError):
        aa.LocalThrottle(rate_limit="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        aa.AcquireClient(
            api_key="k", base_url="http://x/api", rate_limit=5, throttle=aa.LocalThrottle()
        )


async def test_custom_throttle_plugs_in() -> None:
    from faultserver import FaultServer

    class Counting:
        def __init__(self) -> None:
            self.acquired = 0
            self.paused: list[float] = []

        async def acquire(self) -> None:
            self.acquired += 1

        async def pause(self, seconds: float) -> None:
            self.paused.append(seconds)

    from faultserver import status

    gate = Counting()
    async with FaultServer(script=[status(503, {"Retry-After": "0.01"})]) as server:
        async with aa.AcquireClient(api_key="k", base_url=server.base_url, throttle=gate) as c:
            await c.join_chat(1)
    assert gate.acquired == 2
    assert gate.paused == [0.01]


def test_stats_percentiles() -> None:
    stats = aa.ClientStats()
    assert stats.percentile(50) is None
    stats.latencies.extend([0.001 * i for i in range(1, 101)])
    assert stats.percentile(50) == pytest.approx(0.050)
    assert stats.percentile(99) == pytest.approx(0.099)
    assert stats.percentile(100) == pytest.approx(0.100)
    with pytest.raises(ValueError):
        stats.percentile(101)
    assert stats.as_dict()["latency_ms"]["p95"] == pytest.approx(95.0)


async def test_cancelled_waiters_reserve_no_rate_slots() -> None:
    throttle = aa.LocalThrottle(rate_limit=20)  # a slot every 50 ms
    await throttle.acquire()
    waiters = [asyncio.ensure_future(throttle.acquire()) for _ in range(40)]
    await asyncio.sleep(0.01)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await throttle.acquire()
    # 40 reserved-and-abandoned slots would make this wait 2 s.
    assert loop.time() - started < 0.5


async def test_rate_limit_waiters_queue_instead_of_stampeding() -> None:
    t = FakeTime()
    throttle = aa.LocalThrottle(rate_limit=1000, clock=t.clock, sleep=t.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        await throttle.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(50)))
    assert order == list(range(50))  # first come, first served
    # One sleep per slot for the waiter at the head, not a wake-up of every waiter per slot
    # (which would be about 50 * 49 / 2 = 1,225 sleeps).
    assert len(t.sleeps) <= 60
    assert t.now == pytest.approx(0.049)
