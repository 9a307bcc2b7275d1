"""The one attempt loop: every operation of every client runs through `Engine.call`.

Theory of operation. A call is one operation (`_operations`) on one case, with its request
body already built. The engine makes *attempts* until one succeeds or the policy says stop:

1. take a concurrency slot (`Slots`; the fast path is a plain method call);
2. pass the throttle (its `try_acquire()` when it has one and can answer at once, else
   `await acquire()`): the rate limit and the cool-down after a 429/503;
3. start the attempt's timers only now, so queueing is never reported as a server timeout;
4. send through the transport (a stale pooled connection is replayed there, for free);
5. decode with the operation's codec, which returns the result or raises the call's error.

A failed attempt's error gets its request context here, in one place (operation, method, URL,
attempts, `request_sent`, request id), and the echoed API key masked. Then: a `405` on an
operation with two methods switches the client to the other, once; a 429/503 `Retry-After`
pauses the whole client through the throttle; and `retry_delay` (policy, budget, the
operation's retry safety, the deadline) says whether and when to try again.

The attempt is inline in `_attempts`, not a helper coroutine: every frame on this path is
resumed at each network event, and joins are the benchmarked hot path. A call with a deadline
runs the same loop under a backstop (`_call_by`) that also bounds the waits the loop cannot
time (a slot, the throttle).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

import msgspec
from yarl import URL

from . import _protocol
from ._bodies import endpoint_url
from ._operations import Operation
from ._retry import NOT_ACTED_STATUSES, RetryBudget, RetryPolicy, retry_delay
from ._secrets import Redactor
from ._slots import Slots
from ._stats import ClientStats, RequestEvent, ResponseEvent, RetryEvent
from ._throttle import Throttle
from ._transport import Transport
from .errors import (
    AcquireError,
    AlreadyJoinedError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ResponseDecodeError,
)

__all__ = ["Engine", "Response"]

T = TypeVar("T")

log = logging.getLogger("acquire_async")

# How long past a call's deadline the backstop waits for the loop's own, more informative
# error (the last attempt's) before it reports a bare deadline timeout.
_DEADLINE_GRACE = 0.05
# Statuses whose Retry-After pauses the whole client, not just the call that got it.
_PAUSE = (429, 503)
_NO_RESPONSE = _protocol.RawResponse(0, {}, b"")


class Response(msgspec.Struct, Generic[T], frozen=True):
    """A call's result with everything the server sent: what the `*_response` methods return.

    `data` is the decoded result (a `Case`, `Message` or `CloseResult`); `raw` the
    exact body bytes (to read a field the models do not have yet, or to tell an absent field
    from `null`); `headers` the response headers; `attempts` the HTTP attempts the call
    made; `elapsed` its seconds, retries included.

    Example:
        ```python
        response = await client.join_chat_response(1684)
        print(response.data.status, response.request_id, response.attempts)
        ```
    """

    data: T
    status: int
    headers: Mapping[str, str]
    raw: bytes
    attempts: int
    elapsed: float

    @property
    def request_id(self) -> str | None:
        """The server's request id header, when it sent one."""
        return _protocol.request_id(self.headers)


class _Route:
    """An operation as one client sends it: its URL and the method it uses now."""

    __slots__ = ("method", "op", "url", "url_str")

    def __init__(self, op: Operation[Any], url: URL) -> None:
        self.op = op
        self.url = url
        self.url_str = str(url)
        self.method = op.methods[0]


class Engine:
    """Runs operations for one client: slots, throttle, transport, codec, retries, stats, hooks.

    Built by `AcquireClient`; not part of the public API. `clock`, `sleep` and `random`
    are the seams tests use (the client's parameters of the same names).
    """

    __slots__ = (
        "_base",
        "_budget",
        "_clock",
        "_headers",
        "_now",
        "_on_request",
        "_on_response",
        "_on_retry",
        "_random",
        "_redactor",
        "_retry",
        "_routes",
        "_sleep",
        "_slots",
        "_throttle",
        "_throttle_ready",
        "_transport",
        "closed",
        "stats",
    )

    def __init__(
        self,
        *,
        transport: Transport,
        base_url: URL,
        headers: Mapping[str, str],
        retry: RetryPolicy,
        throttle: Throttle,
        max_concurrency: int,
        redactor: Redactor,
        stats: ClientStats,
        on_request: Callable[[RequestEvent], object] | None,
        on_response: Callable[[ResponseEvent], object] | None,
        on_retry: Callable[[RetryEvent], object] | None,
        clock: Callable[[], float],
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
        random: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._base = base_url
        self._headers = headers
        self._retry = retry
        self._budget = RetryBudget(retry)
        self._throttle = throttle
        # Looked up on the throttle itself: any implementation may offer the fast path.
        ready = getattr(throttle, "try_acquire", None)
        self._throttle_ready: Callable[[], bool] | None = ready if callable(ready) else None
        self._slots = Slots(max_concurrency)
        self._redactor = redactor
        self.stats = stats
        self._on_request = on_request
        self._on_response = on_response
        self._on_retry = on_retry
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._random = random
        self._routes: dict[str, _Route] = {}
        self.closed = False

    def route(self, op: Operation[Any]) -> _Route:
        """The client's route for `op` (made on first use)."""
        route = self._routes.get(op.name)
        if route is None:
            route = self._routes[op.name] = _Route(op, endpoint_url(self._base, op.path))
        return route

    def call(
        self, op: Operation[T], case_id: int, body: bytes, timeout: float | None
    ) -> Coroutine[Any, Any, Response[T]]:
        """One call, retried as the policy allows, within its deadline if it has one.

        A plain function that returns the coroutine to await: without a deadline that is the
        attempt loop itself, so the hot path has no extra frame to resume at every event.
        """
        route = self._routes.get(op.name) or self.route(op)
        if timeout is None:
            return self._attempts(route, case_id, body, None, [0, 0])
        return self._call_by(route, case_id, body, timeout)

    async def _call_by(
        self, route: _Route, case_id: int, body: bytes, timeout: float
    ) -> Response[Any]:
        # The loop keeps to the deadline itself (attempt timeouts, no sleep past it); this
        # backstop also bounds the waits it cannot time: a concurrency slot, the throttle.
        sent = [0, 0]  # attempts sent; whether one may have reached the server
        loop = self._attempts(route, case_id, body, self._clock() + timeout, sent)
        # Not asyncio.wait_for: on Python 3.10 and 3.11 it can return the result and drop
        # the caller's cancellation when both happen in the same step.
        if sys.version_info >= (3, 11):
            # In this very task; Task.uncancel bookkeeping lets an outside cancellation
            # that lands with the expiry propagate.
            try:
                async with asyncio.timeout(timeout + _DEADLINE_GRACE) as scope:
                    return await loop
            except TimeoutError:
                if not scope.expired():
                    raise  # not ours: a TimeoutError from inside (a hook's, say)
        else:  # pragma: no cover - exercised by the Python 3.10 run
            # 3.10 cannot tell two cancellations of one task apart, so the loop runs in a
            # child task: a CancelledError here is always the caller's, and passes on.
            child = asyncio.ensure_future(loop)
            try:
                await asyncio.wait({child}, timeout=timeout + _DEADLINE_GRACE)
            except asyncio.CancelledError:
                child.cancel()
                await asyncio.wait({child})
                raise
            if not child.done():
                child.cancel()
                await asyncio.wait({child})
            if not child.cancelled():
                return child.result()  # it finished (or failed) before the deadline
        self.stats.failed += 1
        error = APITimeoutError(
            f"the call's deadline of {timeout:g}s passed",
            request_sent=sent[1] > 0,
            attempts=sent[0],
        )
        _attach(error, route, route.method)
        raise error

    async def _attempts(
        self, route: _Route, case_id: int, body: bytes, deadline: float | None, sent: list[int]
    ) -> Response[Any]:
        """The one place an operation is attempted, and attempted again if the policy allows.

        `sent[0]` is the number of attempts sent, for the deadline backstop's error.
        """
        op = route.op
        stats = self.stats
        slots = self._slots
        transport = self._transport
        clock = self._clock
        start = clock()
        attempt = 0
        switched = False
        reached = False  # did any attempt of this call reach the server?
        echoed = False  # did the server echo the key in this call's last error?
        raw = _NO_RESPONSE
        while True:
            attempt += 1
            if self.closed:
                raise RuntimeError("this AcquireClient was closed while a call was under way")
            if not slots.try_take():
                await slots.take()
            status: int | None = None
            method = route.method
            started = clock()
            try:
                # The throttle's fast path answers without an await when it can.
                if self._throttle_ready is None or not self._throttle_ready():
                    await self._throttle.acquire()
                    method = route.method
                    started = clock()
                remaining: float | None = None
                if deadline is not None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise APITimeoutError(
                            "the call's deadline passed before this attempt", request_sent=False
                        )
                stats.requests += 1
                if self._on_request is not None:
                    self._on_request(RequestEvent(method, route.url_str, case_id, attempt, op.name))
                sent[0] = attempt
                sent[1] = 1  # in flight: it may reach the server until its outcome says
                raw = await transport.send(
                    method,
                    route.url,
                    self._headers,
                    body,
                    timeout=remaining,
                    idempotent=op.retry_safe,
                )
                status = raw.status
                stats.responses += 1
                stats.latencies.append(clock() - started)
                if status == 429:
                    stats.rate_limited += 1
                data = op.decode(
                    status,
                    raw.headers,
                    raw.body,
                    reason=raw.reason,
                    case_id=case_id,
                    now=self._now(),
                    codes=op.codes,
                )
            except AcquireError as exc:
                error = exc
                # Server text (a message, a body excerpt) may echo the key: masked here, once,
                # before any hook, log record or caller sees the error.
                echoed = self._redactor.scrub(error) or echoed  # raw may still hold an earlier echo
                if isinstance(error, APIError):
                    _attach(error, route, method)
                    if status is not None and error.request_id is None:
                        error.request_id = _protocol.request_id(raw.headers)
                if sent[0] == attempt:  # not for an attempt the deadline stopped before sending
                    stats.errors[type(exc).__name__] += 1
                    if status is None and isinstance(exc, ResponseDecodeError) and exc.status:
                        status = exc.status  # a response came, but its body was over the cap
                    self._attempt_done(route, method, case_id, attempt, status, started, exc)
            else:
                if self._on_response is not None or log.isEnabledFor(logging.DEBUG):
                    self._attempt_done(route, method, case_id, attempt, status, started, None)
                self._budget.refund()
                stats.succeeded[op.name] += 1
                return Response(data, status, raw.headers, raw.body, attempt, clock() - start)
            finally:
                slots.give()
            # Report what happened on the wire: attempts actually sent, and whether any of
            # them may have reached the server (then the operation may have happened).
            error.attempts = sent[0]
            if isinstance(error, APIError):
                # request_sent: may this call have acted? Not for a request that never left,
                # nor for an answer by which the server says it did not act (408, 429, 503).
                acted = error.request_sent and not (
                    isinstance(error, APIStatusError)
                    and (error.status in NOT_ACTED_STATUSES or error.status == 405)
                )
                reached = reached or (acted and sent[0] == attempt)
                error.request_sent = reached
                sent[1] = int(reached)
            if (
                isinstance(error, APIStatusError)
                and error.status == 405
                and not switched
                and len(op.methods) > 1
            ):
                # Once per call: the other method, which the whole client then keeps.
                switched = True
                self._use_other_method(route, method)
                continue
            if isinstance(error, APIStatusError) and error.retry_after and error.status in _PAUSE:
                # Past max_retry_after this call fails fast, but the pause stays bounded too.
                await self._throttle.pause(min(error.retry_after, self._retry.max_retry_after))
            left = None if deadline is None else deadline - clock()
            delay = retry_delay(
                self._retry, self._budget, error, attempt, self._random(), left, op.retry_safe
            )
            if delay is None:
                if isinstance(error, AlreadyJoinedError):
                    stats.already_joined += 1
                else:
                    stats.failed += 1
                if echoed:
                    # The echo is still in the frames' locals (the body in the codec's and in
                    # ``raw`` here): an error tracker capturing locals must not find it.
                    raw = _NO_RESPONSE
                    raise error.with_traceback(None)
                raise error
            stats.retries += 1
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "retrying %s case=%d after attempt %d (%s) in %.2fs",
                    op.name,
                    case_id,
                    attempt,
                    _reason(error),
                    delay,
                )
            if self._on_retry is not None:
                self._on_retry(RetryEvent(case_id, attempt, delay, error, op.name))
            del error  # not kept alive across the sleep
            await self._sleep(delay)

    def _attempt_done(
        self,
        route: _Route,
        method: str,
        case_id: int,
        attempt: int,
        status: int | None,
        started: float,
        error: AcquireError | None,
    ) -> None:
        if self._on_response is None and not log.isEnabledFor(logging.DEBUG):
            return
        elapsed = self._clock() - started
        log.debug(
            "%s %s %s case=%d status=%s elapsed=%.1fms attempt=%d%s",
            route.op.name,
            method,
            route.url.path,
            case_id,
            status if status is not None else "-",
            elapsed * 1000,
            attempt,
            f" error={type(error).__name__}" if error is not None else "",
        )
        if self._on_response is not None:
            self._on_response(
                ResponseEvent(
                    method, route.url_str, case_id, attempt, status, elapsed, error, route.op.name
                )
            )

    def _use_other_method(self, route: _Route, refused: str) -> None:
        """After a 405 to `refused`, use the operation's other method from now on."""
        if route.method != refused:
            return  # a concurrent call switched already
        others = [m for m in route.op.methods if m != refused]
        route.method = others[0]
        log.warning(
            "the server answered 405 to %s %s; this client uses %s from now on",
            refused,
            route.url.path,
            route.method,
        )


def _reason(error: AcquireError) -> str:
    """What failed, for the retry's log record: the class and, for an answer, its status."""
    status = getattr(error, "status", None)
    return f"{type(error).__name__} {status}" if isinstance(status, int) else type(error).__name__


def _attach(error: APIError, route: _Route, method: str) -> None:
    """The request context of a failed call's error, filled in one place."""
    error.operation = route.op.name
    error.method = method
    error.url = route.url_str
