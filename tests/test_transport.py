"""The transport on real sockets: stale pooled connections are replayed, never reported.

Servers, proxies and load balancers close idle keep-alive connections. A request that goes out
on one as it closes fails before any byte of an answer comes back, and the server never acted
on it. These tests run at the scale of the claim (hundreds to thousands of joins, bursts of
200): a handful of joins stays inside the retry budget and hides the defect.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from faultserver import RawServer, case_body, http_response
from yarl import URL

import acquire_async as aa
import acquire_async.testing
from acquire_async import _pool, _transport

KEY = "test-key-0123456789"


class IdleClosingServer(RawServer):
    """A join endpoint that behaves like nginx with a short ``keepalive_timeout``.

    A request that arrives on a connection idle for ``idle_limit`` seconds or more is read
    whole and then the connection is closed without an answer: the server's idle timer fired
    just as the request arrived (the worst case: every byte of it was delivered). With
    ``close_after_answer`` the server instead closes every connection right after answering,
    without ``Connection: close`` (Debian's stock tinyproxy). ``answered`` counts the joins
    per case the server acted on.
    """

    def __init__(self, *, idle_limit: float = 0.05, close_after_answer: bool = False) -> None:
        super().__init__(lambda request, on_connection: None)  # _serve below answers
        self.idle_limit = idle_limit
        self.close_after_answer = close_after_answer
        self.answered: Counter[int] = Counter()
        self.dropped = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        idle_since: float | None = None  # None: no request answered on it yet
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if idle_since is not None and time.monotonic() - idle_since >= self.idle_limit:
                    self.dropped += 1
                    break  # closed as the request arrived: never acted on
                case_id = int(body.split(b'"caseId":', 1)[1].split(b",", 1)[0])
                self.answered[case_id] += 1
                writer.write(http_response(case_body(case_id)))
                await writer.drain()
                if self.close_after_answer:
                    break
                idle_since = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def bursts(
    client: aa.AcquireClient, count: int, size: int, gap: float
) -> list[aa.JoinOutcome]:
    outcomes: list[aa.JoinOutcome] = []
    for start in range(1, count + 1, size):
        ids = range(start, min(start + size, count + 1))
        outcomes += await client.join_all(ids, concurrency=size)
        await asyncio.sleep(gap)  # every pooled connection goes idle past the server's limit
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("retry", [aa.RetryPolicy(), aa.RetryPolicy.disabled()])
async def test_bursts_that_arrive_as_idle_connections_close_all_succeed(
    retry: aa.RetryPolicy,
) -> None:
    retries: list[aa.RetryEvent] = []
    async with IdleClosingServer(idle_limit=0.05) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, retry=retry, on_retry=retries.append
        ) as client:
            outcomes = await bursts(client, 1200, 200, gap=0.1)
    assert [o.error for o in outcomes if not o.ok] == []
    assert len(outcomes) == 1200
    # One server-side join per case: the replays were never acted on twice.
    assert sorted(server.answered) == list(range(1, 1201))
    assert set(server.answered.values()) == {1}
    # The stale connections were there, and were invisible: replayed, not retried.
    assert server.dropped >= 100
    assert client.stats.replayed == server.dropped
    assert client.stats.requests == 1200
    assert client.stats.retries == 0 and retries == []
    assert client.stats.errors == Counter()


@pytest.mark.parametrize("retry", [aa.RetryPolicy(), aa.RetryPolicy.disabled()])
async def test_a_server_that_closes_after_every_answer_costs_no_backoff(
    retry: aa.RetryPolicy,
) -> None:
    retries: list[aa.RetryEvent] = []
    async with IdleClosingServer(close_after_answer=True) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, retry=retry, on_retry=retries.append
        ) as client:
            for case_id in range(1, 401):
                case = await client.join_chat(case_id)
                assert case.id == case_id
    assert set(server.answered.values()) == {1} and len(server.answered) == 400
    assert client.stats.retries == 0 and retries == []
    assert client.stats.requests == 400
    assert client.stats.errors == Counter()


async def test_a_failure_on_a_fresh_connection_is_a_real_failure() -> None:
    # Every connection is closed as its first request arrives: nothing was reused, so
    # nothing is replayed, and the error reaches the caller after the policy's attempts.
    connections = 0

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aa.AcquireClient(
            api_key=KEY,
            base_url=f"http://127.0.0.1:{port}/api/v1",
            retry=aa.RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.001),
        ) as client:
            with pytest.raises(aa.APIConnectionError) as caught:
                await client.join_chat(7)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.attempts == 3
    assert connections == 3
    assert client.stats.replayed == 0
    assert str(caught.value).startswith(_pool.SERVER_CLOSED)


async def test_the_owned_pool_drops_idle_connections_after_keepalive_timeout() -> None:
    async with IdleClosingServer(idle_limit=10.0) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, keepalive_timeout=0.05
        ) as client:
            await client.join_chat(1)
            await client.join_chat(2)  # reused at once
            await asyncio.sleep(0.3)
            await client.join_chat(3)  # the idle one was dropped: a new connection
    assert server.connections == 2


def test_keepalive_timeout_is_checked_and_refused_with_a_borrowed_session() -> None:
    with pytest.raises(TypeError, match="keepalive_timeout"):
        aa.AcquireClient(api_key=KEY, base_url="http://x", keepalive_timeout="4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive_timeout"):
        aa.AcquireClient(api_key=KEY, base_url="http://x", keepalive_timeout=0)


async def test_keepalive_timeout_is_refused_with_a_borrowed_session() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="keepalive_timeout"):
            aa.AcquireClient(api_key=KEY, base_url="http://x", session=session, keepalive_timeout=1)


@pytest.mark.slow
async def test_a_borrowed_session_gets_one_replay_per_attempt() -> None:
    async with IdleClosingServer(idle_limit=0.05) as server:
        async with aiohttp.ClientSession() as session:
            async with aa.AcquireClient(
                api_key=KEY,
                base_url=server.base_url,
                session=session,
                retry=aa.RetryPolicy.disabled(),
            ) as client:
                outcomes = await bursts(client, 400, 100, gap=0.1)
    assert [o.error for o in outcomes if not o.ok] == []
    assert set(server.answered.values()) == {1} and len(server.answered) == 400
    assert client.stats.replayed == server.dropped > 0


async def test_a_replay_skips_the_other_idle_connections_of_the_pool() -> None:
    # After a burst the pool holds 100 idle connections, all past the server's idle limit.
    # Each sequential join takes one; its replay must not take the next stale one.
    async with IdleClosingServer(idle_limit=0.05) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, retry=aa.RetryPolicy.disabled()
        ) as client:
            await client.join_all(range(1, 101), concurrency=100)
            await asyncio.sleep(0.1)
            for case_id in range(101, 151):
                await client.join_chat(case_id)
    assert len(server.answered) == 150 and set(server.answered.values()) == {1}
    assert client.stats.replayed == server.dropped >= 50


# ----------------------------------------------------------------------------- proxies


class RefusingProxy:
    """An HTTP proxy on 127.0.0.1 that refuses every request with its own status."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RefusingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.split(b"\r\n", 1)[0])
            body = b"<html><body>Access denied by proxy policy</body></html>"
            writer.write(
                f"HTTP/1.1 {self.status}\r\nProxy-Authenticate: Basic realm=x\r\n"
                f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("407 Proxy Authentication Required", aa.APIStatusError),
        ("403 Forbidden", aa.PermissionDeniedError),
    ],
)
@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_a_proxy_refusal_is_its_status_and_never_retried(
    status: str, error: type[aa.APIStatusError], scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # https goes through a CONNECT tunnel (aiohttp raises for the proxy's answer); http is
    # forwarded, and the proxy's answer comes back as an ordinary response.
    async with RefusingProxy(status) as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with aa.AcquireClient(
            api_key=KEY, base_url=f"{scheme}://acme.example/api/v1", trust_env=True
        ) as client:
            with pytest.raises(error) as caught:
                await client.join_chat(5)
    assert caught.value.status == int(status[:3])
    assert caught.value.attempts == 1
    # A refused tunnel never reached Acquire; a forwarded request's answer cannot be told
    # from Acquire's own.
    assert caught.value.request_sent is (scheme == "http")
    assert len(proxy.requests) == 1
    assert proxy.requests[0].startswith(b"CONNECT " if scheme == "https" else b"POST ")
    assert client.stats.retries == 0


# ----------------------------------------------------------------------------- request_sent


@pytest.mark.parametrize(
    ("failure", "sent"),
    [
        (aiohttp.ClientOSError(32, "Can not write request body for http://x"), False),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), False),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True),
    ],
)
async def test_request_sent_is_false_only_when_the_request_was_not_written(
    failure: Exception, sent: bool, mock_http: Any
) -> None:
    url = "http://127.0.0.1:9/api/v1/crm/messenger/chat/join"
    mock_http.post(url, exception=failure, repeat=True)
    async with aa.AcquireClient(
        api_key=KEY, base_url="http://127.0.0.1:9/api/v1", retry=aa.RetryPolicy.disabled()
    ) as client:
        with pytest.raises(aa.APIConnectionError) as caught:
            await client.join_chat(3)
    assert caught.value.request_sent is sent
    assert str(caught.value).startswith(_pool.SERVER_CLOSED)
    # Untracked connections (here, aioresponses') get one replay, then the failure is real.
    assert client.stats.replayed == 1
    assert len(mock_http.requests[("POST", URL(url))]) == 2


# ----------------------------------------------------------------------------- timeouts


def test_timeouts_map_onto_aiohttp_each_limit() -> None:
    timeout = _transport._client_timeout(aa.Timeouts(connect=1, read=2, pool=3, total=4), None)
    assert isinstance(timeout, aiohttp.ClientTimeout)
    # connect -> sock_connect, pool -> connect (pool wait + connect), read -> sock_read.
    assert (timeout.sock_connect, timeout.sock_read, timeout.connect, timeout.total) == (1, 2, 3, 4)


def test_a_deadline_caps_the_total_and_none_stays_none() -> None:
    timeouts = aa.Timeouts(connect=1, read=2, pool=3, total=4)
    assert _transport._client_timeout(timeouts, 0.5).total == 0.5
    assert _transport._client_timeout(timeouts, 9.0).total == 4
    assert _transport._client_timeout(timeouts, 0.5).sock_read == 2
    unlimited = aa.Timeouts(connect=None, read=None, pool=None, total=None)
    assert _transport._client_timeout(unlimited, None).total is None
    assert _transport._client_timeout(unlimited, 2.0).total == 2.0


async def test_a_request_that_may_have_been_read_is_not_replayed_when_not_idempotent() -> None:
    # The stale connection took the whole request before the server closed it: a join is
    # replayed (it may repeat), a message must not be (the server may have read it).
    async with IdleClosingServer(idle_limit=0.05) as server:
        transport = aa.AiohttpTransport(on_replay=lambda: None)
        url = URL(server.base_url + "/crm/messenger/chat/join")
        headers = {"Content-Type": "application/json"}
        try:
            first = await transport.send("POST", url, headers, b'{"caseId":1,"askJoin":true}')
            assert first.status == 200
            await asyncio.sleep(0.1)
            with pytest.raises(aa.APIConnectionError) as caught:
                await transport.send(
                    "POST", url, headers, b'{"caseId":2,"askJoin":true}', idempotent=False
                )
            assert caught.value.request_sent is True
            assert server.dropped == 1 and 2 not in server.answered
            # The same stale case for a join: replayed on a fresh connection, answered.
            assert (
                await transport.send("POST", url, headers, b'{"caseId":3,"askJoin":true}')
            ).status == 200
            await asyncio.sleep(0.1)
            again = await transport.send("POST", url, headers, b'{"caseId":4,"askJoin":true}')
            assert again.status == 200 and server.dropped == 2
        finally:
            await transport.aclose()
    assert server.answered == Counter({1: 1, 3: 1, 4: 1})


def test_a_transport_excludes_the_options_of_the_built_in_one() -> None:
    transport = aa.testing.MockTransport(lambda request: aa.testing.MockResponse())
    for option in (
        {"timeout": 5},
        {"max_connections": 10},
        {"max_body_size": 10},
        {"keepalive_timeout": 1},
        {"trust_env": True},
        {"trace_configs": []},
    ):
        with pytest.raises(ValueError, match=next(iter(option))):
            aa.AcquireClient(api_key=KEY, base_url="http://x", transport=transport, **option)
    client = aa.AcquireClient(api_key=KEY, base_url="http://x", transport=transport)
    assert client.transport is transport
    with pytest.raises(TypeError, match="transport"):
        aa.AcquireClient(api_key=KEY, base_url="http://x", transport=object())  # type: ignore[arg-type]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def test_a_replay_that_cannot_connect_keeps_request_sent_of_the_first_send() -> None:
    # The server reads the request on the reused connection, then goes down (a deploy): the
    # replay is refused, and the error must not claim that nothing reached the server.
    server: asyncio.Server | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(http_response(case_body(1)))
        await writer.drain()
        await _read_request(reader)
        assert server is not None
        server.close()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1/x")
    transport = aa.AiohttpTransport()
    try:
        await transport.send("POST", url, {}, b'{"caseId":1,"askJoin":true}')
        with pytest.raises(aa.APIConnectionError) as caught:
            await transport.send("POST", url, {}, b'{"caseId":1,"askJoin":true}')
    finally:
        await transport.aclose()
        await server.wait_closed()
    assert caught.value.request_sent is True


async def test_an_interim_answer_is_not_a_served_request() -> None:
    # A fresh connection that got "103 Early Hints" and then died had the request under way:
    # it was not reused, so the failure is real (no replay).
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await _read_request(reader)
        requests += 1
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1/x")
    replays: list[None] = []
    transport = aa.AiohttpTransport(on_replay=lambda: replays.append(None))
    try:
        with pytest.raises(aa.APIConnectionError):
            await transport.send("POST", url, {}, b'{"caseId":1,"askJoin":true}')
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert (requests, replays) == (1, [])


@pytest.mark.slow
async def test_a_replay_gets_what_is_left_of_the_total_not_a_new_one() -> None:
    # The server holds the request 0.8 s on the reused connection, then closes it; the
    # replay's connection never answers. With total=1 s the request ends near 1 s, not 1.8 s.
    first = True

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        fresh, first = first, False
        try:
            await _read_request(reader)
            if fresh:
                writer.write(http_response(case_body(1)))
                await writer.drain()
                await _read_request(reader)
                await asyncio.sleep(0.8)
            else:
                await asyncio.sleep(5)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1/x")
    transport = aa.AiohttpTransport(timeouts=aa.Timeouts(total=1.0))
    try:
        await transport.send("POST", url, {}, b'{"caseId":1,"askJoin":true}')
        started = time.monotonic()
        with pytest.raises(aa.APITimeoutError):
            await transport.send("POST", url, {}, b'{"caseId":1,"askJoin":true}')
        elapsed = time.monotonic() - started
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert elapsed < 1.5  # a bound: a fresh 1 s total for the replay would make it 1.8 s
