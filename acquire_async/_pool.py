"""The owned connection pool: connections that know enough to replay a stale one safely.

Part of the transport layer with `_transport`: these two modules alone touch aiohttp's client
machinery.

Servers, proxies and load balancers close idle keep-alive connections (nginx after its
`keepalive_timeout`, Node after 5 s, tinyproxy after every answer without saying so). A
request sent on such a connection as it closes fails before any byte of an answer comes back,
and the server never acted on it. The transport replays that request at once on a fresh
connection: it is not a retry (no backoff, no budget, not an attempt), so it happens with
retries disabled too. To tell this case from a real failure, the owned pool's connections are
`_TrackedHandler` objects: each counts the answers it carried and, when it dies under a
request, tags that request's error with whether it had carried one before (it came from the
pool). Only a *reused* connection that closed before any answer arrived is replayed,
once, and the replay skips the pool (its other idle connections may be closing too); so a
failure on a fresh connection is a real failure and there is no loop. With a borrowed session
(its connections untracked) one replay per attempt is allowed for the same errors, on whatever
connection its pool gives. A request that is not idempotent (a message) is replayed only when
it provably was not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

__all__ = [
    "CLOSED",
    "DEFAULT_KEEPALIVE",
    "FRESH",
    "SERVER_CLOSED",
    "authorization_after_tracing",
    "create_session",
    "describe",
    "replayable",
    "unwritten",
]

AUTHORIZATION = "Authorization"
# Idle pooled connections are dropped after this many seconds: below the shortest common
# server idle timeout (Node's 5 s), so the pool rarely offers a connection the server is
# closing. The replay covers the rest.
DEFAULT_KEEPALIVE = 4.0
SERVER_CLOSED = "the server closed the connection before answering"
_CLOSED_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
# What a connection closed under a request looks like (ClientConnectorError, a ClientOSError
# too, must be caught before these: it never connected).
CLOSED = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)


class _TrackedHandler(ResponseHandler):
    """aiohttp's protocol for one connection, which tags the error it dies with.

    Nothing here runs per request (a per-request override measured about 2% of a join's
    instructions): `feed_data` runs once per answer whose headers arrived, and
    `connection_lost` once per connection. When the connection dies under a request, the
    error that request is about to raise gets `acquire_reused`: whether this connection had
    carried an answer before (it came from the pool) or not (it was fresh).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.answers = 0  # answers whose headers arrived on this connection
        self.interim = False  # a 1xx arrived: the server has the request under way

    def feed_data(self, data: Any, size: int = 0) -> None:
        if data[0].code < 200:
            self.interim = True
        else:
            self.answers += 1
            self.interim = False
        super().feed_data(data, size)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        error = self.exception()  # what the waiting request raises, if one is waiting
        if error is not None:
            with contextlib.suppress(AttributeError):  # not every exception takes attributes
                error.acquire_reused = self.answers > 0 and not self.interim  # type: ignore[attr-defined]


# Set for a replay: the next connection this task takes is a new one, not a pooled one.
# The replaying task itself, not a flag: tasks it spawns (a hook's) inherit the value, not the skip.
FRESH: ContextVar[asyncio.Task[Any] | None] = ContextVar("FRESH", default=None)


async def _no_pooled_connection() -> None:
    return None


class _TrackedConnector(aiohttp.TCPConnector):
    """A `TCPConnector` whose connections are `_TrackedHandler` objects."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # BaseConnector builds every connection's protocol from this factory (aiohttp is
        # pinned below 4; without the attribute, replays fall back to once per attempt).
        if hasattr(self, "_factory"):
            self._factory = functools.partial(_TrackedHandler, loop=self._loop)  # type: ignore[assignment]

    # Not ``async def``: it hands back aiohttp's own coroutine, so the pool lookup of every
    # request runs no extra frame. (``connect`` makes a new connection when this gives None.)
    def _get(self, key: Any, traces: Any) -> Any:
        fresh = FRESH.get()  # the task replaying (``send`` clears it when the replay ends)
        if fresh is not None and fresh is asyncio.current_task():
            return _no_pooled_connection()
        return super()._get(key, traces)


def create_session(
    *,
    url: URL,
    max_connections: int,
    timeout: aiohttp.ClientTimeout,
    trust_env: bool,
    trace_configs: Sequence[aiohttp.TraceConfig] | None,
    keepalive_timeout: float = DEFAULT_KEEPALIVE,
) -> aiohttp.ClientSession:
    """The pooled session an owning client uses. Must be called inside a running loop.

    `trust_env` takes the proxy for `url` from the environment (`HTTPS_PROXY`,
    `NO_PROXY`…), and only that: aiohttp's own `trust_env` also reads `.netrc`, whose
    credentials it refuses to combine with our `Authorization` header (every join would
    fail with a `ValueError`).
    """
    proxy: URL | None = None
    proxy_auth: aiohttp.BasicAuth | None = None
    if trust_env:
        with contextlib.suppress(LookupError):  # LookupError: no proxy for this URL
            proxy, proxy_auth = get_env_proxy_for_url(url)
    connector = _TrackedConnector(
        limit=max_connections,
        limit_per_host=0,
        use_dns_cache=True,
        ttl_dns_cache=300,
        keepalive_timeout=keepalive_timeout,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,
        proxy=proxy,
        proxy_auth=proxy_auth,
        trace_configs=list(trace_configs) if trace_configs else None,
        raise_for_status=False,
        # The session belongs to us: no cookie jar to leak state between joins.
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    # aiohttp silently re-sends an idempotent request (GET, so a GET join) once when a
    # keep-alive connection drops, whether or not the connection was reused; ``send`` does
    # that itself, for every method, only when it is safe. Only a private switch turns
    # aiohttp's off (aiohttp is pinned below 4).
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


def unwritten(exc: BaseException) -> bool:
    """Whether aiohttp failed to write the request: then the server cannot have acted on it
    (its body never arrived whole)."""
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return True  # "Cannot write to closing transport", raised while writing
    return isinstance(exc, aiohttp.ClientOSError) and str(exc).find("Can not write request") >= 0


def replayable(exc: BaseException) -> bool:
    """Whether a failed request is a stale pooled connection's, safe to send again at once.

    The connection closed or reset before any answer arrived (or the request could not be
    written), and it had served an answer before. An error without the tag (a borrowed
    session's connection, a write failure) may be replayed too: the caller allows one replay
    per attempt, so a fresh connection's failure still ends there.
    """
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # A complete status line and headers arrived: the server answered, then closed.
        if not isinstance(exc.message, str):
            return False
    elif not (unwritten(exc) or getattr(exc, "errno", None) in _CLOSED_ERRNOS):
        return False
    return getattr(exc, "acquire_reused", True) is not False


def authorization_after_tracing(
    session: aiohttp.ClientSession, headers: Mapping[str, str]
) -> tuple[dict[str, str], tuple[aiohttp.ClientMiddlewareType, ...]]:
    """The headers without `Authorization`, and middlewares that add it back.

    Trace callbacks get the request headers at request start, and OpenTelemetry's aiohttp
    instrumentation copies them into span attributes when header capture is on
    (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST=".*"`): the key would be in
    every span. Middlewares run after that signal, so the key is on the wire but in no span.
    """
    authorization = headers[AUTHORIZATION]
    rest = {name: value for name, value in headers.items() if name != AUTHORIZATION}

    async def add_authorization(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        request.headers[AUTHORIZATION] = authorization
        return await handler(request)

    # A request's middlewares replace the session's: keep a borrowed session's, inside ours
    # so that they still see the header.
    return rest, (add_authorization, *getattr(session, "_middlewares", ()))


def describe(exc: BaseException) -> str:
    """A message for an aiohttp exception that cannot carry request headers."""
    name = type(exc).__name__
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)) or (
        isinstance(exc, aiohttp.ClientOSError)
        and not isinstance(exc, aiohttp.ClientConnectorError)
        and (unwritten(exc) or getattr(exc, "errno", None) in _CLOSED_ERRNOS)
    ):
        # One message for what aiohttp words three ways (disconnected, reset, cannot write).
        return f"{SERVER_CLOSED} ({name})"
    if isinstance(exc, aiohttp.ClientResponseError):
        # str() is safe today, but the object holds request_info (headers); take only fields.
        return f"{name}: {exc.status}, {exc.message}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or exc.os_error
        return f"{name}: cannot connect to {exc.host}:{exc.port} ({reason})"
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out waiting for the server"
    return f"{name}: {text}" if text else name
