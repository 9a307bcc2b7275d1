"""One HTTP attempt over aiohttp: the only module that drives aiohttp's request machinery.

``send`` makes one request, reads the body under a size cap and always releases the response.
aiohttp's exceptions become ours here, built from their message alone and raised *outside* the
``except`` block: some aiohttp errors print the request headers (``ClientResponseError`` keeps
the ``RequestInfo``), so they must not survive as ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ._protocol import RawResponse
from .errors import (
    AcquireError,
    APIConnectionError,
    APITimeoutError,
    APITLSError,
    ResponseDecodeError,
)

__all__ = ["create_session", "send"]

_CHUNK = 64 * 1024


class _TooLarge(Exception):
    pass


def create_session(
    *,
    url: URL,
    max_connections: int,
    timeout: aiohttp.ClientTimeout,
    trust_env: bool,
    trace_configs: Sequence[aiohttp.TraceConfig] | None,
) -> aiohttp.ClientSession:
    """The pooled session an owning client uses. Must be called inside a running loop.

    ``trust_env`` takes the proxy for ``url`` from the environment (``HTTPS_PROXY``,
    ``NO_PROXY``…), and only that: aiohttp's own ``trust_env`` also reads ``.netrc``, whose
    credentials it refuses to combine with our ``Authorization`` header (every join would
    fail with a ``ValueError``).
    """
    proxy: URL | None = None
    proxy_auth: aiohttp.BasicAuth | None = None
    if trust_env:
        with contextlib.suppress(LookupError):  # LookupError: no proxy for this URL
            proxy, proxy_auth = get_env_proxy_for_url(url)
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        use_dns_cache=True,
        ttl_dns_cache=300,
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
    # keep-alive connection drops; that resend bypasses our retry policy, budget, hooks and
    # attempt count. Only a private switch turns it off (aiohttp is pinned below 4).
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    headers: Mapping[str, str],
    body: bytes,
    timeout: aiohttp.ClientTimeout,
    max_body_size: int,
) -> RawResponse:
    """Send one request and return its status, headers and whole body.

    Raises ``APIConnectionError`` (or ``APITimeoutError``/``APITLSError``) when no complete
    response arrived, ``ResponseDecodeError`` when the body is larger than ``max_body_size``.
    ``asyncio.CancelledError`` passes through untouched; the response is released either way.
    """
    error: AcquireError
    try:
        # Awaited, then released in ``finally``: what ``async with`` does, without its four
        # extra coroutines per attempt (two ``__aenter__``, two ``__aexit__``).
        response = await session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            # A borrowed session may raise on >= 400; we map statuses ourselves.
            raise_for_status=False,
        )
        try:
            # A plain body with a Content-Length is judged by it and read in one call
            # (inline: one coroutine frame less). Otherwise aiohttp decompresses as it
            # reads, so the cap is counted chunk by chunk on what it hands us: a gzip
            # bomb, or a body that lies about its length, stops at the cap.
            length = response.content_length
            if length is not None and "Content-Encoding" not in response.headers:
                if length > max_body_size:
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
                payload = await _read_capped(response, max_body_size)
        except _TooLarge:
            # The rest of the body is still on the wire: this connection cannot be reused.
            response.close()
            error = ResponseDecodeError(
                f"response body larger than max_body_size ({max_body_size} bytes)",
                status=response.status,
                method=method,
                url=str(url),
            )
        else:
            return RawResponse(response.status, response.headers, payload)
        finally:
            # Back to the pool when the body was read whole; closed when it was not
            # (cancelled or failed mid-body), so no half-read connection is reused.
            response.release()
    except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as exc:
        error = APITLSError(_describe(exc), method=method, url=str(url), request_sent=False)
    except aiohttp.ConnectionTimeoutError as exc:
        error = APITimeoutError(_describe(exc), method=method, url=str(url), request_sent=False)
    # asyncio.TimeoutError is TimeoutError from Python 3.11 on, a class of its own on 3.10.
    except (TimeoutError, asyncio.TimeoutError) as exc:  # read and total timeouts
        error = APITimeoutError(_describe(exc), method=method, url=str(url))
    except aiohttp.ClientConnectorError as exc:
        error = APIConnectionError(_describe(exc), method=method, url=str(url), request_sent=False)
    except aiohttp.ClientError as exc:
        error = APIConnectionError(_describe(exc), method=method, url=str(url))
    raise error


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """A message for an aiohttp exception that cannot carry request headers."""
    name = type(exc).__name__
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
