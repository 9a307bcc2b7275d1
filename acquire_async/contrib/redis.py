"""`RedisThrottle`: one rate limit and one 429 cool-down for every process of an account.

A `Throttle` whose state lives in Redis, so ten worker processes on five
machines honour the account's limit together, and a `429`/`503` with `Retry-After` seen
by any of them holds all of them back. Plug it in with `AcquireClient(throttle=...)`; the
request path does not change. Needs the `redis` extra (`pip install
'acquire-async[redis]'`: `redis>=5`, its asyncio client).

How it works
------------
Two keys per account, `{key}:tat` (the rate schedule) and `{key}:pause` (the cool-down),
with a hash tag so both sit on one Redis Cluster slot. One Lua script does a refill in one
round trip: it reads the server's clock (`TIME`), checks the cool-down, and leases up to
`want` slots of the GCRA schedule (the in-process limiter's algorithm): slot *i* may be sent
at `max(now, tat + i * interval - slack)`, `slack = (burst - 1) * interval`; it grants the
slots that fall within `horizon` seconds from now, moves `tat` past them, and sets
expiries so an idle account leaves no keys behind. It answers in offsets from the server's
now, which the process adds to its own monotonic clock when the answer arrives: clocks skewed
between machines do not matter, and every slot is used at or after its time on the server.

- `want` is the number of local waiters, or more when the process used its last lease in
  full (doubling up to `max_lease`; halving when a slot went unused). So a process that can
  go faster than the limit pays about one round trip per `max_lease` requests, not one per
  request, and a slow one does not hoard.
- A leased slot not used within `horizon` seconds after its time is dropped, never spent
  later in a burst: that keeps the limit within a few percent over any 1-s window.
- No slot within the horizon: the script returns when the next one is due; the process
  sleeps until then and asks again. Nothing is reserved for a caller that may be cancelled;
  the price is that at a rate every process reaches, each waiting process asks about once
  per slot.
- `rate_limit=None`: only the shared cool-down. A "not paused" answer is trusted for
  `horizon` seconds, so an unlimited throttle costs about one round trip per horizon per
  process.
- `RedisThrottle.pause` sets `{key}:pause` in a second script, the later deadline
  winning (compare and set, with a `PX` expiry), on the server's clock; it applies in this
  process at once and drops its leased slots. Other processes learn of it at their next
  refill: within `horizon` plus a round trip.
- One refill in flight per process; waiters are served first come first served, like
  `LocalThrottle`. `CancelledError` always passes through, and a
  cancelled waiter reserves nothing further.

Every process of an account must use the same `rate_limit`, `burst` and `key`.

Redis unreachable: fail closed, by waiting
------------------------------------------
A rate limit that lets requests through while it cannot count them is no limit, and a local
fallback in each of ten processes is ten times the limit. So while Redis does not answer
(`ConnectionError`, `TimeoutError`, a restart), the throttle holds requests back and tries
again with a backoff of 50 ms growing to 1 s. It logs one warning per outage, naming Redis by
`host:port` (never its password), and an info line when Redis answers again; redis-py
reconnects on the next command, and a connection broken by a restart is retried at once. After
`unavailable_timeout` seconds of outage (`None`: wait forever) the waiting calls end with
`ThrottleUnavailableError`, an `AcquireError` that sent
nothing: a queue worker treats it as transient. An error *answer* from Redis (a wrong key
type, a denied command, a failed `AUTH`) raises it at once: waiting does not heal those.
`pause` never raises: with Redis down the cool-down stays in this process
and a warning says so.

Why our own script, not a limiter library
-----------------------------------------
throttled-py has a GCRA script on the Redis clock, and limits has fixed-, moving- and
sliding-window limiters on Redis with asyncio support (and a GCRA script in its newest code).
Both answer one question, "may this request (of cost *n*) go now?", all or nothing. Neither
grants "as many of *n* slots as fall within the next 20 ms, and when each may be sent", which
is what lets a worker lease slots instead of paying a round trip per request; neither returns
the exact offset of a slot, and neither has a shared cool-down, which would still be our own
script. Each adds a dependency for about twenty lines of Lua. Redis's own `GCRA` command is
not released, and the redis-cell module is not on Debian's or managed Redis.

Example:
    ```python
    from acquire_async import AcquireClient
    from acquire_async.contrib.redis import RedisThrottle

    async with RedisThrottle("redis://redis:6379/0", rate_limit=50) as throttle:
        async with AcquireClient("mycompany", key, throttle=throttle) as client:
            await client.join_chat(1684)
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

try:
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, AuthorizationError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "RedisThrottle needs the redis extra: pip install 'acquire-async[redis]'"
    ) from exc

from acquire_async._checks import check_count, check_rate_limit
from acquire_async.errors import ThrottleUnavailableError

__all__ = ["RedisThrottle"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Times in the scripts are server microseconds (TIME); numbers are stored with %.17g so a
# fractional interval survives the round trip through a string. Near 1.7e15 µs a double
# moves in steps of 0.25 µs, so above ~8e6/s `base + k * interval` can round back to `now`:
# every PX is at least 1 ms, as Redis refuses PX 0.
LEASE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local resume = tonumber(redis.call('GET', KEYS[2]) or 0)
if resume > now then
  return {0, 0, math.ceil(resume - now)}
end
local interval = tonumber(ARGV[1])
if interval <= 0 then
  return {0, 0, 0}
end
local base = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local first = base - tonumber(ARGV[2]) - now
local k = math.min(tonumber(ARGV[3]), math.floor((tonumber(ARGV[4]) - first) / interval) + 1)
if k < 1 then
  return {0, math.ceil(first), 0}
end
local tat = base + k * interval
local px = math.max(1, math.ceil((tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', px)
return {k, math.ceil(first), 0}
"""
"""Lease up to ARGV[3] slots within ARGV[4] µs. KEYS: the schedule, the cool-down. ARGV:
interval, slack, want, horizon (µs). Returns {granted, offset of slot 0 from now (µs; slot i
at max(0, offset + i * interval)), cool-down left (µs, 0 when none)}."""

PAUSE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local resume = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if resume > current then
  local px = math.max(1, math.ceil((resume - now) / 1000))
  redis.call('SET', KEYS[1], string.format('%.17g', resume), 'PX', px)
  current = resume
end
return math.ceil(current - now)
"""
"""Hold the account back for ARGV[1] µs unless a later deadline is set; returns the µs left."""

_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 1.0
# A script runs in microseconds: a call that takes this long means Redis is not answering.
_CALL_TIMEOUT = 2.0
_OUTAGE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
)
# What a patient call returns once every waiter has gone.
_NOBODY = object()
# Connection errors that waiting does not heal.
_REFUSED = (AuthenticationError, AuthorizationError)


if sys.version_info >= (3, 11):

    async def _bounded(aw: Awaitable[T]) -> T:
        async with asyncio.timeout(_CALL_TIMEOUT):
            return await aw

else:  # pragma: no cover - exercised by the Python 3.10 run

    async def _bounded(aw: Awaitable[T]) -> T:
        # Only ever awaited in the throttle's own tasks, which nothing but aclose cancels.
        return await asyncio.wait_for(aw, _CALL_TIMEOUT)


def _number(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} (got {value!r})")
    return float(value)


class RedisThrottle:
    """A `Throttle` shared through Redis by every process of an account.

    Args:
        redis: a Redis URL (`redis://[:password@]host:port/db`, `rediss://`,
            `unix://`), or a `redis.asyncio.Redis` you own (then `aclose` leaves it
            open). A client built from a URL gets 2-s socket timeouts and no retries of its
            own (the URL's query may set others); give yours socket timeouts too.
        rate_limit: requests per second for the whole account (`None`: no limit, only
            the shared cool-down).
        burst: how many requests may go back to back (GCRA's tolerance), as in
            `LocalThrottle`.
        key: the account's name in Redis: the keys are `{key}:tat` and `{key}:pause`
            (no `{` or `}` in it).
        horizon: seconds ahead a process may lease slots, how late past its time a leased
            slot may still be used, and how long "not paused" is trusted without a limit.
            Smaller: closer to the limit and quicker to learn of a cool-down, more round
            trips.
        max_lease: the most slots one round trip leases.
        unavailable_timeout: seconds of Redis outage after which waiting calls fail with
            `ThrottleUnavailableError` (`None`: wait for
            Redis forever; `0`: fail at the first failed try).
        clock: the monotonic clock and the sleep (for tests).
        sleep: See `clock`.

    A wrong type raises `TypeError`, a wrong value `ValueError`, before any I/O.

    Attributes:
        round_trips: Redis script calls made so far (refills, pauses, retries).

    Example:
        ```python
        throttle = RedisThrottle("redis://redis:6379/0", rate_limit=50, burst=5)
        async with throttle, AcquireClient("mycompany", key, throttle=throttle) as client:
            async with client.join_many(ids, concurrency=64) as outcomes:
                ...
        ```
    """

    __slots__ = (
        "_answered",
        "_client",
        "_clock",
        "_closed",
        "_down_since",
        "_dropped",
        "_horizon",
        "_horizon_us",
        "_interval",
        "_interval_us",
        "_keys",
        "_lease",
        "_lease_script",
        "_max_lease",
        "_next_at",
        "_open_until",
        "_owned",
        "_password",
        "_pause_script",
        "_queue",
        "_refill",
        "_resume_at",
        "_slack_us",
        "_sleep",
        "_slots",
        "_unavailable_timeout",
        "_where",
        "_writes",
        "burst",
        "key",
        "rate_limit",
        "round_trips",
    )

    def __init__(
        self,
        redis: str | Redis,
        *,
        rate_limit: float | None = None,
        burst: int = 1,
        key: str = "acquire",
        horizon: float = 0.02,
        max_lease: int = 64,
        unavailable_timeout: float | None = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        rate_limit = check_rate_limit(rate_limit)
        self.burst = check_count("burst", burst)
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if not key or "{" in key or "}" in key:
            raise ValueError(f"key must be a non-empty str without braces (got {key!r})")
        self._horizon = _number("horizon", horizon, allow_zero=False)
        self._max_lease = check_count("max_lease", max_lease)
        if unavailable_timeout is not None:
            unavailable_timeout = _number(
                "unavailable_timeout", unavailable_timeout, allow_zero=True
            )
        if not callable(clock):
            raise TypeError(f"clock must be a callable, not {type(clock).__name__}")
        if not callable(sleep):
            raise TypeError(f"sleep must be a callable, not {type(sleep).__name__}")
        if isinstance(redis, str):
            parsed: Redis | None = None
            with contextlib.suppress(ValueError, TypeError):
                parsed = Redis.from_url(
                    redis, socket_timeout=_CALL_TIMEOUT, socket_connect_timeout=_CALL_TIMEOUT
                )
            if parsed is None:
                # Raised out here, with no cause or context: the parser's message may quote
                # the URL, password included.
                raise ValueError(
                    "redis must be a Redis URL (redis://, rediss:// or unix://) "
                    "or a redis.asyncio.Redis; this URL could not be parsed"
                )
            client = parsed
            self._owned = True
        elif isinstance(redis, Redis):
            client = redis
            self._owned = False
        else:
            raise TypeError(
                f"redis must be a Redis URL (str) or a redis.asyncio.Redis, "
                f"not {type(redis).__name__}"
            )
        self._client = client
        options = client.connection_pool.connection_kwargs
        if "path" in options:
            self._where = f"unix:{options['path']}"
        else:
            self._where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
        password = options.get("password")
        self._password = password if isinstance(password, str) and password else None
        self.rate_limit = rate_limit
        self.key = key
        self._keys = (f"{{{key}}}:tat", f"{{{key}}}:pause")
        self._interval = 0.0 if rate_limit is None else 1.0 / rate_limit
        self._interval_us = self._interval * 1e6
        self._slack_us = (self.burst - 1) * self._interval_us
        self._horizon_us = self._horizon * 1e6
        self._unavailable_timeout = unavailable_timeout
        self._clock = clock
        self._sleep = sleep
        self._lease_script = client.register_script(LEASE_SCRIPT)
        self._pause_script = client.register_script(PAUSE_SCRIPT)
        self._slots: deque[float] = deque()  # local times of leased slots, oldest first
        self._queue: deque[asyncio.Future[None]] = deque()  # waiters, first come first served
        self._resume_at = 0.0  # the cool-down, on this process's clock
        self._open_until = 0.0  # no limit: "not paused" is trusted until then
        self._next_at = 0.0  # no slot within the horizon: ask again at this time
        self._lease = 1  # slots the next refill asks for, at least
        self._dropped = False  # a slot went unused since the last refill
        self._refill: asyncio.Task[None] | None = None
        self._answered = math.inf  # when the last refill's answer arrived (inf: in flight)
        self._writes: set[asyncio.Task[None]] = set()
        self._down_since: float | None = None
        self._closed = False
        self.round_trips = 0

    def __repr__(self) -> str:
        return (
            f"RedisThrottle({self._where!r}, key={self.key!r}, rate_limit={self.rate_limit!r}, "
            f"burst={self.burst})"
        )

    @property
    def paused_for(self) -> float:
        """Seconds left in the cool-down this process knows of (`0.0` when none)."""
        return max(0.0, self._resume_at - self._clock())

    # ------------------------------------------------------------------ taking a slot

    def try_acquire(self) -> bool:
        """Take a leased slot whose time has come, if no cool-down is known (`True`); else
        `False` and take nothing.

        No I/O: the client's fast path. It never jumps the queue of callers already waiting.
        """
        return not self._queue and self._take(self._clock())

    def _take(self, now: float) -> bool:
        if self._resume_at > now:
            return False
        if not self._interval:
            return self._open_until > now
        slots = self._slots
        while slots:
            due = slots[0]
            if due > now:
                return False
            slots.popleft()
            if now - due <= self._horizon:
                return True
            self._dropped = True  # too late: dropped, never spent in a burst later
        return False

    async def acquire(self) -> None:
        """Wait for the shared cool-down to end and for a slot of the shared rate schedule.

        Waiters queue first come first served; only the first one sleeps or asks Redis. While
        Redis is unreachable it waits (see the module's docs); after `unavailable_timeout`
        it raises `ThrottleUnavailableError`. `RuntimeError`
        once the throttle is closed.
        """
        if self.try_acquire():
            return
        if self._closed:
            raise RuntimeError("this RedisThrottle is closed")
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        # After a sleep or a refill, the time it waited for. A slot or a "not paused" answer
        # is judged at that time, not at a wake-up the loop delayed: with a loop that lags
        # more than the horizon (a busy process), every answer expired before its waiter ran,
        # and the waiter asked Redis again, forever.
        waited_for = math.inf
        try:
            if self._queue[0] is not turn:
                await turn  # wait to be first in line
            while True:
                if self._closed:
                    raise RuntimeError("this RedisThrottle was closed while a call waited")
                now = self._clock()
                if self._take(min(now, waited_for)):
                    return
                waited_for = math.inf
                due = self._slots[0] if self._slots else 0.0
                wait = max(self._resume_at, self._next_at, due) - now
                if wait > 0:
                    await self._sleep(wait)
                    waited_for = now + wait
                else:
                    await self._refilled()
                    waited_for = self._answered
        finally:
            first = self._queue[0] is turn
            self._queue.remove(turn)
            if first and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)  # the next in line takes over

    async def _refilled(self) -> None:
        """Wait for the refill in flight, starting one if there is none."""
        task = self._refill
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lease_once())
            task.add_done_callback(self._refill_done)
            self._refill = task
        # Not awaited directly: a cancelled waiter leaves the refill running for the next one.
        await asyncio.wait((task,))
        if task.cancelled():
            raise RuntimeError("this RedisThrottle was closed while a call waited")
        error = task.exception()
        if error is not None:
            raise error

    def _refill_done(self, task: asyncio.Task[None]) -> None:
        if self._refill is task:
            self._refill = None
        if not task.cancelled():
            task.exception()  # retrieved here even when every waiter has gone

    async def _lease_once(self) -> None:
        self._answered = math.inf
        want = 0
        if self._interval:
            # Grow the lease while the process uses every slot; shrink it when one goes unused.
            if self._dropped:
                self._lease = max(1, self._lease // 2)
            else:
                self._lease = min(self._max_lease, self._lease * 2)
            self._dropped = False
            want = min(self._max_lease, max(len(self._queue), self._lease))
        args = (self._interval_us, self._slack_us, want, self._horizon_us)
        reply = await self._call(self._lease_script, self._keys, args, patient=True)
        if reply is _NOBODY:
            return  # every waiter went away during an outage
        now = self._clock()  # the answer's offsets count from (just before) now
        self._answered = now
        try:
            granted, first, paused = (int(value) for value in reply)
        except (TypeError, ValueError):
            raise ThrottleUnavailableError(
                f"Redis at {self._where} answered the throttle's script with {reply!r:.100}"
            ) from None
        if paused > 0:
            self._hold(now + paused / 1e6)
        elif not self._interval:
            self._open_until = now + self._horizon
        elif granted > 0:
            interval = self._interval_us
            self._slots.extend(now + max(0.0, first + i * interval) / 1e6 for i in range(granted))
        else:
            self._next_at = now + (first - self._horizon_us) / 1e6

    # ------------------------------------------------------------------ the cool-down

    async def pause(self, seconds: float) -> None:
        """Hold back every process of the account for `seconds` (the later deadline wins).

        Applies here at once, then in Redis; other processes see it at their next refill.
        Never raises (the client awaits it while handling a 429): with Redis down the pause
        stays in this process and a warning is logged. Ignored unless finite and > 0.
        """
        try:
            if not (math.isfinite(seconds) and seconds > 0):
                return
        except TypeError:
            return
        self._hold(self._clock() + seconds)
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._share_pause(seconds))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        # Bounded, and a cancelled caller leaves the write running: the other processes still
        # need it, but the client's retry should not wait on a Redis that does not answer.
        await asyncio.wait((task,), timeout=_CALL_TIMEOUT)

    def _hold(self, until: float) -> None:
        if until > self._resume_at:
            self._resume_at = until
        self._slots.clear()  # a slot leased before the pause is not sent during it
        self._open_until = 0.0

    async def _share_pause(self, seconds: float) -> None:
        try:
            args = (math.ceil(seconds * 1e6),)
            left = int(await self._call(self._pause_script, self._keys[1:], args, patient=False))
        except Exception as exc:  # the engine's error path must not fail here
            log.warning(
                "the cool-down of %.3g s could not be shared through Redis at %s (%s); "
                "it holds back this process only",
                seconds,
                self._where,
                self._describe(exc),
            )
            return
        self._hold(self._clock() + left / 1e6)

    # ------------------------------------------------------------------ Redis calls

    async def _call(
        self,
        script: Callable[..., Awaitable[Any]],
        keys: Sequence[str],
        args: Sequence[float | int],
        *,
        patient: bool,
    ) -> Any:
        """Run a script. `patient`: through an outage, until `unavailable_timeout` (or
        `_NOBODY` once nobody waits); else one try (the outage error is raised)."""
        delay = _BACKOFF_FIRST
        # After a Redis restart the pooled connection is dead: its first command fails, the
        # next one reconnects. So a first failure outside an outage is retried at once.
        again = self._down_since is None
        while True:
            self.round_trips += 1
            error: ThrottleUnavailableError | None = None
            try:
                reply = await _bounded(script(keys=keys, args=args))
            except _REFUSED as exc:
                error = self._unavailable("refused the throttle", exc)
            except _OUTAGE as exc:
                if again:
                    again = False
                    continue
                now = self._clock()
                if self._down_since is None:
                    self._down_since = now
                    limit = self._unavailable_timeout
                    log.warning(
                        "Redis at %s is unreachable (%s): requests wait for it%s",
                        self._where,
                        self._describe(exc),
                        "" if limit is None else f", for {limit:g} s at most",
                    )
                if not patient:
                    raise
                if not self._queue:
                    return _NOBODY
                waited = now - self._down_since
                limit = self._unavailable_timeout
                if limit is not None and waited >= limit:
                    error = self._unavailable(
                        f"has been unreachable for {waited:.1f} s; no request was sent", exc
                    )
                else:
                    await self._sleep(delay if limit is None else min(delay, limit - waited))
                    delay = min(delay * 2, _BACKOFF_CAP)
                    continue
            except RedisError as exc:
                error = self._unavailable("answered the throttle with an error", exc)
            if error is not None:
                # Raised out of the handler: Redis's exception is neither cause nor context.
                raise error
            if self._down_since is not None:
                log.info(
                    "Redis at %s answers again after %.1f s; requests go on",
                    self._where,
                    self._clock() - self._down_since,
                )
                self._down_since = None
            return reply

    def _unavailable(self, what: str, exc: BaseException) -> ThrottleUnavailableError:
        return ThrottleUnavailableError(f"Redis at {self._where} {what} ({self._describe(exc)})")

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Stop the throttle's tasks; close the Redis client if it was built from a URL.

        Idempotent. Waiting calls end with `RuntimeError` (one asleep until a slot or the
        end of a cool-down, when it wakes); so do later ones.
        """
        if self._closed:
            return
        self._closed = True
        self._slots.clear()
        self._open_until = 0.0
        tasks = [task for task in (self._refill, *self._writes) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> RedisThrottle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
