"""``AcquireClient``: configuration, the pooled session, and the one way a join is made."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from . import _protocol, _transport
from ._bulk import JoinOutcome, JoinStream
from ._config import Timeouts, check_seconds
from ._retry import RetryBudget, RetryPolicy, retry_delay
from ._secrets import Redactor, Secret, validate_api_key
from ._slots import Slots
from ._stats import ClientStats, RequestEvent, ResponseEvent, RetryEvent
from ._throttle import LocalThrottle, Throttle
from ._version import __version__
from .errors import (
    AcquireError,
    AlreadyJoinedError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseDecodeError,
)
from .models import Case

__all__ = ["AcquireClient", "JoinResponse"]

log = logging.getLogger("acquire_async")

# A join answer is 3-6 KiB. 1 MiB bounds what a hostile body that still decodes can cost
# (a case whose free-form ``meta`` holds 100,000s of objects): about 30 ms of event loop and
# 25 MiB here, where 8 MiB cost 0.3 s and 194 MiB.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# How long past a call's deadline the backstop waits for the retry loop's own, more
# informative error (the last attempt's) before it reports a bare deadline timeout.
_DEADLINE_GRACE = 0.05
# Statuses whose Retry-After pauses the whole client, not just the call that got it.
_PAUSE = (429, 503)
_METHODS = ("POST", "GET")
_NO_RESPONSE = _protocol.RawResponse(0, {}, b"")
_DEFAULT_USER_AGENT = (
    f"acquire-async/{__version__} aiohttp/{aiohttp.__version__} python/{platform.python_version()}"
)


class JoinResponse(msgspec.Struct, frozen=True):
    """A join with everything the server sent: what ``join_chat_response`` returns.

    ``case`` is the decoded case; ``raw`` the exact body bytes (to read a field the models do
    not have yet, or to tell an absent field from ``null``); ``headers`` the response headers.
    """

    case: Case
    status: int
    headers: Mapping[str, str]
    raw: bytes
    attempts: int
    elapsed: float

    @property
    def request_id(self) -> str | None:
        """The server's request id header, when it sent one."""
        return _protocol.request_id(self.headers)


class AcquireClient:
    """An asyncio client for Acquire's Join Chat API, safe to share among thousands of tasks.

    Use it as an async context manager (or call :meth:`aclose`) so its connection pool closes::

        async with AcquireClient("mycompany", api_key) as client:
            case = await client.join_chat(1684)
            print(case.status, [u.user_id for u in case.users])

    ``account_id`` and ``api_key`` fall back to the environment variables
    ``ACQUIRE_ACCOUNT_ID`` and ``ACQUIRE_API_KEY``. ``account_id`` must be one DNS label (it
    becomes ``https://{account_id}.acquire.io/api/v1``); ``base_url`` replaces that URL (the
    emulator, a proxy) and makes ``account_id`` unnecessary.

    Keyword arguments:
        timeout: a :class:`Timeouts`, or a number of seconds for the total of one attempt.
        max_connections: size of the owned connection pool.
        max_concurrency: joins in flight at once across the whole client (default:
            ``max_connections``). Callers beyond it wait for a slot before their timers start.
        session: an ``aiohttp.ClientSession`` to borrow. It is used as is and never closed;
            the client's timeouts still apply to each request.
        join_method: ``"POST"`` (Acquire's last documented method) or ``"GET"``. On a ``405``
            the client tries the other method once and keeps it for its lifetime.
        user_agent: a product token put before the SDK's own ``User-Agent``.
        retry: a :class:`RetryPolicy` (``RetryPolicy.disabled()`` for none).
        rate_limit: requests per second for the whole client (``None``: no limit).
        throttle: a custom :class:`Throttle` (shared across processes, say); replaces
            ``rate_limit``.
        max_body_size: the largest response body read, in decompressed bytes (1 MiB).
        keepalive_timeout: seconds an idle pooled connection is kept for reuse (default 4,
            below common servers' idle timeouts: Node's 5 s). Owned session only.
        trust_env: let aiohttp read proxy settings from the environment (off by default).
        trace_configs: aiohttp ``TraceConfig``\\ s for the owned session (OpenTelemetry).
        on_request, on_response, on_retry: hooks called with a :class:`RequestEvent`,
            :class:`ResponseEvent`, :class:`RetryEvent`. They run inline: keep them fast.
    """

    def __init__(
        self,
        account_id: str | None = None,
        api_key: str | None = None,
        *,
        base_url: str | URL | None = None,
        timeout: Timeouts | float | None = None,
        max_connections: int = 100,
        max_concurrency: int | None = None,
        session: aiohttp.ClientSession | None = None,
        join_method: str = "POST",
        user_agent: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float | None = None,
        throttle: Throttle | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        keepalive_timeout: float | None = None,
        trust_env: bool = False,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        on_request: Callable[[RequestEvent], object] | None = None,
        on_response: Callable[[ResponseEvent], object] | None = None,
        on_retry: Callable[[RetryEvent], object] | None = None,
    ) -> None:
        # Validate everything before touching anything, so a bad argument never half-builds.
        if account_id is None and base_url is None:
            account_id = os.environ.get("ACQUIRE_ACCOUNT_ID") or None
        if api_key is None:
            api_key = os.environ.get("ACQUIRE_API_KEY") or None
            if api_key is None:
                raise ValueError("api_key is required (argument or env ACQUIRE_API_KEY)")
        secret = Secret(api_key)  # its type is checked just below
        # Before anything can raise: a traceback captured with its locals must not hold it.
        del api_key
        validate_api_key(secret)
        if not isinstance(join_method, str):
            raise TypeError(f"join_method must be a str, not {type(join_method).__name__}")
        method = join_method.upper()
        if method not in _METHODS:
            raise ValueError(f"join_method must be 'POST' or 'GET' (got {join_method!r})")
        _check_count("max_connections", max_connections)
        if max_concurrency is not None:
            _check_count("max_concurrency", max_concurrency)
        _check_count("max_body_size", max_body_size)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(f"session must be an aiohttp.ClientSession, not {type(session)}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if throttle is not None and not isinstance(throttle, Throttle):
            raise TypeError(
                "throttle must be a Throttle (async acquire() and pause(seconds)), "
                f"not {type(throttle).__name__}"
            )
        if throttle is not None and rate_limit is not None:
            raise ValueError("pass rate_limit or throttle, not both")
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        configs = _check_trace_configs(trace_configs)
        keepalive = check_seconds("keepalive_timeout", keepalive_timeout)
        if session is not None and (configs or trust_env or keepalive is not None):
            raise ValueError(
                "trace_configs, trust_env and keepalive_timeout configure the session the "
                "client creates; with session=..., set them on that session"
            )
        for name, hook in (
            ("on_request", on_request),
            ("on_response", on_response),
            ("on_retry", on_retry),
        ):
            _check_hook(name, hook)
        if session is not None and session.auth is not None:
            # aiohttp refuses to send both its auth and our Authorization header.
            raise ValueError("the borrowed session has auth= set; the client sends its own key")
        if user_agent is not None:
            if not isinstance(user_agent, str):
                raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")
            if not (user_agent.isascii() and user_agent.isprintable()):
                raise ValueError("user_agent must be printable ASCII")
        self._timeouts = Timeouts.coerce(timeout)
        endpoint = _protocol.build_endpoint(
            account_id=account_id,
            base_url=base_url,
            api_key=secret,
            user_agent=f"{user_agent} {_DEFAULT_USER_AGENT}" if user_agent else _DEFAULT_USER_AGENT,
        )
        self._url = endpoint.url
        self._url_str = str(endpoint.url)
        self._headers = endpoint.headers
        self._base_url = str(endpoint.url)[: -len(_protocol.JOIN_PATH)]
        self._method: str = method
        self._aiohttp_timeout = self._timeouts.to_aiohttp()
        self._max_connections = max_connections
        self._slots = Slots(max_concurrency or max_connections)
        self._retry = retry if retry is not None else RetryPolicy()
        self._budget = RetryBudget(self._retry)
        self._throttle: Throttle = throttle if throttle is not None else LocalThrottle(rate_limit)
        self._throttle_ready = (
            self._throttle.try_acquire if isinstance(self._throttle, LocalThrottle) else None
        )
        self._max_body_size = max_body_size
        self._keepalive = _transport.DEFAULT_KEEPALIVE if keepalive is None else keepalive
        self._trust_env = trust_env
        self._trace_configs = configs
        self._redactor = Redactor(secret)
        self._on_request = on_request
        self._on_response = on_response
        self._on_retry = on_retry
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._random = random.Random()
        self._sleep: Callable[[float], Any] = asyncio.sleep
        self.stats = ClientStats()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The API base URL this client talks to (no secret in it)."""
        return self._base_url

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` was called."""
        return self._closed

    @property
    def join_method(self) -> str:
        """The HTTP method joins use now (it changes once after a ``405``)."""
        return self._method

    def __repr__(self) -> str:
        # getattr: a traceback may repr a client whose constructor raised half-way.
        return f"AcquireClient(base_url={getattr(self, '_base_url', '?')!r})"

    async def __aenter__(self) -> AcquireClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned session (a borrowed one is left open). Safe to call twice."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if getattr(self, "_owns_session", False) and session is not None and not session.closed:
            # Only a warning: a task scheduled from __del__ could run on a dead loop.
            _warn(
                f"{self!r} was never closed; use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this AcquireClient is closed; create a new one")

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            self._check_open()
            session = self._session = _transport.create_session(
                url=self._url,
                max_connections=self._max_connections,
                timeout=self._aiohttp_timeout,
                trust_env=self._trust_env,
                trace_configs=self._trace_configs,
                keepalive_timeout=self._keepalive,
            )
        return session

    # ------------------------------------------------------------------ joins

    async def join_chat(
        self, case_id: int, *, ask_join: bool = True, timeout: float | None = None
    ) -> Case:
        """Join the chat ``case_id`` as the API key's agent and return the updated case.

        ``ask_join`` is sent as ``askJoin`` (Acquire does not document it; with ``True`` the
        agent shows up in ``users`` with status ``"joined"`` at once). ``timeout`` is a
        deadline in seconds across every attempt and backoff sleep of this call.

        Raises ``TypeError``/``ValueError`` for a bad ``case_id`` (before any I/O), and an
        :class:`~acquire_async.errors.AcquireError` subclass when the join fails.
        :class:`~acquire_async.errors.AlreadyJoinedError` means the agent is already in the
        chat. ``attempts > 1`` says this call retried: when an earlier attempt failed after
        its request was sent (a dropped connection, a timeout), that attempt probably joined
        and its answer was lost. It is a hint, not proof (a retried 503 changed nothing).

        Example::

            try:
                case = await client.join_chat(1684)
            except AlreadyJoinedError:
                pass
        """
        return (await self._join(*_call_args(case_id, ask_join, timeout))).case

    async def join_chat_response(
        self, case_id: int, *, ask_join: bool = True, timeout: float | None = None
    ) -> JoinResponse:
        """Like :meth:`join_chat`, but return a :class:`JoinResponse` with the raw body,
        status, headers, request id and attempt count as well as the case."""
        return await self._join(*_call_args(case_id, ask_join, timeout))

    def join_many(
        self,
        case_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        ask_join: bool = True,
        timeout: float | None = None,
    ) -> JoinStream:
        """Join many chats concurrently; yield one :class:`JoinOutcome` per id, as they finish.

        ``case_ids`` (an iterable or async iterable) is read lazily: at most ``concurrency``
        joins are in flight and memory stays bounded whatever its length. Every item yields
        exactly one outcome, invalid ones included (their ``error`` says why; nothing is sent).
        ``CHAT_ALREADY_JOINED`` counts as success (``ok`` and ``already_joined`` are true).

        Use it as an async context manager, so leaving the block early cancels the joins still
        in flight and returns their connections before the block ends::

            async with client.join_many(ids, concurrency=64) as outcomes:
                async for outcome in outcomes:
                    if not outcome.ok:
                        print(outcome.case_id, outcome.error)
        """
        _check_count("concurrency", concurrency)
        if not isinstance(ask_join, bool):
            raise TypeError(f"ask_join must be a bool, not {type(ask_join).__name__}")
        self._check_open()
        return JoinStream(
            self._join, case_ids, concurrency, ask_join, check_seconds("timeout", timeout)
        )

    async def join_all(
        self,
        case_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        ask_join: bool = True,
        timeout: float | None = None,
    ) -> list[JoinOutcome]:
        """Join a small batch and return all outcomes (in completion order) as a list."""
        async with self.join_many(
            case_ids, concurrency=concurrency, ask_join=ask_join, timeout=timeout
        ) as outcomes:
            return [outcome async for outcome in outcomes]

    def _join(
        self, case_id: int, ask_join: bool, timeout: float | None
    ) -> Coroutine[Any, Any, JoinResponse]:
        """One join, retried as the policy allows, within the call's deadline if it has one.

        A plain function that returns the coroutine to await: without a deadline that is
        the retry loop itself, so the hot path has no extra frame to resume at every event.
        """
        if timeout is None:
            return self._retry_loop(case_id, ask_join, None, [0])
        return self._join_by(case_id, ask_join, timeout)

    async def _join_by(self, case_id: int, ask_join: bool, timeout: float) -> JoinResponse:
        # The loop keeps to the deadline itself (attempt timeouts, no sleep past it); this
        # backstop also bounds the waits it cannot time: a concurrency slot, the throttle.
        sent = [0]
        loop = self._retry_loop(case_id, ask_join, time.monotonic() + timeout, sent)
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
        raise APITimeoutError(
            f"the call's deadline of {timeout:g}s passed",
            method=self._method,
            url=self._url_str,
            request_sent=sent[0] > 0,
            attempts=sent[0],
        )

    async def _retry_loop(
        self, case_id: int, ask_join: bool, deadline: float | None, sent: list[int]
    ) -> JoinResponse:
        """The one place a join is attempted, and attempted again if the policy allows.

        Each attempt takes a concurrency slot, passes the throttle, then starts its timers
        (so queueing is never a server timeout), sends, and decodes. The attempt is inline,
        not a helper coroutine: every frame on this path is resumed at each network event.
        ``sent[0]`` is the number of attempts sent, for the deadline backstop's error.
        """
        session = self._get_session()
        body = _protocol.join_body(case_id, ask_join)
        stats = self.stats
        slots = self._slots
        start = time.monotonic()
        attempt = 0
        switched = False
        reached = False  # did any attempt of this call reach the server?
        echoed = False  # did the server echo the key in this call's last error?
        while True:
            attempt += 1
            if self._closed:
                raise RuntimeError("this AcquireClient was closed while the join was under way")
            if not slots.try_take():
                await slots.take()
            status: int | None = None
            method = self._method
            started = time.monotonic()
            try:
                # A LocalThrottle with no cool-down or rate limit answers without an await.
                if self._throttle_ready is None or not self._throttle_ready():
                    await self._throttle.acquire()
                    method = self._method
                    started = time.monotonic()
                timeout = self._aiohttp_timeout if deadline is None else self._until(deadline)
                stats.requests += 1
                if self._on_request is not None:
                    self._on_request(RequestEvent(method, self._url_str, case_id, attempt))
                sent[0] = attempt
                raw = await _transport.send(
                    session,
                    method,
                    self._url,
                    headers=self._headers,
                    body=body,
                    timeout=timeout,
                    max_body_size=self._max_body_size,
                    on_replay=self._replayed,
                )
                status = raw.status
                stats.responses += 1
                stats.latencies.append(time.monotonic() - started)
                if status == 429:
                    stats.rate_limited += 1
                case = _protocol.decode_join(
                    status,
                    raw.headers,
                    raw.body,
                    method=method,
                    url=self._url_str,
                    now=time.time(),
                    reason=raw.reason,
                    case_id=case_id,
                )
            except AcquireError as exc:
                error = exc
                # Server text (a message, a body excerpt) may echo the key: masked here, once,
                # before any hook, log record or caller sees the error.
                echoed = self._redactor.scrub(error)
                if sent[0] == attempt:  # not for an attempt the deadline stopped before sending
                    stats.errors[type(exc).__name__] += 1
                    if status is None and isinstance(exc, ResponseDecodeError) and exc.status:
                        status = exc.status  # a response came, but its body was over the cap
                    self._attempt_done(method, case_id, attempt, status, started, exc)
            else:
                if self._on_response is not None or log.isEnabledFor(logging.DEBUG):
                    self._attempt_done(method, case_id, attempt, status, started, None)
                self._budget.refund()
                stats.joined += 1
                return JoinResponse(
                    case, status, raw.headers, raw.body, attempt, time.monotonic() - start
                )
            finally:
                slots.give()
            # Report what happened on the wire: attempts actually sent, and whether any of
            # them may have reached the server (then the join may have happened).
            error.attempts = sent[0]
            if not isinstance(error, APIConnectionError) or error.request_sent:
                reached = reached or sent[0] == attempt
            if isinstance(error, APIConnectionError):
                error.request_sent = reached
            if isinstance(error, APIStatusError) and error.status == 405 and not switched:
                # Once per call: the other method, which the whole client then keeps.
                switched = True
                self._use_other_method(error.method)
                continue
            if isinstance(error, APIStatusError) and error.retry_after and error.status in _PAUSE:
                # Past max_retry_after this call fails fast, but the pause stays bounded too.
                await self._throttle.pause(min(error.retry_after, self._retry.max_retry_after))
            remaining = None if deadline is None else deadline - time.monotonic()
            delay = retry_delay(
                self._retry, self._budget, error, attempt, self._random.random(), remaining
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
            if self._on_retry is not None:
                self._on_retry(RetryEvent(case_id, attempt, delay, error))
            del error  # not kept alive across the sleep
            await self._sleep(delay)

    def _replayed(self) -> None:
        """A request went out again on a fresh connection (``_transport.send``)."""
        self.stats.replayed += 1
        log.debug("replayed a request the server never saw: its pooled connection was closed")

    def _until(self, deadline: float) -> aiohttp.ClientTimeout:
        """This attempt's timeouts, its total cut to what is left before ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise APITimeoutError(
                "the call's deadline passed before this attempt",
                method=self._method,
                url=self._url_str,
                request_sent=False,
            )
        total = self._timeouts.total
        return self._timeouts.to_aiohttp(
            total=remaining if total is None else min(total, remaining)
        )

    def _attempt_done(
        self,
        method: str,
        case_id: int,
        attempt: int,
        status: int | None,
        started: float,
        error: AcquireError | None,
    ) -> None:
        if self._on_response is None and not log.isEnabledFor(logging.DEBUG):
            return
        elapsed = time.monotonic() - started
        log.debug(
            "join %s %s case=%d status=%s elapsed=%.1fms attempt=%d%s",
            method,
            self._url.path,
            case_id,
            status if status is not None else "-",
            elapsed * 1000,
            attempt,
            f" error={type(error).__name__}" if error is not None else "",
        )
        if self._on_response is not None:
            self._on_response(
                ResponseEvent(method, self._url_str, case_id, attempt, status, elapsed, error)
            )

    def _use_other_method(self, refused: str) -> None:
        """After a 405 to ``refused``, use the other method for the client's lifetime."""
        if self._method != refused:
            return  # a concurrent call switched already
        self._method = "GET" if refused == "POST" else "POST"
        log.warning(
            "the server answered 405 to %s %s; this client uses %s from now on",
            refused,
            self._url.path,
            self._method,
        )


def _call_args(
    case_id: object, ask_join: object, timeout: object
) -> tuple[int, bool, float | None]:
    """Check a join call's arguments before any I/O."""
    checked = _protocol.validate_case_id(case_id)
    if not isinstance(ask_join, bool):
        raise TypeError(f"ask_join must be a bool, not {type(ask_join).__name__}")
    return checked, ask_join, check_seconds("timeout", timeout)


def _check_hook(name: str, hook: object) -> None:
    if hook is None:
        return
    if not callable(hook):
        raise TypeError(f"{name} must be a callable or None, not {type(hook).__name__}")
    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise TypeError(
            f"{name} must be a plain function: hooks are called inline and never awaited "
            "(schedule a task from it for async work)"
        )


def _check_trace_configs(configs: object) -> tuple[aiohttp.TraceConfig, ...]:
    if configs is None:
        return ()
    if isinstance(configs, (str, bytes)) or not isinstance(configs, Iterable):
        raise TypeError(
            f"trace_configs must be a sequence of aiohttp.TraceConfig, not {type(configs).__name__}"
        )
    checked = tuple(configs)
    for item in checked:
        if not isinstance(item, aiohttp.TraceConfig):
            raise TypeError(
                f"trace_configs items must be aiohttp.TraceConfig, not {type(item).__name__}"
            )
    return checked


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (got {value})")
