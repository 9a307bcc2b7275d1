"""The transport seam: `Transport`, and `AiohttpTransport`, the one that ships.

The engine hands a transport one HTTP request at a time and gets back a `RawResponse` (status,
headers, the whole capped body) or one of our connection errors. Nothing above this layer
imports aiohttp's client machinery: this module and `_pool` (the owned connection pool) are
the only ones. Tests and users can put any other `Transport` in its place
(`acquire_async.testing.MockTransport`).

aiohttp's exceptions become ours here, built from their message alone and raised *outside* the
`except` block: some aiohttp errors print the request headers (`ClientResponseError` keeps
the `RequestInfo`), so they must not survive as `__cause__` or `__context__`. A request
lost to a pooled connection the server had closed is replayed here (`_pool` says when).
"""

from __future__ import annotations

import asyncio
import platform
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

import aiohttp
from yarl import URL

from . import _pool
from ._checks import check_count
from ._config import Timeouts, check_seconds
from ._protocol import RawResponse, error_for
from .errors import (
    AcquireError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    APITLSError,
    ResponseDecodeError,
)

__all__ = ["DEFAULT_MAX_BODY_SIZE", "USER_AGENT", "AiohttpTransport", "Transport"]

_CHUNK = 64 * 1024
# A join answer is 3-6 KiB. 1 MiB bounds what a hostile body that still decodes can cost
# (a case whose free-form ``meta`` holds 100,000s of objects): about 30 ms of event loop and
# 25 MiB here, where 8 MiB cost 0.3 s and 194 MiB.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
USER_AGENT = f"aiohttp/{aiohttp.__version__} python/{platform.python_version()}"


class _TooLarge(Exception):
    pass


@runtime_checkable
class Transport(Protocol):
    """Sends one HTTP request and returns the whole answer: what the engine needs of HTTP.

    `send` returns a `RawResponse` (`status`, `headers`, `body`, `reason`) or raises
    an `APIConnectionError` (`request_sent=False` when the request
    provably never left), an `APIStatusError` (a proxy's refusal) or a
    `ResponseDecodeError` (a body over the cap). `timeout` is the time left before the
    call's deadline, which caps this request; `idempotent=False` means a request that may
    have been written must never be sent again by the transport.

    Example, a transport that records what it sends:

    ```python
    class Recording:
        def __init__(self, inner: Transport) -> None:
            self.inner, self.sent = inner, []

        async def send(self, method, url, headers, body, *, timeout=None, idempotent=True):
            self.sent.append((method, str(url)))
            return await self.inner.send(
                method, url, headers, body, timeout=timeout, idempotent=idempotent
            )

        async def aclose(self) -> None:
            await self.inner.aclose()
    ```
    """

    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> RawResponse:
        """Send one request; return its status, headers and whole body."""

    async def aclose(self) -> None:
        """Release the connections (a borrowed pool is left open)."""


class AiohttpTransport:
    """The `Transport` over an `aiohttp.ClientSession`: owned, or borrowed.

    It owns a pooled session by default, created on the first request inside the running event
    loop (`max_connections` connections, idle ones kept `keepalive_timeout` seconds, no
    cookie jar, redirects never followed), or borrows `session` and never closes it. Each
    request is bounded by `timeouts` and its body read under `max_body_size` decompressed
    bytes. `trust_env` takes a proxy from `HTTPS_PROXY`/`NO_PROXY` (and only that: not
    `.netrc`); `trace_configs` are aiohttp's tracing hooks (OpenTelemetry). `on_replay` is
    called each time a request lost to a closed pooled connection is replayed.

    `AcquireClient` builds one from its own arguments; build one yourself to configure it or
    to wrap it (the client that is given it closes it with its own `aclose`):

    ```python
    transport = AiohttpTransport(max_connections=20, timeouts=Timeouts(total=10))
    client = AcquireClient("mycompany", key, transport=transport)
    ```
    """

    __slots__ = (
        "_closed",
        "_keepalive",
        "_max_body_size",
        "_max_connections",
        "_on_replay",
        "_owns",
        "_session",
        "_timeout",
        "_timeouts",
        "_trace_configs",
        "_trust_env",
    )

    def __init__(
        self,
        *,
        timeouts: Timeouts | float | None = None,
        max_connections: int = 100,
        keepalive_timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        trust_env: bool = False,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
        session: aiohttp.ClientSession | None = None,
        on_replay: Callable[[], object] | None = None,
    ) -> None:
        self._timeouts = Timeouts.coerce(timeouts)
        check_count("max_connections", max_connections)
        check_count("max_body_size", max_body_size)
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        configs = _check_trace_configs(trace_configs)
        keepalive = check_seconds("keepalive_timeout", keepalive_timeout)
        if on_replay is not None and not callable(on_replay):
            raise TypeError(f"on_replay must be a callable, not {type(on_replay).__name__}")
        if session is not None:
            if not isinstance(session, aiohttp.ClientSession):
                raise TypeError(
                    f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
                )
            if configs or trust_env or keepalive is not None:
                raise ValueError(
                    "trace_configs, trust_env and keepalive_timeout configure the session the "
                    "client creates; with session=..., set them on that session"
                )
            if session.auth is not None:
                # aiohttp refuses to send both its auth and our Authorization header.
                raise ValueError("the borrowed session has auth= set; the client sends its own key")
        self._timeout = _client_timeout(self._timeouts, None)
        self._max_connections = max_connections
        self._keepalive = _pool.DEFAULT_KEEPALIVE if keepalive is None else keepalive
        self._max_body_size = max_body_size
        self._trust_env = trust_env
        self._trace_configs = configs
        self._on_replay = on_replay
        self._session = session
        self._owns = session is None
        self._closed = False

    @property
    def timeouts(self) -> Timeouts:
        """The limits of each request."""
        return self._timeouts

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use: the borrowed one, or the owned one once the first request made
        it (`None` before, and after `aclose`)."""
        return self._session

    def __repr__(self) -> str:
        kind = "owned" if self._owns else "borrowed"
        return f"AiohttpTransport({kind} session, max_connections={self._max_connections})"

    async def aclose(self) -> None:
        """Close the owned session (a borrowed one is left open). Safe to call twice."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns and not session.closed:
            await session.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if getattr(self, "_owns", False) and session is not None and not session.closed:
            # Only a warning: a task scheduled from __del__ could run on a dead loop.
            _warn(
                "an AcquireClient (or AiohttpTransport) was never closed; use 'async with' "
                "or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    def _open(self, url: URL) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this AcquireClient is closed; create a new one")
        session = self._session = _pool.create_session(
            url=url,
            max_connections=self._max_connections,
            timeout=self._timeout,
            trust_env=self._trust_env,
            trace_configs=self._trace_configs,
            keepalive_timeout=self._keepalive,
        )
        return session

    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> RawResponse:
        """Send one request and return its status, headers and whole body.

        A request that failed on a reused pooled connection before any byte came back is sent
        again at once on a fresh connection (`_pool` says when); one that may have been
        written is sent again only when `idempotent`.

        Raises `APIConnectionError` (or `APITimeoutError`/`APITLSError`) when no complete
        response arrived, `APIStatusError` when a proxy refused the tunnel, and
        `ResponseDecodeError` when the body is larger than `max_body_size`.
        `asyncio.CancelledError` passes through untouched; the response is released either
        way.
        """
        session = self._session or self._open(url)
        client_timeout = (
            self._timeout if timeout is None else _client_timeout(self._timeouts, timeout)
        )
        error: AcquireError
        replays = 0
        maybe_sent = False  # the replayed first send may have reached the server
        loop = asyncio.get_running_loop()
        started = loop.time()
        middlewares: tuple[aiohttp.ClientMiddlewareType, ...] | None = None
        if session.trace_configs and _pool.AUTHORIZATION in headers:
            headers, middlewares = _pool.authorization_after_tracing(session, headers)
        try:
            while True:
                try:
                    # Awaited, then released in ``finally``: what ``async with`` does, without
                    # its four extra coroutines per attempt (``__aenter__``, ``__aexit__``).
                    response = await session.request(
                        method,
                        url,
                        data=body,
                        headers=headers,
                        timeout=client_timeout,
                        allow_redirects=False,
                        # A borrowed session may raise on >= 400; we map statuses ourselves.
                        raise_for_status=False,
                        middlewares=middlewares,
                    )
                    try:
                        # A plain body with a Content-Length is judged by it and read in one call
                        # (inline: one coroutine frame less). Otherwise aiohttp decompresses as it
                        # reads, so the cap is counted chunk by chunk on what it hands us: a gzip
                        # bomb, or a body that lies about its length, stops at the cap.
                        length = response.content_length
                        if length is not None and "Content-Encoding" not in response.headers:
                            if length > self._max_body_size:
                                raise _TooLarge
                            content = response.content
                            if (
                                content.is_eof()
                                and type(response) is aiohttp.ClientResponse
                                and not session.trace_configs
                            ):
                                # The whole body came with the headers (a small JSON answer nearly
                                # always does): take it as is. read() would run five coroutines to
                                # return these same bytes. Not for a custom response class, and not
                                # when tracing (read() sends the trace signal for the body).
                                payload = content.read_nowait()
                                if len(payload) != length:
                                    # A middleware of a borrowed session read the stream already;
                                    # read() returns the body it kept.
                                    payload = await response.read()
                            else:
                                payload = await response.read()
                        else:
                            payload = await _read_capped(response, self._max_body_size)
                    except _TooLarge:
                        # The rest of the body is still on the wire: no reuse of this connection.
                        response.close()
                        error = ResponseDecodeError(
                            "response body larger than max_body_size "
                            f"({self._max_body_size} bytes)",
                            status=response.status,
                            method=method,
                            url=str(url),
                        )
                    else:
                        return RawResponse(
                            response.status, response.headers, payload, response.reason
                        )
                    finally:
                        # Back to the pool when the body was read whole; closed when it was not
                        # (cancelled or failed mid-body), so no half-read connection is reused.
                        response.release()
                except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as exc:
                    error = APITLSError(
                        _pool.describe(exc), method=method, url=str(url), request_sent=False
                    )
                except aiohttp.ClientHttpProxyError as exc:
                    # The proxy refused the CONNECT tunnel (407, a proxy's own 403…): its answer,
                    # not Acquire's. An APIStatusError with that status, for the policy to judge.
                    error = error_for(exc.status, exc.headers or {}, b"")
                    error.request_sent = False  # the tunnel never opened: Acquire saw nothing
                except aiohttp.ConnectionTimeoutError as exc:
                    error = APITimeoutError(
                        _pool.describe(exc), method=method, url=str(url), request_sent=False
                    )
                # asyncio.TimeoutError is TimeoutError from Python 3.11 on, its own class on 3.10.
                except (TimeoutError, asyncio.TimeoutError) as exc:  # read and total timeouts
                    error = APITimeoutError(_pool.describe(exc), method=method, url=str(url))
                except aiohttp.ClientConnectorError as exc:
                    error = APIConnectionError(
                        _pool.describe(exc), method=method, url=str(url), request_sent=False
                    )
                except _pool.CLOSED as exc:
                    # After the connection was made, before a whole answer: a closed or reset
                    # connection. (ClientConnectorError, a ClientOSError too, was caught above.)
                    unwritten = _pool.unwritten(exc)
                    left = (
                        None
                        if client_timeout.total is None
                        else client_timeout.total - (loop.time() - started)
                    )
                    if (
                        not replays
                        and (left is None or left > 0)
                        and not self._closed  # aclose() meanwhile: no new request
                        and (idempotent or unwritten)
                        and _pool.replayable(exc)
                    ):
                        replays = 1
                        maybe_sent = not unwritten
                        if left is not None:  # the replay gets what is left, not a new total
                            client_timeout = _client_timeout(self._timeouts, left)
                        _pool.FRESH.set(asyncio.current_task())
                        if self._on_replay is not None:
                            self._on_replay()
                        continue
                    error = APIConnectionError(
                        _pool.describe(exc), method=method, url=str(url), request_sent=not unwritten
                    )
                except aiohttp.ClientError as exc:
                    error = APIConnectionError(_pool.describe(exc), method=method, url=str(url))
                if maybe_sent and isinstance(error, APIError):
                    error.request_sent = True
                raise error
        finally:
            if replays:
                _pool.FRESH.set(None)


def _client_timeout(timeouts: Timeouts, remaining: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for one request; `remaining` (a deadline's rest) caps the total.

    `pool` is aiohttp's `connect` (waiting for a pooled connection plus connecting), and
    `connect` its `sock_connect`.
    """
    total = timeouts.total
    if remaining is not None:
        total = remaining if total is None else min(total, remaining)
    return aiohttp.ClientTimeout(
        total=total, connect=timeouts.pool, sock_connect=timeouts.connect, sock_read=timeouts.read
    )


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


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
