"""Retries, deadlines, cool-downs and protocol faults, against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from faultserver import (
    PAYLOAD,
    FaultServer,
    RawServer,
    case_body,
    drip,
    drop_after_read,
    raw,
    reset_mid_body,
    sleep_then,
    status,
    truncated,
)

import acquire_async as aa

FAST = aa.RetryPolicy(backoff_base=0.001, backoff_cap=0.01)
KEY = "test-key-0123456789"

MakeClient = Callable[..., aa.AcquireClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[aa.AcquireClient] = []

    def make(base_url: str, **kwargs: Any) -> aa.AcquireClient:
        kwargs.setdefault("retry", FAST)
        client = aa.AcquireClient(api_key=KEY, base_url=base_url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def fake_time() -> tuple[list[float], dict[str, Any]]:
    """Seams for a client on a fake clock: note each backoff sleep, wait (almost) nothing.

    Returns the list of backoff sleeps and the client arguments (``sleep=``, ``throttle=``).
    The cool-down gate gets the same fake clock, so a ``Retry-After`` pause passes as soon
    as the backoff sleep has "slept" it.
    """
    slept: list[float] = []
    now = [0.0]

    async def sleep(delay: float) -> None:
        now[0] += delay
        await asyncio.sleep(0)

    async def backoff_sleep(delay: float) -> None:
        slept.append(delay)
        await sleep(delay)

    throttle = aa.LocalThrottle(clock=lambda: now[0], sleep=sleep)
    return slept, {"sleep": backoff_sleep, "throttle": throttle}


def acquired(client: aa.AcquireClient) -> int:
    session = client.transport.session
    if session is None:
        return 0
    return len(session.connector._acquired)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- Retry-After


async def test_429_retry_after_seconds_is_honoured(make_client: MakeClient) -> None:
    async with FaultServer(script=[status(429, {"Retry-After": "3"})]) as server:
        slept, seams = fake_time()
        client = make_client(server.base_url, **seams)
        response = await client.join_chat_response(1)
    assert response.attempts == 2
    assert slept == [3.0]
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1


async def test_429_retry_after_http_date_is_honoured(make_client: MakeClient) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    async with FaultServer(script=[status(429, {"Retry-After": when})]) as server:
        slept, seams = fake_time()
        client = make_client(server.base_url, **seams)
        await client.join_chat(1)
    assert len(slept) == 1
    assert 27 <= slept[0] <= 30


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "garbage", ""])
async def test_unusable_retry_after_falls_back_to_backoff(
    make_client: MakeClient, value: str
) -> None:
    async with FaultServer(script=[status(503, {"Retry-After": value})]) as server:
        slept, seams = fake_time()
        client = make_client(server.base_url, **seams)
        await client.join_chat(1)
    assert len(slept) == 1
    assert 0 <= slept[0] <= FAST.backoff_base


async def test_retry_after_above_the_cap_fails_fast(make_client: MakeClient) -> None:
    async with FaultServer(script=[status(429, {"Retry-After": "120"})]) as server:
        client = make_client(
            server.base_url, retry=aa.RetryPolicy(max_retry_after=60, backoff_base=0.001)
        )
        with pytest.raises(aa.RateLimitError) as info:
            await client.join_chat(1)
    assert info.value.retry_after == 120.0
    assert info.value.attempts == 1
    assert server.requests == 1


async def test_cool_down_holds_back_new_requests_of_the_whole_client(
    make_client: MakeClient,
) -> None:
    async with FaultServer(script=[status(429, {"Retry-After": "0.3"})]) as server:
        client = make_client(server.base_url)
        first = asyncio.ensure_future(client.join_chat(1))
        while server.requests < 1:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # the 429 has arrived; the client is cooling down
        await client.join_chat(2)  # a new, unrelated call
        await first
    # Request 1 was the 429; every later one waited out the cool-down.
    assert server.requests == 3
    assert min(server.arrivals[1:]) - server.arrivals[0] >= 0.28


# ----------------------------------------------------------------------------- 5xx and budget


async def test_503_then_success(make_client: MakeClient) -> None:
    async with FaultServer(script=[status(503), status(502)]) as server:
        client = make_client(server.base_url)
        response = await client.join_chat_response(7)
    assert response.attempts == 3
    assert response.data.id == 7


async def test_gives_up_after_max_attempts_with_the_last_error(make_client: MakeClient) -> None:
    async with FaultServer(default=status(500)) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.InternalServerError) as info:
            await client.join_chat(7)
    assert info.value.attempts == FAST.max_attempts
    assert server.requests == FAST.max_attempts


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
async def test_other_4xx_are_never_retried(make_client: MakeClient, code: int) -> None:
    async with FaultServer(default=status(code, body=b'{"error": "nope"}')) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.APIStatusError) as info:
            await client.join_chat(7)
    assert info.value.status == code
    assert server.requests == 1


@pytest.mark.slow
async def test_5xx_storm_does_not_multiply_the_load(make_client: MakeClient) -> None:
    joins = 10_000
    policy = aa.RetryPolicy(backoff_base=0.001, backoff_cap=0.002)
    async with FaultServer(default=status(503)) as server:
        client = make_client(server.base_url, retry=policy)
        outcomes = await client.join_all(range(1, joins + 1), concurrency=200)
    assert len(outcomes) == joins
    assert all(isinstance(o.error, aa.InternalServerError) for o in outcomes)
    # The budget (500 tokens, 5 a retry) allows 100 retries in all, not 3 per join.
    assert server.requests <= joins + policy.budget / policy.retry_cost
    assert client.stats.retries <= policy.budget / policy.retry_cost


# ----------------------------------------------------------------------------- connection faults


async def test_reset_mid_body_is_retried(make_client: MakeClient) -> None:
    async with FaultServer(script=[reset_mid_body]) as server:
        client = make_client(server.base_url)
        response = await client.join_chat_response(3)
    assert response.attempts == 2
    assert acquired(client) == 0


async def test_truncated_body_is_a_connection_error(make_client: MakeClient) -> None:
    async with FaultServer(default=truncated) as server:
        client = make_client(server.base_url, retry=aa.RetryPolicy.disabled())
        with pytest.raises(aa.APIConnectionError) as info:
            await client.join_chat(3)
    assert not isinstance(info.value, aa.APITimeoutError)
    assert info.value.request_sent


async def test_malformed_body_is_a_decode_error_not_retried(make_client: MakeClient) -> None:
    async with FaultServer(default=raw(b"<html>oops</html>")) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.ResponseDecodeError) as info:
            await client.join_chat(3)
    assert server.requests == 1
    assert "oops" in str(info.value)


async def test_oversized_body_stops_at_the_cap(make_client: MakeClient) -> None:
    async with FaultServer(default=raw(b" " * 100_000 + PAYLOAD)) as server:
        client = make_client(server.base_url, max_body_size=10_000)
        with pytest.raises(aa.ResponseDecodeError, match="max_body_size"):
            await client.join_chat(3)
        assert acquired(client) == 0
        assert server.requests == 1


async def test_gzip_bomb_is_capped_on_decompressed_bytes(make_client: MakeClient) -> None:
    import gzip

    bomb = gzip.compress(b" " * 5_000_000 + PAYLOAD)

    async def action(request: Any, server: FaultServer, case_id: int) -> Any:
        from aiohttp import web

        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with FaultServer(default=action) as server:
        client = make_client(server.base_url, max_body_size=1_000_000)
        with pytest.raises(aa.ResponseDecodeError, match="max_body_size"):
            await client.join_chat(3)
    assert len(bomb) < 1_000_000  # the compressed body alone would pass the cap


async def test_connection_refused_is_retried_then_reported(make_client: MakeClient) -> None:
    server = RawServer(lambda n, c: None)
    async with server:
        port = server.port
    client = make_client(f"http://127.0.0.1:{port}/api/v1")
    with pytest.raises(aa.APIConnectionError) as info:
        await client.join_chat(1)
    assert info.value.attempts == FAST.max_attempts
    assert info.value.request_sent is False


async def test_tls_failure_is_distinct_and_never_retried(make_client: MakeClient) -> None:
    async with FaultServer() as server:
        client = make_client(f"https://127.0.0.1:{server.port}/api/v1")
        with pytest.raises(aa.APITLSError) as info:
            await client.join_chat(1)
    assert info.value.attempts == 1


async def test_bad_chunked_encoding_is_a_connection_error(make_client: MakeClient) -> None:
    bad = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n"
    )
    async with RawServer(lambda n, c: bad) as server:
        client = make_client(server.base_url, retry=aa.RetryPolicy.disabled())
        with pytest.raises(aa.APIConnectionError):
            await client.join_chat(1)
    assert acquired(client) == 0


# ----------------------------------------------------------------------------- timeouts, deadline


async def test_hang_before_headers_times_out_per_attempt(make_client: MakeClient) -> None:
    async with FaultServer(default=sleep_then(5)) as server:
        client = make_client(
            server.base_url,
            timeout=aa.Timeouts(total=0.1),
            retry=aa.RetryPolicy(max_attempts=2, backoff_base=0.001),
        )
        with pytest.raises(aa.APITimeoutError) as info:
            await client.join_chat(1)
    assert info.value.attempts == 2


async def test_deadline_spans_all_attempts(make_client: MakeClient) -> None:
    async with FaultServer(default=sleep_then(5)) as server:
        client = make_client(
            server.base_url,
            timeout=aa.Timeouts(total=0.2),
            retry=aa.RetryPolicy(max_attempts=50, backoff_base=0.05, backoff_cap=0.05),
        )
        started = time.monotonic()
        with pytest.raises(aa.APITimeoutError):
            await client.join_chat(1, timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # bound, not a timing: 50 attempts of 0.2 s would take 10 s
    assert server.requests < 50


async def test_backoff_never_sleeps_past_the_deadline(make_client: MakeClient) -> None:
    async with FaultServer(default=status(503)) as server:
        slept, seams = fake_time()
        client = make_client(
            server.base_url,
            retry=aa.RetryPolicy(backoff_base=30, backoff_cap=30),
            random=lambda: 0.99,
            **seams,
        )
        with pytest.raises(aa.InternalServerError) as info:
            await client.join_chat(1, timeout=5)
    assert slept == []  # a 29.7 s backoff does not fit in 5 s: fail now with the 503
    assert info.value.attempts == 1


async def test_a_body_that_arrives_after_its_headers_is_read_whole(
    make_client: MakeClient,
) -> None:
    # Two read paths: a body that came with its headers is taken as is; one still on its
    # way (here in 500-byte pieces, 5 ms apart) is awaited. Both give the same case, and
    # the connection goes back to the pool either way.
    async with FaultServer(script=[drip(0.005, chunk=500)]) as server:
        client = make_client(server.base_url)
        slow = await client.join_chat_response(1684)  # the drip sends the fixture as is
        fast = await client.join_chat_response(2)
    assert slow.raw == PAYLOAD  # every piece, not what had come when the headers did
    assert (slow.data.id, fast.data.id) == (1684, 2)
    assert acquired(client) == 0
    pool = client.transport.session.connector._conns  # type: ignore[union-attr]
    assert sum(len(idle) for idle in pool.values()) == 1  # the one connection, reused


async def test_slow_drip_is_stopped_by_the_total(make_client: MakeClient) -> None:
    async with FaultServer(default=drip(0.02)) as server:
        client = make_client(
            server.base_url,
            timeout=aa.Timeouts(read=5, total=0.3),
            retry=aa.RetryPolicy.disabled(),
        )
        with pytest.raises(aa.APITimeoutError):
            await client.join_chat(1)
    assert acquired(client) == 0


async def test_queueing_for_a_slot_is_not_a_timeout(make_client: MakeClient) -> None:
    script = [sleep_then(0.4)]
    async with FaultServer(script=script) as server:
        client = make_client(
            server.base_url,
            max_concurrency=1,
            timeout=aa.Timeouts(total=0.3),
            retry=aa.RetryPolicy.disabled(),
        )
        slow = asyncio.ensure_future(client.join_chat(1))
        await asyncio.sleep(0.05)
        # Waits ~0.25 s for the only slot; its own 0.3 s starts after that.
        case = await client.join_chat(2)
        with pytest.raises(aa.APITimeoutError):
            await slow
    assert case.id == 2


# ----------------------------------------------------------------------------- envelopes, 405


async def test_error_envelope_with_200(make_client: MakeClient) -> None:
    body = b'{"error": {"code": "ERROR_SERVER_ERROR", "message": "db down", "data": null}}'
    async with FaultServer(script=[raw(body)]) as server:
        client = make_client(server.base_url)
        response = await client.join_chat_response(5)
    assert response.attempts == 2


async def test_dropped_after_read_then_already_joined(make_client: MakeClient) -> None:
    async with FaultServer(script=[drop_after_read]) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.AlreadyJoinedError) as info:
            await client.join_chat(9)
    assert info.value.attempts == 2
    assert info.value.status == 200

    async with FaultServer(script=[drop_after_read]) as server:
        client = make_client(server.base_url)
        [outcome] = await client.join_all([9])
    assert outcome.ok and outcome.already_joined
    assert outcome.attempts == 2
    assert outcome.error is None


async def test_405_switches_method_once_for_the_client(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with FaultServer(script=[status(405)]) as server:
        client = make_client(server.base_url)
        with caplog.at_level("WARNING", logger="acquire_async"):
            await client.join_chat(1)
            await client.join_chat(2)
    assert server.methods == ["POST", "GET", "GET"]
    assert client.join_method == "GET"
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


# ----------------------------------------------------------------------------- concurrency caps


async def test_client_wide_cap_bounds_many_callers(make_client: MakeClient) -> None:
    async with FaultServer(default=sleep_then(0.01)) as server:
        client = make_client(server.base_url, max_concurrency=5)
        await asyncio.gather(*(client.join_chat(i) for i in range(1, 101)))
    assert server.requests == 100
    assert server.peak <= 5
    assert server.peak >= 2  # the cap was actually reached for concurrency


async def test_rate_limit_spaces_requests(make_client: MakeClient) -> None:
    async with FaultServer() as server:
        client = make_client(server.base_url, rate_limit=50)
        await asyncio.gather(*(client.join_chat(i) for i in range(1, 11)))
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
    assert server.arrivals[-1] - server.arrivals[0] >= 9 * 0.02 * 0.9
    assert len(gaps) == 9


# ----------------------------------------------------------------------------- observability


async def test_hooks_stats_and_trace_configs(make_client: MakeClient) -> None:
    events: dict[str, list[Any]] = {"request": [], "response": [], "retry": [], "trace": []}
    trace = aiohttp.TraceConfig()

    async def on_start(*args: Any) -> None:
        events["trace"].append(args)

    async def on_body(*args: Any) -> None:
        events["trace"].append(("body", args[2].chunk))

    trace.on_request_start.append(on_start)
    # With trace configs, the body is read through aiohttp, which sends this signal.
    trace.on_response_chunk_received.append(on_body)
    async with FaultServer(script=[status(503)]) as server:
        client = make_client(
            server.base_url,
            on_request=events["request"].append,
            on_response=events["response"].append,
            on_retry=events["retry"].append,
            trace_configs=[trace],
        )
        await client.join_chat(1)
    assert [e.attempt for e in events["request"]] == [1, 2]
    assert [e.status for e in events["response"]] == [503, 200]
    assert isinstance(events["response"][0].error, aa.InternalServerError)
    assert [e.attempt for e in events["retry"]] == [1]
    bodies = [event[1] for event in events["trace"] if event[0] == "body"]
    assert len(events["trace"]) - len(bodies) == 2  # two request starts
    assert len(bodies) == 2 and b'"id"' in bodies[1]  # the 503's body, then the case
    stats = client.stats.as_dict()
    assert stats["requests"] == 2
    assert stats["retries"] == 1
    assert stats["joined"] == 1
    assert stats["errors"] == {"InternalServerError": 1}
    assert stats["latency_ms"]["p50"] is not None


async def test_one_debug_record_per_attempt(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with FaultServer(script=[status(503)]) as server:
        client = make_client(server.base_url)
        with caplog.at_level("DEBUG", logger="acquire_async"):
            await client.join_chat(1)
    ours = [r for r in caplog.records if r.name == "acquire_async"]
    records = [r for r in ours if r.levelname == "DEBUG"]
    assert len(records) == 2
    assert "status=503" in records[0].getMessage()
    assert "attempt=2" in records[1].getMessage()
    # And one INFO record for the retry between them.
    (retry,) = [r for r in ours if r.levelname == "INFO"]
    assert (
        "retrying join_chat case=1 after attempt 1 (InternalServerError 503)" in retry.getMessage()
    )
    assert all(KEY not in r.getMessage() for r in ours)


async def test_deadline_bounds_the_wait_for_a_slot(make_client: MakeClient) -> None:
    async with FaultServer(default=sleep_then(5)) as server:
        client = make_client(server.base_url, max_concurrency=1, timeout=aa.Timeouts(total=10))
        hog = asyncio.ensure_future(client.join_chat(1))
        while server.requests < 1:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        with pytest.raises(aa.APITimeoutError, match="deadline") as info:
            await client.join_chat(2, timeout=0.2)
        assert time.monotonic() - started < 2.0
        assert info.value.attempts == 0  # it never got a slot, so never left
        assert info.value.request_sent is False
        assert server.requests == 1
        hog.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hog


async def test_deadline_bounds_a_cool_down(make_client: MakeClient) -> None:
    async with FaultServer() as server:
        throttle = aa.LocalThrottle()
        client = make_client(server.base_url, throttle=throttle)
        await throttle.pause(30)
        with pytest.raises(aa.APITimeoutError, match="deadline"):
            await client.join_chat(1, timeout=0.1)
    assert server.requests == 0


async def test_a_long_retry_after_pauses_the_client_at_most_max_retry_after(
    make_client: MakeClient,
) -> None:
    async with FaultServer(script=[status(429, {"Retry-After": "3600"})]) as server:
        throttle = aa.LocalThrottle()
        client = make_client(
            server.base_url, retry=aa.RetryPolicy(max_retry_after=5), throttle=throttle
        )
        with pytest.raises(aa.RateLimitError):
            await client.join_chat(1)
    assert 4 < throttle.paused_for <= 5


async def test_a_borrowed_session_that_raises_for_status_still_maps_errors() -> None:
    async with FaultServer(default=status(404)) as server:
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            client = aa.AcquireClient(api_key=KEY, base_url=server.base_url, session=session)
            with pytest.raises(aa.NotFoundError):
                await client.join_chat(1)
            await client.aclose()
            assert not session.closed  # borrowed: never closed by the client
    assert server.requests == 1


async def test_a_429_is_a_rate_limit_whatever_its_code() -> None:
    body = b'{"error": {"code": "ERROR_SERVER_ERROR", "message": "slow down"}}'
    async with FaultServer(default=status(429, {"Retry-After": "999"}, body)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            with pytest.raises(aa.RateLimitError) as info:
                await client.join_chat(1)
    assert info.value.code == "ERROR_SERVER_ERROR"
    assert info.value.retry_after == 999.0


async def test_session_level_options_are_refused_with_a_borrowed_session() -> None:
    async with aiohttp.ClientSession() as session:
        for option in (
            {"trust_env": True},
            {"trace_configs": [aiohttp.TraceConfig()]},
            {"keepalive_timeout": 1},
        ):
            with pytest.raises(ValueError, match="trace_configs, trust_env and keepalive_timeout"):
                aa.AcquireClient(
                    api_key=KEY, base_url="http://127.0.0.1:9/api/v1", session=session, **option
                )


async def test_get_joins_are_not_resent_behind_the_retry_policy(make_client: MakeClient) -> None:
    # aiohttp would re-send a GET on a dropped keep-alive connection by itself, outside our
    # policy, budget and attempt count: the owned session turns that off.
    async with FaultServer(script=[drop_after_read]) as server:
        client = make_client(server.base_url, join_method="GET", retry=aa.RetryPolicy.disabled())
        with pytest.raises(aa.APIConnectionError) as info:
            await client.join_chat(9)
    assert server.requests == 1
    assert info.value.attempts == 1
    assert info.value.request_sent


async def test_trust_env_ignores_netrc(
    make_client: MakeClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with FaultServer() as server:
        client = make_client(server.base_url, trust_env=True)
        case = await client.join_chat(5)  # aiohttp's netrc auth would clash with our key
    assert case.id == 5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiohttp 3.14 deprecates auth=
async def test_a_borrowed_session_with_auth_is_refused() -> None:
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth("u", "p")) as session:
        with pytest.raises(ValueError, match="auth"):
            aa.AcquireClient(api_key=KEY, base_url="http://127.0.0.1:9/api/v1", session=session)


async def test_attempts_count_only_what_was_sent(make_client: MakeClient) -> None:
    # The deadline passes while the second attempt waits for the cool-down the first one
    # caused: one request was sent, and the error says so.
    async with FaultServer(default=status(503, {"Retry-After": "0.2"})) as server:
        client = make_client(
            server.base_url,
            retry=aa.RetryPolicy(max_retry_after=60, backoff_base=0.001),
            sleep=lambda delay: asyncio.sleep(0),
        )
        with pytest.raises(aa.APIStatusError) as info:
            await client.join_chat(1, timeout=0.1)
    assert server.requests == 1
    assert info.value.attempts == 1


async def test_a_borrowed_session_whose_middleware_reads_the_body() -> None:
    # An app's logging middleware reads the response before we do: aiohttp keeps the body
    # for read(), and the stream is then empty. The join must still see the whole case.
    seen: list[int] = []

    async def log_body(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        response = await handler(request)
        seen.append(len(await response.read()))
        return response

    async with FaultServer() as server:
        async with aiohttp.ClientSession(middlewares=(log_body,)) as session:
            async with aa.AcquireClient(
                api_key=KEY, base_url=server.base_url, session=session
            ) as client:
                case = await client.join_chat(7)
    assert case.id == 7
    assert len(seen) == 1 and seen[0] > 0


async def test_a_custom_response_class_is_read_through_its_read() -> None:
    class Counting(aiohttp.ClientResponse):
        reads = 0

        async def read(self) -> bytes:
            type(self).reads += 1
            return await super().read()

    async with FaultServer() as server:
        async with aiohttp.ClientSession(response_class=Counting) as session:
            async with aa.AcquireClient(
                api_key=KEY, base_url=server.base_url, session=session
            ) as client:
                await client.join_chat(1)
    assert Counting.reads == 1


async def test_an_answer_for_another_case_is_not_a_success(make_client: MakeClient) -> None:
    # A stray answer (a reused connection's, a confused proxy's) names another case.
    async with FaultServer(default=raw(case_body(999))) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.ResponseDecodeError, match="999"):
            await client.join_chat(5)
    assert client.stats.joined == 0


async def test_the_default_body_cap_is_one_mebibyte(make_client: MakeClient) -> None:
    # A hostile body that would still decode costs time and memory in proportion to its
    # size: the default cap keeps it to ~30 ms of event loop.
    big = b'{"data": {"id": 5, "meta": {"x": [' + b"{}," * 400_000 + b"{}]}}}"
    async with FaultServer(default=raw(big)) as server:
        client = make_client(server.base_url)
        with pytest.raises(aa.ResponseDecodeError, match="max_body_size"):
            await client.join_chat(5)
        roomy = make_client(server.base_url, max_body_size=2 * 1024 * 1024)
        assert (await roomy.join_chat(5)).id == 5
