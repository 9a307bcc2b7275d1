"""AcquireClient against a mocked aiohttp (aioresponses): request shape, lifecycle, retries."""

from __future__ import annotations

import gc
import logging
import platform
import warnings
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses.core import RequestCall
from payloads import ALREADY_JOINED, JOIN_RESPONSE, JOIN_URL
from stubs import StubTransport, answer
from yarl import URL

import acquire_async
from acquire_async import (
    AcquireClient,
    AlreadyJoinedError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    Response,
    ResponseDecodeError,
    RetryPolicy,
    Timeouts,
)
from acquire_async._protocol import JOIN_CODES, decode_case

KEY = "test-key-123"
SDK_USER_AGENT = (
    f"acquire-async/{acquire_async.__version__} aiohttp/{aiohttp.__version__} "
    f"python/{platform.python_version()}"
)
FAST = RetryPolicy(backoff_base=0.001)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACQUIRE_ACCOUNT_ID", raising=False)
    monkeypatch.delenv("ACQUIRE_API_KEY", raising=False)
    monkeypatch.delenv("ACQUIRE_BASE_URL", raising=False)


def _calls(mock: aioresponses, method: str, url: str = JOIN_URL) -> list[RequestCall]:
    return mock.requests.get((method, URL(url)), [])


def _release(holder: list[Any]) -> None:
    holder.clear()  # the last reference: the client's __del__ runs here
    gc.collect()


def _count(mock: aioresponses) -> int:
    return sum(len(calls) for calls in mock.requests.values())


# --------------------------------------------------------------------------- request shape


async def test_request_shape(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY) as client:
        case = await client.join_chat(1684)
    assert case.id == 1684
    assert list(mock_http.requests) == [("POST", URL(JOIN_URL))]
    (call,) = _calls(mock_http, "POST")
    headers = call.kwargs["headers"]
    assert dict(headers) == {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": SDK_USER_AGENT,
    }
    assert call.kwargs["data"] == b'{"caseId":1684,"askJoin":true}'
    assert call.kwargs["allow_redirects"] is False
    assert call.kwargs["timeout"] == aiohttp.ClientTimeout(total=60, connect=30, sock_connect=10)


async def test_ask_join_false_is_sent(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY) as client:
        await client.join_chat(1684, ask_join=False)
    (call,) = _calls(mock_http, "POST")
    assert call.kwargs["data"] == b'{"caseId":1684,"askJoin":false}'


async def test_user_agent_prefix(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY, user_agent="myapp/1") as client:
        await client.join_chat(1684)
    (call,) = _calls(mock_http, "POST")
    assert call.kwargs["headers"]["User-Agent"] == f"myapp/1 {SDK_USER_AGENT}"


@pytest.mark.parametrize("user_agent", ["caf\u00e9/1", "app\r\nX-Evil: 1", "a\nb"])
def test_user_agent_must_be_printable_ascii(user_agent: str) -> None:
    with pytest.raises(ValueError, match="user_agent"):
        AcquireClient("acme", KEY, user_agent=user_agent)


@pytest.mark.parametrize("user_agent", [123, b"myapp/1"])
def test_user_agent_non_str_is_a_type_error(user_agent: Any) -> None:
    with pytest.raises(TypeError, match="user_agent"):
        AcquireClient("acme", KEY, user_agent=user_agent)


def test_client_timeout_number_sets_total() -> None:
    client = AcquireClient("acme", KEY, timeout=5)
    assert client.transport.timeouts == Timeouts(total=5.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("join_method", ["GET", "get"])
async def test_join_method_get(join_method: str, mock_http: aioresponses) -> None:
    mock_http.get(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY, join_method=join_method) as client:
        assert client.join_method == "GET"
        await client.join_chat(1684)
    assert list(mock_http.requests) == [("GET", URL(JOIN_URL))]
    (call,) = _calls(mock_http, "GET")
    assert call.kwargs["data"] == b'{"caseId":1684,"askJoin":true}'


@pytest.mark.parametrize("join_method", ["PUT", ""])
def test_join_method_refused(join_method: Any) -> None:
    with pytest.raises(ValueError, match="join_method"):
        AcquireClient("acme", KEY, join_method=join_method)


# --------------------------------------------------------------------------- 405 fallback


async def test_405_switches_to_get_once_and_keeps_it(
    mock_http: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="acquire_async")
    mock_http.post(JOIN_URL, status=405)
    mock_http.get(JOIN_URL, body=JOIN_RESPONSE, repeat=True)
    async with AcquireClient("acme", KEY) as client:
        assert client.join_method == "POST"
        response = await client.join_chat_response(1684)
        assert response.data.id == 1684
        assert client.join_method == "GET"
        await client.join_chat(1684)
        assert client.join_method == "GET"
    assert len(_calls(mock_http, "POST")) == 1
    gets = _calls(mock_http, "GET")
    assert [c.kwargs["data"] for c in gets] == [
        b'{"caseId":1684,"askJoin":true}',
        b'{"caseId":1684,"askJoin":true}',
    ]
    warned = [
        r for r in caplog.records if r.name == "acquire_async" and r.levelno == logging.WARNING
    ]
    assert len(warned) == 1
    assert "405" in warned[0].getMessage()
    assert "GET" in warned[0].getMessage()


async def test_405_to_get_switches_to_post(mock_http: aioresponses) -> None:
    mock_http.get(JOIN_URL, status=405)
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY, join_method="GET") as client:
        await client.join_chat(1684)
        assert client.join_method == "POST"
    assert (len(_calls(mock_http, "GET")), len(_calls(mock_http, "POST"))) == (1, 1)


async def test_405_to_both_methods_fails_after_two_requests(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, status=405, repeat=True)
    mock_http.get(JOIN_URL, status=405, repeat=True)
    async with AcquireClient("acme", KEY, retry=FAST) as client:
        with pytest.raises(APIStatusError) as info:
            await client.join_chat(1684)
    assert type(info.value) is APIStatusError
    assert info.value.status == 405
    assert info.value.attempts == 2
    assert _count(mock_http) == 2


# --------------------------------------------------------------------------- environment


async def test_env_fallback(monkeypatch: pytest.MonkeyPatch, mock_http: aioresponses) -> None:
    monkeypatch.setenv("ACQUIRE_ACCOUNT_ID", "envco")
    monkeypatch.setenv("ACQUIRE_API_KEY", "env-key-1")
    url = "https://envco.acquire.io/api/v1/crm/messenger/chat/join"
    mock_http.post(url, body=JOIN_RESPONSE)
    async with AcquireClient() as client:
        assert client.base_url == "https://envco.acquire.io/api/v1"
        await client.join_chat(1684)
    (call,) = _calls(mock_http, "POST", url)
    assert call.kwargs["headers"]["Authorization"] == "Bearer env-key-1"


async def test_arguments_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACQUIRE_ACCOUNT_ID", "envco")
    monkeypatch.setenv("ACQUIRE_API_KEY", "env-key-1")
    stub = StubTransport(answer, keep_headers=True)
    client = AcquireClient("argco", "arg-key", transport=stub)
    assert client.base_url == "https://argco.acquire.io/api/v1"
    await client.join_chat(5)
    assert stub.headers[0]["Authorization"] == "Bearer arg-key"
    assert AcquireClient(base_url="http://127.0.0.1:1/api/v1").base_url == (
        "http://127.0.0.1:1/api/v1"
    )


def test_base_url_from_env_points_the_client_at_an_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACQUIRE_ACCOUNT_ID", "envco")
    monkeypatch.setenv("ACQUIRE_BASE_URL", "http://127.0.0.1:8080/api/v1")
    # Before the account id of the environment, after the arguments.
    assert AcquireClient(api_key=KEY).base_url == "http://127.0.0.1:8080/api/v1"
    assert AcquireClient("argco", KEY).base_url == "https://argco.acquire.io/api/v1"
    assert AcquireClient(api_key=KEY, base_url="http://h:1/v").base_url == "http://h:1/v"
    monkeypatch.setenv("ACQUIRE_BASE_URL", "")  # empty: as if unset
    assert AcquireClient(api_key=KEY).base_url == "https://envco.acquire.io/api/v1"


def test_a_bad_base_url_from_env_names_the_variable_not_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACQUIRE_BASE_URL", "https://user:hunter2@gw.example.com/api/v1")
    with pytest.raises(ValueError, match="ACQUIRE_BASE_URL") as info:
        AcquireClient(api_key=KEY)
    assert "hunter2" not in str(info.value)
    monkeypatch.setenv("ACQUIRE_BASE_URL", "ftp://gw.example.com/")
    with pytest.raises(ValueError, match="ACQUIRE_BASE_URL"):
        AcquireClient(api_key=KEY)


@pytest.mark.parametrize("env_key", [None, ""])
def test_missing_api_key_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, env_key: str | None
) -> None:
    if env_key is not None:
        monkeypatch.setenv("ACQUIRE_API_KEY", env_key)
    with pytest.raises(ValueError, match="api_key is required"):
        AcquireClient("acme")


@pytest.mark.parametrize("env_account", [None, ""])
def test_missing_account_id_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, env_account: str | None
) -> None:
    if env_account is not None:
        monkeypatch.setenv("ACQUIRE_ACCOUNT_ID", env_account)
    with pytest.raises(ValueError, match="account_id is required"):
        AcquireClient(api_key=KEY)


def test_bad_account_id_from_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACQUIRE_ACCOUNT_ID", "evil.com/")
    with pytest.raises(ValueError, match="account_id"):
        AcquireClient(api_key=KEY)


# --------------------------------------------------------------------------- lifecycle


async def test_closed_client_raises_runtime_error(mock_http: aioresponses) -> None:
    client = AcquireClient("acme", KEY)
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.join_chat(1684)
    with pytest.raises(RuntimeError, match="closed"):
        await client.join_chat_response(1684)
    with pytest.raises(RuntimeError, match="closed"):
        client.join_many([1684])
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass
    assert mock_http.requests == {}


async def test_client_closed_after_use_raises(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE, repeat=True)
    async with AcquireClient("acme", KEY) as client:
        await client.join_chat(1684)
    with pytest.raises(RuntimeError, match="closed"):
        await client.join_chat(1684)
    assert _count(mock_http) == 1


async def test_aclose_twice(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    client = AcquireClient("acme", KEY)
    assert not client.closed
    await client.join_chat(1684)
    session = client.transport.session
    assert session is not None
    assert not session.closed
    await client.aclose()
    await client.aclose()
    assert client.closed
    assert session.closed


async def test_aclose_without_any_request() -> None:
    client = AcquireClient("acme", KEY)
    await client.aclose()
    await client.aclose()
    assert client.closed


async def test_borrowed_session_is_used_and_not_closed(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with aiohttp.ClientSession() as session:
        client = AcquireClient("acme", KEY, session=session)
        await client.join_chat(1684)
        assert client.transport.session is session
        await client.aclose()
        assert client.closed
        assert not session.closed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del client
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert _count(mock_http) == 1


async def test_borrowed_session_dropped_without_aclose_does_not_warn(
    mock_http: aioresponses,
) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with aiohttp.ClientSession() as session:
        client = AcquireClient("acme", KEY, session=session)
        await client.join_chat(1684)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del client
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not session.closed


def test_session_must_be_a_client_session() -> None:
    with pytest.raises(TypeError, match="session"):
        AcquireClient("acme", KEY, session=object())  # type: ignore[arg-type]


async def test_owned_client_never_closed_warns(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    client = AcquireClient("acme", KEY)
    await client.join_chat(1684)
    session = client.transport.session
    assert session is not None
    holder = [client]
    del client
    try:
        with pytest.warns(ResourceWarning, match="never closed"):
            _release(holder)
    finally:
        await session.close()


async def test_unused_client_dropped_does_not_warn() -> None:
    client = AcquireClient("acme", KEY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# --------------------------------------------------------------------------- join_chat_response


async def test_join_chat_response(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE, headers={"X-Request-Id": "req-9"})
    async with AcquireClient("acme", KEY) as client:
        response = await client.join_chat_response(1684)
    assert isinstance(response, Response)
    assert response.raw == JOIN_RESPONSE
    assert type(response.raw) is bytes
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "req-9"
    assert response.headers["x-request-id"] == "req-9"
    assert response.request_id == "req-9"
    assert response.attempts == 1
    assert response.elapsed >= 0
    assert response.data == decode_case(200, {}, JOIN_RESPONSE, codes=JOIN_CODES)
    with pytest.raises(AttributeError):
        response.status = 201  # type: ignore[misc]


async def test_join_chat_response_without_request_id(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY) as client:
        assert (await client.join_chat_response(1684)).request_id is None


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("case_id", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (2**63, ValueError),
        (True, TypeError),
        ("1684", TypeError),
        (1684.0, TypeError),
        (None, TypeError),
    ],
)
async def test_bad_case_id_before_any_request(
    case_id: Any, error: type[Exception], mock_http: aioresponses
) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE, repeat=True)
    async with AcquireClient("acme", KEY) as client:
        with pytest.raises(error, match="case_id"):
            await client.join_chat(case_id)
        with pytest.raises(error, match="case_id"):
            await client.join_chat_response(case_id)
        assert client.transport.session is None  # not even a session was opened
    assert mock_http.requests == {}


@pytest.mark.parametrize("ask_join", [1, 0, "true", None])
async def test_non_bool_ask_join(ask_join: Any, mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE, repeat=True)
    async with AcquireClient("acme", KEY) as client:
        with pytest.raises(TypeError, match="ask_join"):
            await client.join_chat(1684, ask_join=ask_join)
        with pytest.raises(TypeError, match="ask_join"):
            client.join_many([1684], ask_join=ask_join)
    assert mock_http.requests == {}


# --------------------------------------------------------------------------- retries


async def test_503_then_200_is_retried(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, status=503)
    mock_http.post(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", KEY, retry=FAST) as client:
        response = await client.join_chat_response(1684)
        assert client.stats.retries == 1
    assert response.attempts == 2
    assert response.data.id == 1684
    assert len(_calls(mock_http, "POST")) == 2


async def test_503_until_max_attempts(mock_http: aioresponses) -> None:
    mock_http.post(JOIN_URL, status=503, repeat=True)
    policy = RetryPolicy(max_attempts=3, backoff_base=0.001)
    async with AcquireClient("acme", KEY, retry=policy) as client:
        with pytest.raises(InternalServerError) as info:
            await client.join_chat(1684)
    assert info.value.status == 503
    assert info.value.attempts == 3
    assert len(_calls(mock_http, "POST")) == 3


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, b'{"error":{"code":"ERROR_INVALID_INPUT","message":"bad"}}', BadRequestError),
        (400, b'{"error":{"code":"ERROR_RECORD_NOT_FOUND"}}', NotFoundError),
        (401, b'{"error":{"code":"ERROR_UNAUTHORIZED"}}', AuthenticationError),
        (401, b"", AuthenticationError),
        (200, b"<html>maintenance</html>", ResponseDecodeError),
        (200, b'{"data":{"id":"x"}}', ResponseDecodeError),
        (200, b"{}", ResponseDecodeError),
        (200, ALREADY_JOINED, AlreadyJoinedError),
    ],
)
async def test_never_retried(
    status: int, body: bytes, error: type[Exception], mock_http: aioresponses
) -> None:
    mock_http.post(JOIN_URL, status=status, body=body, repeat=True)
    async with AcquireClient("acme", KEY, retry=FAST) as client:
        with pytest.raises(error) as info:
            await client.join_chat(1684)
        assert client.stats.retries == 0
    assert type(info.value) is error
    assert info.value.attempts == 1
    assert len(_calls(mock_http, "POST")) == 1


# --------------------------------------------------------------------------- constructor checks


async def _async_hook(event: object) -> None:
    return None


class _AsyncCallable:
    async def __call__(self, event: object) -> None:
        return None


@pytest.mark.parametrize("name", ["on_request", "on_response", "on_retry"])
@pytest.mark.parametrize("hook", ["print", 3, _async_hook, _AsyncCallable()])
def test_hooks_must_be_plain_callables(name: str, hook: Any) -> None:
    with pytest.raises(TypeError, match=name):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", **{name: hook})


def test_a_plain_function_or_callable_object_is_a_hook() -> None:
    class Hook:
        def __call__(self, event: object) -> None:
            return None

    AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", on_request=Hook(), on_retry=print)


@pytest.mark.parametrize("throttle", [object(), 5, "local"])
def test_throttle_must_be_a_throttle(throttle: Any) -> None:
    with pytest.raises(TypeError, match="throttle"):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", throttle=throttle)


@pytest.mark.parametrize("configs", ["trace", [object()], 3, [aiohttp.TraceConfig(), None]])
def test_trace_configs_items_must_be_trace_configs(
    configs: Any, recwarn: pytest.WarningsRecorder
) -> None:
    with pytest.raises(TypeError, match="trace_configs"):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", trace_configs=configs)


async def test_bad_trace_configs_leak_no_session() -> None:
    # Refused at construction: no session was ever created, so none is left unclosed
    # (ResourceWarning is an error in this suite).
    with pytest.raises(TypeError):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", trace_configs=[object()])  # type: ignore[list-item]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_trust_env_must_be_a_bool(value: Any) -> None:
    with pytest.raises(TypeError, match="trust_env"):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", trust_env=value)


@pytest.mark.parametrize("join_method", [None, 1, b"POST"])
def test_join_method_of_the_wrong_type_is_a_type_error(join_method: Any) -> None:
    with pytest.raises(TypeError, match="join_method"):
        AcquireClient(api_key=KEY, base_url="http://127.0.0.1:1", join_method=join_method)
