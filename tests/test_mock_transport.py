"""``acquire_async.testing.MockTransport``: a Transport that answers from a function.

The first tests drive ``send`` directly; the last one is the example of ``docs/testing.md``
(kept in step with it by ``test_the_documented_example_is_this_file``).
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import msgspec
import pytest
from docexample import assert_example_is_in
from yarl import URL

from acquire_async import AcquireClient, _transport
from acquire_async._protocol import JOIN_CODES, RawResponse, decode_case
from acquire_async.errors import APIConnectionError, APITimeoutError
from acquire_async.testing import MockRequest, MockResponse, MockTransport

ROOT = Path(__file__).resolve().parents[1]
URL_JOIN = URL("https://acme.acquire.io/api/v1/crm/messenger/chat/join")
HEADERS = {"Authorization": "Bearer test-key", "Content-Type": "application/json"}
BODY = b'{"caseId":1684,"askJoin":true}'


async def send(transport: MockTransport, **options: Any) -> RawResponse:
    return await transport.send("POST", URL_JOIN, HEADERS, BODY, **options)


# --------------------------------------------------------------------------- send


async def test_a_sync_handler_sees_the_request_and_its_answer_is_returned() -> None:
    seen: list[MockRequest] = []

    def handler(request: MockRequest) -> MockResponse:
        seen.append(request)
        return MockResponse(json={"data": {"id": 1684, "status": "active"}})

    raw = await send(MockTransport(handler), timeout=2.5, idempotent=False)

    assert isinstance(raw, RawResponse)
    assert raw.status == 200
    assert raw.reason is None
    assert msgspec.json.decode(raw.body) == {"data": {"id": 1684, "status": "active"}}
    assert raw.headers["content-type"] == "application/json"  # names are case-insensitive
    assert decode_case(raw.status, raw.headers, raw.body, codes=JOIN_CODES).id == 1684
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "https://acme.acquire.io/api/v1/crm/messenger/chat/join"
    assert isinstance(request.url, str)
    assert request.body == BODY
    assert request.json() == {"caseId": 1684, "askJoin": True}
    assert request.headers["authorization"] == "Bearer test-key"
    assert (request.timeout, request.idempotent) == (2.5, False)


async def test_an_async_handler_is_awaited() -> None:
    async def handler(request: MockRequest) -> MockResponse:
        await asyncio.sleep(0)
        return MockResponse(503, body=b"<html>busy</html>", headers={"Retry-After": "3"})

    raw = await send(MockTransport(handler))
    assert (raw.status, raw.body, raw.headers["retry-after"]) == (503, b"<html>busy</html>", "3")
    assert "Content-Type" not in raw.headers


async def test_the_defaults_of_a_request() -> None:
    seen: list[MockRequest] = []
    transport = MockTransport(lambda request: seen.append(request) or MockResponse())
    raw = await send(transport)
    assert (raw.status, raw.body) == (200, b"")
    assert (seen[0].timeout, seen[0].idempotent) == (None, True)


async def test_a_connection_error_the_handler_raises_reaches_the_caller() -> None:
    def handler(request: MockRequest) -> MockResponse:
        raise APIConnectionError("connection refused", request_sent=False)

    with pytest.raises(APIConnectionError) as caught:
        await send(MockTransport(handler))
    assert caught.value.request_sent is False


async def test_a_slow_async_handler_is_cut_by_the_timeout() -> None:
    async def handler(request: MockRequest) -> MockResponse:
        await asyncio.sleep(30)
        return MockResponse()

    with pytest.raises(APITimeoutError) as caught:
        await send(MockTransport(handler), timeout=0.01)
    assert caught.value.request_sent is True  # the handler had the request


async def test_cancellation_passes_through() -> None:
    started = asyncio.Event()

    async def handler(request: MockRequest) -> MockResponse:
        started.set()
        await asyncio.sleep(30)
        return MockResponse()

    task = asyncio.create_task(send(MockTransport(handler), timeout=10))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handler_must_answer_a_mock_response() -> None:
    transport = MockTransport(lambda request: {"data": {}})
    with pytest.raises(TypeError, match="MockResponse"):
        await send(transport)


async def test_aclose_is_a_no_op() -> None:
    transport = MockTransport(lambda request: MockResponse(204))
    await transport.aclose()
    await transport.aclose()
    assert (await send(transport)).status == 204


def test_the_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="handler"):
        MockTransport("not a function")  # type: ignore[arg-type]


def test_a_request_repr_shows_no_headers_or_body() -> None:
    request = MockRequest("POST", str(URL_JOIN), HEADERS, BODY)
    assert "test-key" not in repr(request)
    assert "test-key" not in str(request)
    assert repr(request) == f"<MockRequest POST {URL_JOIN}>"


def test_mock_transport_has_the_transport_protocol_signatures() -> None:
    protocol = _transport.Transport
    assert isinstance(MockTransport(lambda request: MockResponse()), protocol)
    for name in ("send", "aclose"):
        assert inspect.iscoroutinefunction(getattr(MockTransport, name))
        mine, theirs = (
            [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
            for f in (getattr(MockTransport, name), getattr(protocol, name))
        )
        assert mine == theirs, name


# --------------------------------------------------------------------------- MockResponse


def test_mock_response_from_json_body_and_reason() -> None:
    answer = MockResponse(413, body=b"too big", reason="Request Entity Too Large")
    assert (answer.status, answer.body, answer.reason) == (
        413,
        b"too big",
        "Request Entity Too Large",
    )
    assert dict(answer.headers) == {}
    typed = MockResponse(json=None, headers={"Content-Type": "application/problem+json"})
    assert typed.body == b"null"
    assert dict(typed.headers) == {"Content-Type": "application/problem+json"}
    assert "MockResponse 200" in repr(typed)


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"status": "200"}, TypeError, "status"),
        ({"status": True}, TypeError, "status"),
        ({"status": 99}, ValueError, "status"),
        ({"status": 600}, ValueError, "status"),
        ({"body": "text"}, TypeError, "body"),
        ({"body": b"x", "json": {}}, ValueError, "json"),
        ({"json": {"when": object()}}, TypeError, "json"),
        ({"headers": [("a", "b")]}, TypeError, "headers"),
        ({"headers": {"a": 1}}, TypeError, "headers"),
        ({"reason": b"OK"}, TypeError, "reason"),
    ],
)
def test_mock_response_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], word: str
) -> None:
    with pytest.raises(error, match=word):
        MockResponse(**kwargs)


# --------------------------------------------------------------------------- the example


# The documented example (docs/testing.md, "MockTransport").
async def test_join_chat_with_a_mock_transport() -> None:
    sent: list[MockRequest] = []

    def acquire(request: MockRequest) -> MockResponse:
        sent.append(request)
        return MockResponse(json={"data": {"id": 1684, "status": "active", "users": []}})

    async with AcquireClient("acme", "test-key", transport=MockTransport(acquire)) as client:
        case = await client.join_chat(1684)

    assert case.status == "active"
    (request,) = sent
    assert request.method == "POST"
    assert request.url == "https://acme.acquire.io/api/v1/crm/messenger/chat/join"
    assert request.json() == {"caseId": 1684, "askJoin": True}
    assert request.headers["Authorization"] == "Bearer test-key"


def test_the_documented_example_is_this_file() -> None:
    assert_example_is_in(ROOT / "docs" / "testing.md", "## `MockTransport`", Path(__file__))
