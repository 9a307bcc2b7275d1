"""Shared pressure from the server: the cool-down gate and the rate limiter, behind one interface.

Every attempt passes the throttle right before it is sent: `throttle.try_acquire()` when the
throttle has that method and it says yes (no `await`, no coroutine), else
`await throttle.acquire()`. A `429`/`503` with
`Retry-After` calls `throttle.pause(seconds)`, which holds back *new* requests from the whole
client until then, instead of each task hitting the server on its own.

`Throttle` is the interface: a limiter shared by many worker processes (on Redis, say)
implements these two coroutines (and, if it can answer some calls at once, `try_acquire`) and
plugs in with `AcquireClient(throttle=…)`, without touching the request path.
`LocalThrottle` is the in-process implementation.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ._checks import check_rate_limit

__all__ = ["LocalThrottle", "Throttle"]


@runtime_checkable
class Throttle(Protocol):
    """Gate every attempt of a client.

    `acquire` returns when the next request may be sent (it may sleep); `pause` asks the
    gate to hold every new request for `seconds` from now (the longest pause wins).

    Optional: a plain method `try_acquire() -> bool` that takes a slot when no wait is needed
    (`True`) and otherwise takes nothing (`False`, then the client awaits `acquire`). The
    client looks it up on the throttle itself, so any implementation may offer this fast path;
    it is not part of the protocol's required members.

    Example, a throttle that never waits:

    ```python
    class Open:
        def try_acquire(self) -> bool:
            return True

        async def acquire(self) -> None:
            return None

        async def pause(self, seconds: float) -> None:
            return None

    AcquireClient("mycompany", key, throttle=Open())
    ```
    """

    async def acquire(self) -> None:
        """Wait until a request may be sent."""

    async def pause(self, seconds: float) -> None:
        """Hold back new requests for `seconds` from now."""


class LocalThrottle:
    """In-process `Throttle`: a cool-down gate plus an optional rate limit.

    `rate_limit` is requests per second (`None`: unlimited), enforced as a virtual
    schedule (GCRA, an exact token bucket): requests are spaced `1 / rate_limit` apart,
    with `burst` of them allowed back to back.

    Example:
        ```python
        AcquireClient(rate_limit=50)  # builds LocalThrottle(rate_limit=50)
        ```
    """

    __slots__ = ("_clock", "_interval", "_queue", "_resume_at", "_slack", "_sleep", "_tat")

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        rate_limit = check_rate_limit(rate_limit)
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int, not {type(burst).__name__}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1 (got {burst})")
        if not callable(clock):
            raise TypeError(f"clock must be a callable, not {type(clock).__name__}")
        if not callable(sleep):
            raise TypeError(f"sleep must be a callable, not {type(sleep).__name__}")
        self._interval = 0.0 if rate_limit is None else 1.0 / rate_limit
        self._slack = (burst - 1) * self._interval
        self._tat = 0.0  # the theoretical arrival time of the next request
        self._resume_at = 0.0
        self._clock = clock
        self._sleep = sleep
        # Callers that must wait, first come first served; only the first one sleeps.
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def paused_for(self) -> float:
        """Seconds left in the current cool-down (`0.0` when none)."""
        return max(0.0, self._resume_at - self._clock())

    def try_acquire(self) -> bool:
        """Take a slot now if no wait is needed (`True`); else `False`, take nothing.

        The client's fast path: with no cool-down and no rate limit this is one check, and
        the coroutine `acquire` is not even created. It never jumps the queue of
        callers already waiting.
        """
        return not self._queue and self._take()

    def _take(self) -> bool:
        if self._resume_at and self._resume_at > self._clock():
            return False
        if not self._interval:
            return True
        now = self._clock()
        if self._tat - now - self._slack > 0:
            return False
        self._tat = max(self._tat, now) + self._interval
        return True

    async def acquire(self) -> None:
        """Wait for the cool-down to end, then for this request's slot in the rate schedule.

        Waiters queue first come first served and only the first one sleeps, so a slot wakes
        one caller, not all of them. A slot is taken only by a caller that can go now: one
        cancelled (or timed out) while it waits reserves nothing for later callers to pay.
        """
        if self.try_acquire():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn  # wait to be first in line
            while not self._take():
                now = self._clock()
                wait = max(self._resume_at - now, self._tat - now - self._slack)
                await self._sleep(max(wait, 0.0))
        finally:
            first = self._queue[0] is turn
            self._queue.remove(turn)
            if first and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)  # the next in line takes over

    async def pause(self, seconds: float) -> None:
        """Hold back new requests for `seconds` (ignored unless finite and > 0)."""
        if math.isfinite(seconds) and seconds > 0:
            self._resume_at = max(self._resume_at, self._clock() + seconds)
