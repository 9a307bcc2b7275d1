"""The engine: one attempt loop for every operation; retry safety belongs to the operation.

Unit tests go through ``MockTransport`` (the supported seam); the never-twice claims are also
checked end to end against the emulator on a real socket, where a dropped answer really left
a stored message behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from payloads import JOIN_RESPONSE

import acquire_async as aa
from acquire_async import _operations
from acquire_async.testing import FakeAcquire, Faults, MockRequest, MockResponse, MockTransport

KEY = "test-key-0123456789"
BASE = "http://api.test/api/v1"
NO_WAIT = aa.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)


def message_answer(case_id: int) -> dict[str, Any]:
    return {"data": {"id": 99, "caseId": case_id, "type": "message", "message": "hi"}}


def client_with(handler: Callable[[MockRequest], Any], **kwargs: Any) -> aa.AcquireClient:
    kwargs.setdefault("retry", NO_WAIT)
    return aa.AcquireClient(api_key=KEY, base_url=BASE, transport=MockTransport(handler), **kwargs)


def script(*answers: Any) -> tuple[Callable[[MockRequest], MockResponse], list[MockRequest]]:
    """A handler that plays ``answers`` in order (an exception is raised), then repeats the last."""
    seen: list[MockRequest] = []

    def handler(request: MockRequest) -> MockResponse:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, MockResponse)
        return answer

    return handler, seen


def status(code: int, **kwargs: Any) -> MockResponse:
    return MockResponse(
        status=code, json={"error": {"code": f"HTTP_{code}", "message": "x"}}, **kwargs
    )


# ----------------------------------------------------------------------------- retry safety


@pytest.mark.parametrize("code", [500, 502, 504])
async def test_a_message_is_never_sent_twice_after_an_answer_that_may_follow_an_action(
    code: int,
) -> None:
    handler, seen = script(status(code), MockResponse(json=message_answer(5)))
    async with client_with(handler) as client:
        with pytest.raises(aa.APIStatusError) as caught:
            await client.add_message(5, "hello")
    assert len(seen) == 1
    assert caught.value.request_sent is True
    assert caught.value.operation == "add_message"


@pytest.mark.parametrize("code", [500, 502, 504])
async def test_a_join_is_retried_after_the_same_answers(code: int) -> None:
    handler, seen = script(status(code), MockResponse(body=JOIN_RESPONSE))
    async with client_with(handler) as client:
        case = await client.join_chat(1684)
    assert case.id == 1684
    assert len(seen) == 2


@pytest.mark.parametrize("code", [408, 429, 503])
async def test_a_message_is_retried_when_the_server_says_it_did_not_act(code: int) -> None:
    handler, seen = script(status(code), MockResponse(json=message_answer(5)))
    async with client_with(handler) as client:
        message = await client.add_message(5, "hello")
    assert message.id == 99
    assert len(seen) == 2


async def test_a_message_is_retried_when_the_request_never_left() -> None:
    refused = aa.APIConnectionError("connection refused", request_sent=False)
    handler, seen = script(refused, MockResponse(json=message_answer(5)))
    async with client_with(handler) as client:
        response = await client.add_message_response(5, "hello")
    assert response.attempts == 2
    assert len(seen) == 2


async def test_a_message_is_retried_after_a_503_then_a_refused_connection() -> None:
    # Neither attempt can have posted it: the 503 says the server did not act.
    refused = aa.APIConnectionError("connection refused", request_sent=False)
    handler, seen = script(status(503), refused, MockResponse(json=message_answer(5)))
    async with client_with(handler) as client:
        response = await client.add_message_response(5, "hello")
    assert response.attempts == 3 and len(seen) == 3


async def test_a_503_alone_reports_that_nothing_happened() -> None:
    handler, _ = script(status(503))
    async with client_with(handler, retry=aa.RetryPolicy.disabled()) as client:
        with pytest.raises(aa.InternalServerError) as caught:
            await client.add_message(5, "hello")
    assert caught.value.request_sent is False


async def test_a_message_is_not_retried_when_the_request_may_have_left() -> None:
    dropped = aa.APIConnectionError("the server closed the connection", request_sent=True)
    handler, seen = script(dropped, MockResponse(json=message_answer(5)))
    async with client_with(handler) as client:
        with pytest.raises(aa.APIConnectionError) as caught:
            await client.add_message(5, "hello")
    assert len(seen) == 1
    assert caught.value.request_sent is True
    assert caught.value.attempts == 1


async def test_a_message_is_sent_as_not_idempotent_and_a_join_as_idempotent() -> None:
    seen: list[MockRequest] = []

    def handler(request: MockRequest) -> MockResponse:
        seen.append(request)
        if request.url.endswith("/join"):
            return MockResponse(body=JOIN_RESPONSE)
        return MockResponse(json=message_answer(1684))

    async with client_with(handler) as client:
        await client.join_chat(1684)
        await client.add_message(1684, "hi")
    assert [r.idempotent for r in seen] == [True, False]


async def test_add_message_after_a_dropped_answer_stores_exactly_one_message() -> None:
    # The emulator stores the message, then drops the connection: the ambiguous failure.
    async with FakeAcquire(3, faults=Faults(sequence=["drop_after_read"])) as fake:
        case_id = sorted(fake.cases)[0]
        async with aa.AcquireClient(
            api_key=fake.api_key, base_url=fake.base_url, retry=NO_WAIT
        ) as client:
            with pytest.raises(aa.APIConnectionError) as caught:
                await client.add_message(case_id, "exactly once")
            assert caught.value.request_sent is True
            assert caught.value.attempts == 1
        assert [m["message"] for m in fake.messages(case_id)] == ["exactly once"]


async def test_a_join_after_a_dropped_answer_is_retried_and_reads_as_already_joined() -> None:
    async with FakeAcquire(3, faults=Faults(sequence=["drop_after_read"])) as fake:
        case_id = sorted(fake.cases)[0]
        async with aa.AcquireClient(
            api_key=fake.api_key, base_url=fake.base_url, retry=NO_WAIT
        ) as client:
            with pytest.raises(aa.AlreadyJoinedError) as caught:
                await client.join_chat(case_id)
        assert caught.value.attempts == 2
        assert fake.is_joined(case_id)


# ----------------------------------------------------------------------------- one engine


async def test_every_operation_through_the_emulator() -> None:
    async with FakeAcquire(3) as fake:
        first, second, third = sorted(fake.cases)
        async with aa.AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            joined = await client.join_chat(first)
            message = await client.add_message(first, "Hello!")
            rejected = await client.reject_chat(second)
            closed = await client.close_chat(third)
            stats = client.stats.as_dict()
    assert joined.id == first
    assert message.message == "Hello!" and message.case_id == first
    assert rejected.id == second
    assert closed.case_id == third
    assert fake.cases[third]["status"] == "closed"
    assert stats["succeeded"] == {
        "join_chat": 1,
        "add_message": 1,
        "reject_chat": 1,
        "close_chat": 1,
    }


async def test_errors_carry_their_call_in_one_place() -> None:
    handler, _ = script(
        MockResponse(
            status=404,
            json={"error": {"code": "ERROR_RECORD_NOT_FOUND", "message": "no"}},
            headers={"X-Request-Id": "req-7"},
        )
    )
    async with client_with(handler) as client:
        with pytest.raises(aa.NotFoundError) as caught:
            await client.reject_chat(42)
    error = caught.value
    assert (error.operation, error.method) == ("reject_chat", "POST")
    assert error.url == f"{BASE}/crm/messenger/chat/reject"
    assert error.request_id == "req-7"
    assert error.attempts == 1 and error.request_sent is True


async def test_already_joined_belongs_to_join_alone() -> None:
    already = MockResponse(json={"error": {"code": "CHAT_ALREADY_JOINED", "message": "x"}})
    handler, _ = script(already)
    async with client_with(handler) as client:
        with pytest.raises(aa.AlreadyJoinedError):
            await client.join_chat(5)
        with pytest.raises(aa.ConflictError) as caught:
            await client.add_message(5, "hi")
    assert not isinstance(caught.value, aa.AlreadyJoinedError)


async def test_a_405_switches_methods_for_join_only() -> None:
    handler, seen = script(MockResponse(status=405, body=b""))
    async with client_with(handler) as client:
        with pytest.raises(aa.APIStatusError):
            await client.add_message(5, "hi")
        assert [r.method for r in seen] == ["POST"]
        with pytest.raises(aa.APIStatusError):
            await client.join_chat(5)
        assert [r.method for r in seen] == ["POST", "POST", "GET"]
        assert client.join_method == "GET"


async def test_hooks_name_the_operation() -> None:
    events: list[Any] = []
    handler, _ = script(status(503), MockResponse(json=message_answer(5)))
    async with client_with(
        handler, on_request=events.append, on_response=events.append, on_retry=events.append
    ) as client:
        await client.add_message(5, "hi")
    assert {type(e).__name__ for e in events} == {"RequestEvent", "ResponseEvent", "RetryEvent"}
    assert {e.operation for e in events} == {"add_message"}


async def test_the_request_bodies_each_operation_sends() -> None:
    seen: list[MockRequest] = []

    def handler(request: MockRequest) -> MockResponse:
        seen.append(request)
        path = request.url.rsplit("/", 1)[1]
        if path == "add-message":
            return MockResponse(json=message_answer(7))
        if path == "close":
            return MockResponse(json={"data": {"0": {"caseId": 7}, "userId": 1}})
        return MockResponse(json={"data": {"id": 7}})

    async with client_with(handler) as client:
        await client.reject_chat(7)
        await client.close_chat(7, archive=False, ask_feedback=True)
        await client.add_message(7, 'say "hi"\n', channel="chat", translate_lang_key="en")
    assert [(r.method, r.url.rsplit("/", 1)[1]) for r in seen] == [
        ("POST", "reject"),
        ("POST", "close"),
        ("POST", "add-message"),
    ]
    assert seen[0].json() == {"caseId": 7}
    assert seen[1].json() == {
        "caseId": 7,
        "closingState": "handled",
        "archive": "no",
        "askFeedback": True,
    }
    assert seen[2].json() == {
        "caseId": 7,
        "channel": "chat",
        "message": {"type": "message", "message": 'say "hi"\n', "translateLangKey": "en"},
    }
    assert json.loads(seen[2].body)["message"]["message"] == 'say "hi"\n'


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.add_message(5, ""), ValueError),
        (lambda c: c.add_message(5, 3), TypeError),
        (lambda c: c.add_message(5, "hi", channel=1), TypeError),
        (lambda c: c.add_message("5", "hi"), TypeError),
        (lambda c: c.close_chat(5, archive="yes"), TypeError),
        (lambda c: c.close_chat(5, ask_feedback=1), TypeError),
        (lambda c: c.close_chat(5, closing_state=""), ValueError),
        (lambda c: c.reject_chat(0), ValueError),
        (lambda c: c.reject_chat(5, timeout=-1), ValueError),
    ],
)
async def test_bad_arguments_fail_before_any_request(call: Any, error: type[Exception]) -> None:
    handler, seen = script(MockResponse(json={"data": {"id": 5}}))
    async with client_with(handler) as client:
        with pytest.raises(error):
            await call(client)
    assert seen == []


# ----------------------------------------------------------------------------- throttle seam


class CountingThrottle:
    """A Throttle of our own with a fast path: ``try_acquire`` is found on the throttle."""

    def __init__(self, fast: bool) -> None:
        self.fast = fast
        self.tried = self.acquired = 0

    def try_acquire(self) -> bool:
        self.tried += 1
        return self.fast

    async def acquire(self) -> None:
        self.acquired += 1

    async def pause(self, seconds: float) -> None:
        return None


@pytest.mark.parametrize("fast", [True, False])
async def test_any_throttle_may_offer_the_fast_path(fast: bool) -> None:
    throttle = CountingThrottle(fast)
    handler, _ = script(MockResponse(body=JOIN_RESPONSE))
    async with client_with(handler, throttle=throttle) as client:
        for _ in range(3):
            await client.join_chat(1684)
    assert throttle.tried == 3
    assert throttle.acquired == (0 if fast else 3)


def test_operations_are_data() -> None:
    ops = {op.name: op for op in _operations.OPERATIONS}
    assert set(ops) == {"join_chat", "reject_chat", "close_chat", "add_message"}
    assert ops["join_chat"].methods == ("POST", "GET")
    assert all(op.methods == ("POST",) for name, op in ops.items() if name != "join_chat")
    assert {name for name, op in ops.items() if not op.retry_safe} == {"add_message"}
    with pytest.raises(AttributeError):
        ops["join_chat"].retry_safe = False  # type: ignore[misc]


async def test_an_earlier_attempts_echo_leaves_no_trace_in_the_traceback() -> None:
    # Attempt 1: a 500 whose body echoes the key (masked, retried); attempt 2: a refused
    # connection. The raised error's frames must not hold attempt 1's raw body.
    key = "sk_live_ECHOECHOECHO12345"
    echo = MockResponse(status=500, body=f"<html>Bearer {key}</html>".encode())
    refused = aa.APIConnectionError("connection refused", request_sent=False)
    handler, _ = script(echo, refused)
    client = aa.AcquireClient(
        api_key=key,
        base_url=BASE,
        transport=MockTransport(handler),
        retry=aa.RetryPolicy(max_attempts=2, backoff_base=0.001),
    )
    with pytest.raises(aa.APIConnectionError) as caught:
        await client.join_chat(5)
    import traceback

    error = caught.value
    assert error.__traceback__ is not None
    # The SDK's frames only: this test's own frame holds the key as a local.
    text = "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__.tb_next, capture_locals=True
        ).format()
    )
    assert "_attempts" in text  # the engine's frame is there, with its locals
    assert key not in text and key[:12] not in text
    await client.aclose()


async def test_the_deadline_says_nothing_was_sent_when_nothing_was() -> None:
    # Attempt 1 is refused (never left); the retry then waits out the deadline in the
    # throttle's cool-down: the backstop's error must not claim a request went out.
    class Paused:
        async def acquire(self) -> None:
            await asyncio.sleep(10)

        async def pause(self, seconds: float) -> None:
            return None

    refused = aa.APIConnectionError("connection refused", request_sent=False)
    handler, seen = script(refused, MockResponse(json=message_answer(5)))
    throttle = Paused()
    calls = [0]

    def first_free() -> bool:
        calls[0] += 1
        return calls[0] == 1

    throttle.try_acquire = first_free  # type: ignore[attr-defined]
    async with client_with(handler, throttle=throttle) as client:
        with pytest.raises(aa.APITimeoutError) as caught:
            await client.add_message(5, "hi", timeout=0.2)
    assert len(seen) == 1
    assert caught.value.request_sent is False


async def test_a_405_then_a_refused_switch_did_not_act() -> None:
    refused = aa.APIConnectionError("connection refused", request_sent=False)
    handler, seen = script(MockResponse(status=405, body=b""), refused)
    async with client_with(handler, retry=aa.RetryPolicy.disabled()) as client:
        with pytest.raises(aa.APIConnectionError) as caught:
            await client.join_chat(5)
    assert [r.method for r in seen] == ["POST", "GET"]
    assert caught.value.request_sent is False
