"""`AcquireClient`: configuration, lifecycle, and one short method per operation.

Every call goes through the engine (`_engine`): the methods here check their arguments before
any I/O, build the request body with the codec, and hand the operation to the engine.
"""

from __future__ import annotations

import asyncio
import os
import random as _random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from yarl import URL

from . import _bodies
from ._bulk import JoinOutcome, JoinStream
from ._checks import (
    check_base_url,
    check_bool,
    check_count,
    check_hook,
    check_optional_bool,
    check_optional_text,
    check_text,
    resolve_base_url,
    validate_case_id,
)
from ._config import Timeouts, check_seconds
from ._engine import Engine, Response
from ._operations import ADD_MESSAGE, CLOSE_CHAT, JOIN_CHAT, REJECT_CHAT
from ._retry import RetryPolicy
from ._secrets import Redactor, Secret, validate_api_key
from ._stats import ClientStats, RequestEvent, ResponseEvent, RetryEvent
from ._throttle import LocalThrottle, Throttle
from ._transport import DEFAULT_MAX_BODY_SIZE, USER_AGENT, AiohttpTransport, Transport
from ._version import __version__
from .models import Case, CloseResult, Message

if TYPE_CHECKING:  # only the transport layer imports aiohttp's client machinery
    import aiohttp

__all__ = ["AcquireClient"]

_METHODS = ("POST", "GET")
_DEFAULT_USER_AGENT = f"acquire-async/{__version__} {USER_AGENT}"


class AcquireClient:
    """An asyncio client for the Acquire API, safe to share among thousands of tasks.

    Use it as an async context manager (or call `aclose`) so its connection pool closes:

    ```python
    async with AcquireClient("mycompany", api_key) as client:
        case = await client.join_chat(1684)
        await client.add_message(1684, "Hello! How can I help?")
    ```

    A client belongs to the event loop it is first used on (its connection pool does): using
    it from another loop raises `RuntimeError`. Create one per loop, where the loop lives:
    an app's lifespan or `cleanup_ctx`, a worker's `main()`.

    `account_id` and `api_key` fall back to the environment variables
    `ACQUIRE_ACCOUNT_ID` and `ACQUIRE_API_KEY`. `account_id` must be one DNS label (it
    becomes `https://{account_id}.acquire.io/api/v1`); `base_url` replaces that URL (the
    emulator, a proxy) and makes `account_id` unnecessary.

    Keyword arguments:
        timeout: a `Timeouts`, or a number of seconds for the total of one attempt.
        max_connections: size of the owned connection pool (100).
        max_concurrency: calls in flight at once across the whole client (default:
            `max_connections`). Callers beyond it wait for a slot before their timers start.
        session: an `aiohttp.ClientSession` to borrow. It is used as is and never closed;
            the client's timeouts still apply to each request.
        transport: a `Transport` to send requests with instead of the built-in
            `AiohttpTransport` (`acquire_async.testing.MockTransport` in unit tests).
            It excludes the arguments that configure the built-in one (`timeout`,
            `max_connections`, `session`, `max_body_size`, `keepalive_timeout`,
            `trust_env`, `trace_configs`).
        join_method: `"POST"` (Acquire's last documented method) or `"GET"`. On a `405`
            the client tries the other method once and keeps it for its lifetime.
        user_agent: a product token put before the SDK's own `User-Agent`.
        retry: a `RetryPolicy` (`RetryPolicy.disabled()` for none).
        rate_limit: requests per second for the whole client (`None`: no limit).
        throttle: a custom `Throttle` (shared across processes, say); replaces
            `rate_limit`.
        max_body_size: the largest response body read, in decompressed bytes (1 MiB).
        keepalive_timeout: seconds an idle pooled connection is kept for reuse (default 4,
            below common servers' idle timeouts: Node's 5 s). Owned session only.
        trust_env: let aiohttp read proxy settings from the environment (off by default).
        trace_configs: aiohttp `TraceConfig` objects for the owned session (OpenTelemetry).
        on_request: a hook called with a `RequestEvent` right before each attempt. Hooks
            run inline: keep them fast.
        on_response: a hook called with a `ResponseEvent` after each attempt that ended
            with a response or an error.
        on_retry: a hook called with a `RetryEvent` before the client sleeps and tries again.
        clock: the monotonic clock of deadlines and latencies (a seam for tests).
        sleep: the backoff sleep (a seam for tests).
        random: the source of jitter in [0, 1) (a seam for tests).
    """

    def __init__(
        self,
        account_id: str | None = None,
        api_key: str | None = None,
        *,
        base_url: str | URL | None = None,
        timeout: Timeouts | float | None = None,
        max_connections: int | None = None,
        max_concurrency: int | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        join_method: str = "POST",
        user_agent: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float | None = None,
        throttle: Throttle | None = None,
        max_body_size: int | None = None,
        keepalive_timeout: float | None = None,
        trust_env: bool = False,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        on_request: Callable[[RequestEvent], object] | None = None,
        on_response: Callable[[ResponseEvent], object] | None = None,
        on_retry: Callable[[RetryEvent], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        # Validate everything before touching anything, so a bad argument never half-builds.
        if account_id is None and base_url is None:
            # The environment, as the arguments: a base URL (an emulator, a gateway) before an
            # account id, so that one variable points any app at the emulator.
            env_url = os.environ.get("ACQUIRE_BASE_URL") or None
            if env_url is not None:
                try:
                    base_url = check_base_url(env_url)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"env ACQUIRE_BASE_URL: {exc}") from None
            else:
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
        if max_concurrency is not None:
            check_count("max_concurrency", max_concurrency)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if throttle is not None and not isinstance(throttle, Throttle):
            raise TypeError(
                "throttle must be a Throttle (async acquire() and pause(seconds)), "
                f"not {type(throttle).__name__}"
            )
        if throttle is not None and rate_limit is not None:
            raise ValueError("pass rate_limit or throttle, not both")
        if user_agent is not None:
            if not isinstance(user_agent, str):
                raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")
            if not (user_agent.isascii() and user_agent.isprintable()):
                raise ValueError("user_agent must be printable ASCII")
        for name, hook in (
            ("on_request", on_request),
            ("on_response", on_response),
            ("on_retry", on_retry),
        ):
            check_hook(name, hook)
        for name, seam in (("clock", clock), ("sleep", sleep), ("random", random)):
            if not callable(seam):
                raise TypeError(f"{name} must be a callable, not {type(seam).__name__}")
        stats = ClientStats()
        if transport is None:
            transport = AiohttpTransport(
                timeouts=timeout,
                max_connections=100 if max_connections is None else max_connections,
                keepalive_timeout=keepalive_timeout,
                max_body_size=DEFAULT_MAX_BODY_SIZE if max_body_size is None else max_body_size,
                trust_env=trust_env,
                trace_configs=trace_configs,
                session=session,
                on_replay=stats.note_replay,
            )
        else:
            if not isinstance(transport, Transport):
                raise TypeError(
                    "transport must be a Transport (async send(...) and aclose()), "
                    f"not {type(transport).__name__}"
                )
            given = {
                "timeout": timeout is not None,
                "max_connections": max_connections is not None,
                "session": session is not None,
                "max_body_size": max_body_size is not None,
                "keepalive_timeout": keepalive_timeout is not None,
                "trust_env": trust_env is not False,
                "trace_configs": trace_configs is not None,
            }
            clash = [name for name, set_ in given.items() if set_]
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} {'configures' if len(clash) == 1 else 'configure'} "
                    "the built-in transport; "
                    "with transport=..., configure that transport instead"
                )
        base = resolve_base_url(account_id, base_url)
        headers = _bodies.request_headers(
            secret, f"{user_agent} {_DEFAULT_USER_AGENT}" if user_agent else _DEFAULT_USER_AGENT
        )
        self._base_url = str(base).rstrip("/")
        self._transport = transport
        self._closed = False
        # The event loop of the first call: aiohttp's session, the pool and the engine's
        # asyncio primitives all belong to it, and fail obscurely (or hang) on another one.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine = Engine(
            transport=transport,
            base_url=base,
            headers=headers,
            retry=retry if retry is not None else RetryPolicy(),
            throttle=(throttle if throttle is not None else LocalThrottle(rate_limit, clock=clock)),
            max_concurrency=max_concurrency
            or (100 if max_connections is None else max_connections),
            redactor=Redactor(secret),
            stats=stats,
            on_request=on_request,
            on_response=on_response,
            on_retry=on_retry,
            clock=clock,
            now=time.time,
            sleep=sleep,
            random=random,
        )
        self._engine.route(JOIN_CHAT).method = method
        self.stats = stats

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The API base URL this client talks to (no secret in it)."""
        return self._base_url

    @property
    def transport(self) -> Transport:
        """The `Transport` this client sends with (an `AiohttpTransport` unless
        one was given)."""
        return self._transport

    @property
    def closed(self) -> bool:
        """`True` once `aclose` was called."""
        return self._closed

    @property
    def join_method(self) -> str:
        """The HTTP method joins use now (it changes once after a `405`)."""
        return self._engine.route(JOIN_CHAT).method

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
        """Close the transport (a borrowed session is left open). Safe to call twice.

        On the event loop the client was used on: its connections belong to that loop, so
        closing it from another one raises `RuntimeError` (and closes nothing).
        """
        # A coroutine always runs under a loop: no "no running loop" case here.
        bound = self._loop
        if bound is not None and bound is not asyncio.get_running_loop() and not self._closed:
            # Not marked closed: an aclose() on the right loop must still close it.
            raise RuntimeError(
                "this AcquireClient was used on another event loop and must be closed "
                "there (inside the same asyncio.run(), e.g. with 'async with')"
            )
        self._closed = True
        self._engine.closed = True
        await self._transport.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this AcquireClient is closed; create a new one")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # join_many() built outside a loop: its joins check again when they run
        if loop is not self._loop:
            if self._loop is not None:
                raise RuntimeError(
                    "this AcquireClient is bound to the event loop it was first used on and "
                    "cannot be used from another one (a second asyncio.run(), a test with its "
                    "own loop, a thread): create one client per event loop, e.g. in the "
                    "app's lifespan or cleanup_ctx"
                )
            self._loop = loop

    # ------------------------------------------------------------------ operations

    async def join_chat(
        self, case_id: int, *, ask_join: bool = True, timeout: float | None = None
    ) -> Case:
        """Join the chat `case_id` as the API key's agent and return the updated case.

        `ask_join` is sent as `askJoin` (Acquire does not document it; with `True` the
        agent shows up in `users` with status `"joined"` at once). `timeout` is a
        deadline in seconds across every attempt and backoff sleep of this call.

        Raises `TypeError`/`ValueError` for a bad `case_id` (before any I/O), and an
        `APIError` subclass when the join fails.
        `AlreadyJoinedError` means the agent is already in the
        chat. `attempts > 1` says this call retried: when an earlier attempt failed after
        its request was sent (a dropped connection, a timeout), that attempt probably joined
        and its answer was lost. It is a hint, not proof (a retried 503 changed nothing).

        Example:
            ```python
            try:
                case = await client.join_chat(1684)
            except AlreadyJoinedError:
                pass
            ```
        """
        return (await self._join(*_join_args(case_id, ask_join, timeout))).data

    async def join_chat_response(
        self, case_id: int, *, ask_join: bool = True, timeout: float | None = None
    ) -> Response[Case]:
        """Like `join_chat`, with the raw body, status, headers and attempts.

        Example:
            ```python
            response = await client.join_chat_response(1684)
            print(response.data.status, response.request_id)
            ```
        """
        return await self._join(*_join_args(case_id, ask_join, timeout))

    def _join(
        self, case_id: int, ask_join: bool, timeout: float | None
    ) -> Coroutine[Any, Any, Response[Case]]:
        self._check_open()
        return self._engine.call(JOIN_CHAT, case_id, JOIN_CHAT.body(case_id, ask_join), timeout)

    async def reject_chat(self, case_id: int, *, timeout: float | None = None) -> Case:
        """Reject the chat `case_id` for the API key's agent; return the updated case.

        Retried like a join (rejecting twice leaves it rejected).

        Example:
            ```python
            case = await client.reject_chat(1681)
            print([u.status for u in case.users])  # the agent's entry reads "rejected"
            ```
        """
        return (await self.reject_chat_response(case_id, timeout=timeout)).data

    async def reject_chat_response(
        self, case_id: int, *, timeout: float | None = None
    ) -> Response[Case]:
        """Like `reject_chat`, with the raw body, status, headers and attempts.

        Example:
            ```python
            response = await client.reject_chat_response(1681)
            print(response.data.status, response.attempts)
            ```
        """
        case_id = validate_case_id(case_id)
        timeout = check_seconds("timeout", timeout)
        self._check_open()
        return await self._engine.call(REJECT_CHAT, case_id, REJECT_CHAT.body(case_id), timeout)

    async def close_chat(
        self,
        case_id: int,
        *,
        closing_state: str = "handled",
        archive: bool = True,
        ask_feedback: bool | None = None,
        leave_only: bool | None = None,
        force_close: bool | None = None,
        leave_event: bool | None = None,
        timeout: float | None = None,
    ) -> CloseResult:
        """Close the chat `case_id`; return what Acquire reports about it.

        `closing_state` and `archive` are always sent (Acquire's example sends
        `"handled"` and `"yes"`). `ask_feedback`, `leave_only`, `force_close` and
        `leave_event` are sent only when given: Acquire documents their names, not what
        they do, so the server's defaults apply otherwise.

        Example:
            ```python
            result = await client.close_chat(5, ask_feedback=True)
            print(result.forever_closed)
            ```
        """
        response = await self.close_chat_response(
            case_id,
            closing_state=closing_state,
            archive=archive,
            ask_feedback=ask_feedback,
            leave_only=leave_only,
            force_close=force_close,
            leave_event=leave_event,
            timeout=timeout,
        )
        return response.data

    async def close_chat_response(
        self,
        case_id: int,
        *,
        closing_state: str = "handled",
        archive: bool = True,
        ask_feedback: bool | None = None,
        leave_only: bool | None = None,
        force_close: bool | None = None,
        leave_event: bool | None = None,
        timeout: float | None = None,
    ) -> Response[CloseResult]:
        """Like `close_chat`, with the raw body, status, headers and attempts.

        Example:
            ```python
            response = await client.close_chat_response(5)
            print(response.data.forever_closed, response.raw)
            ```
        """
        case_id = validate_case_id(case_id)
        body = CLOSE_CHAT.body(
            case_id,
            closing_state=check_text("closing_state", closing_state),
            archive=check_bool("archive", archive),
            ask_feedback=check_optional_bool("ask_feedback", ask_feedback),
            leave_only=check_optional_bool("leave_only", leave_only),
            force_close=check_optional_bool("force_close", force_close),
            leave_event=check_optional_bool("leave_event", leave_event),
        )
        timeout = check_seconds("timeout", timeout)
        self._check_open()
        return await self._engine.call(CLOSE_CHAT, case_id, body, timeout)

    async def add_message(
        self,
        case_id: int,
        text: str,
        *,
        type: str = "message",
        channel: str | None = None,
        translate_lang_key: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Post `text` to the chat `case_id` as the API key's agent; return the message.

        `type` is `"message"` (seen by the visitor) or `"note"` (agents only);
        `channel` (`"chat"`…) and `translate_lang_key` (`"en"`…) are sent when given.

        **Never sent twice by the SDK.** A failure that may have reached the server (a
        dropped connection after the request was written, a timeout, a 500/502/504) is not
        retried: it raises with `request_sent=True`, and the message may or may not be
        posted. Failures that provably never left (refused, a connect timeout) and answers by
        which the server says it did not act (408, 429, 503) are retried.

        Example:
            ```python
            try:
                await client.add_message(1684, "Hello! How can I help?")
            except APIError as exc:
                if exc.request_sent:
                    ...  # maybe posted: look at the chat before sending it again
            ```
        """
        response = await self.add_message_response(
            case_id,
            text,
            type=type,
            channel=channel,
            translate_lang_key=translate_lang_key,
            timeout=timeout,
        )
        return response.data

    async def add_message_response(
        self,
        case_id: int,
        text: str,
        *,
        type: str = "message",
        channel: str | None = None,
        translate_lang_key: str | None = None,
        timeout: float | None = None,
    ) -> Response[Message]:
        """Like `add_message`, with the raw body, status, headers and attempts.

        Example:
            ```python
            response = await client.add_message_response(1684, "Hello!")
            print(response.data.id, response.request_id)
            ```
        """
        case_id = validate_case_id(case_id)
        body = ADD_MESSAGE.body(
            case_id,
            check_text("text", text),
            type=check_text("type", type),
            channel=check_optional_text("channel", channel),
            translate_lang_key=check_optional_text("translate_lang_key", translate_lang_key),
        )
        timeout = check_seconds("timeout", timeout)
        self._check_open()
        return await self._engine.call(ADD_MESSAGE, case_id, body, timeout)

    # ------------------------------------------------------------------ many joins

    def join_many(
        self,
        case_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        ask_join: bool = True,
        timeout: float | None = None,
    ) -> JoinStream:
        """Join many chats concurrently; yield one `JoinOutcome` per id, as they finish.

        `case_ids` (an iterable or async iterable) is read lazily: at most `concurrency`
        joins are in flight and memory stays bounded whatever its length. Every item yields
        exactly one outcome, invalid ones included (their `error` says why; nothing is sent).
        `CHAT_ALREADY_JOINED` counts as success (`ok` and `already_joined` are true).

        Use it as an async context manager, so leaving the block early cancels the joins still
        in flight and returns their connections before the block ends:

        ```python
        async with client.join_many(ids, concurrency=64) as outcomes:
            async for outcome in outcomes:
                if not outcome.ok:
                    print(outcome.case_id, outcome.error)
        ```
        """
        check_count("concurrency", concurrency)
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
        """Join a small batch and return all outcomes (in completion order) as a list.

        Example:
            ```python
            outcomes = await client.join_all([1684, 1685])
            ```
        """
        async with self.join_many(
            case_ids, concurrency=concurrency, ask_join=ask_join, timeout=timeout
        ) as outcomes:
            return [outcome async for outcome in outcomes]


def _join_args(
    case_id: object, ask_join: object, timeout: object
) -> tuple[int, bool, float | None]:
    """Check a join call's arguments before any I/O."""
    checked = validate_case_id(case_id)
    if not isinstance(ask_join, bool):
        raise TypeError(f"ask_join must be a bool, not {type(ask_join).__name__}")
    return checked, ask_join, check_seconds("timeout", timeout)
