"""The emulator's routes beyond the join: reject, close and add-message, on one case store.

Like ``test_emulator.py``, these drive ``FakeAcquire`` with a plain aiohttp client and compare
its answers with Acquire's published examples (``tests/fixtures/acquire-examples/``), so the
SDK's codec is not what decides whether the emulator is right.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from payloads import EXAMPLES, Reply

from acquire_async import errors
from acquire_async._protocol import JOIN_CODES, decode_case
from acquire_async.testing import FakeAcquire, Faults, make_waiting_case

JOIN = "/crm/messenger/chat/join"
REJECT = "/crm/messenger/chat/reject"
CLOSE = "/crm/messenger/chat/close"
ADD_MESSAGE = "/crm/messenger/chat/add-message"
NOW = datetime(2021, 3, 30, 16, 5, 46, 250000, tzinfo=timezone.utc)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def published(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())["data"]


PUBLISHED_REJECT = published("crm-messenger-chat-reject__response-200__2021-03-24_02cecce.json")
PUBLISHED_CLOSE = published("crm-messenger-chat-close__response-200__2021-03-24_45d0c14.json")
PUBLISHED_MESSAGE = published(
    "crm-messenger-chat-add-message__response-200__2021-04-08_ed5501f.json"
)
PUBLISHED_JOIN = published(
    "crm-messenger-chat-join__response-200__FINAL-POST-version__2021-04-01_498d8f1.json"
)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    fake: FakeAcquire,
    path: str,
    body: Any,
    *,
    method: str = "POST",
) -> Reply:
    """One request to ``{base_url}{path}`` with the fake's key; ``bytes`` bodies go as they are."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"}
    async with http.request(method, fake.base_url + path, data=raw, headers=headers) as resp:
        return Reply(resp.status, resp.headers, await resp.read())


def message_body(case_id: int, text: str = "Hello, how can I help?", **extra: Any) -> Any:
    return {"caseId": case_id, "message": {"type": "message", "message": text}, **extra}


def agent_entries(case: Mapping[str, Any], agent_id: int = 25) -> list[dict[str, Any]]:
    return [u for u in case["users"] if u["type"] == "user" and u["userId"] == agent_id]


# --------------------------------------------------------------------------- the table


async def test_the_route_table_names_every_operation(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        assert fake.routes == {
            ("POST", JOIN): "join_chat",
            ("GET", JOIN): "join_chat",
            ("POST", REJECT): "reject_chat",
            ("POST", CLOSE): "close_chat",
            ("POST", ADD_MESSAGE): "add_message",
        }
        for path in (REJECT, CLOSE, ADD_MESSAGE, JOIN):
            await call(http, fake, path, {"caseId": 999})
        await call(http, fake, "/crm/messenger/chat/leave", {"caseId": 1000})
    assert [r.operation for r in fake.requests] == [
        "reject_chat",
        "close_chat",
        "add_message",
        "join_chat",
        None,
    ]
    assert [r.status for r in fake.requests] == [400, 400, 400, 400, 404]
    assert FakeAcquire(allow_get=False).routes[("POST", JOIN)] == "join_chat"
    assert ("GET", JOIN) not in FakeAcquire(allow_get=False).routes


@pytest.mark.parametrize("path", [REJECT, CLOSE, ADD_MESSAGE])
async def test_the_new_routes_take_post_only(http: aiohttp.ClientSession, path: str) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, path, message_body(1000), method="GET")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert reply.code == "ERROR_METHOD_NOT_ALLOWED"
    (record,) = fake.requests
    assert record.applied is False
    assert fake.messages(1000) == []
    assert fake.cases[1000]["status"] != "closed"


@pytest.mark.parametrize("path", [REJECT, CLOSE, ADD_MESSAGE])
async def test_the_new_routes_check_the_key_and_the_case(
    http: aiohttp.ClientSession, path: str
) -> None:
    async with FakeAcquire(cases=1) as fake:
        headers = {"Authorization": "Bearer wrong"}
        async with http.post(fake.base_url + path, json=message_body(1000), headers=headers) as r:
            unauthorized = r.status
        unknown = await call(http, fake, path, message_body(4242))
        no_id = await call(http, fake, path, {"message": {"type": "message", "message": "x"}})
        not_json = await call(http, fake, path, b"{")
    assert unauthorized == 401
    assert (unknown.status, unknown.code) == (400, "ERROR_RECORD_NOT_FOUND")
    assert (no_id.status, no_id.code) == (400, "ERROR_INVALID_INPUT")
    assert (not_json.status, not_json.code) == (400, "ERROR_INVALID_INPUT")
    assert not any(r.applied for r in fake.requests)


# --------------------------------------------------------------------------- reject


async def test_reject_marks_the_offered_agent_rejected_in_the_published_shape(
    http: aiohttp.ClientSession,
) -> None:
    case = make_waiting_case(1681, status="pending", routed_agent_id=25, now=NOW)
    async with FakeAcquire(cases=[case], clock=lambda: NOW) as fake:
        before = json.loads(json.dumps(fake.cases[1681]))
        reply = await call(http, fake, REJECT, {"caseId": 1681})
        again = await call(http, fake, REJECT, {"caseId": 1681})
    assert reply.status == 200
    data = reply.data
    assert list(data) == list(PUBLISHED_REJECT)  # no lastMessage, as published
    assert [list(u) for u in data["users"]] == [list(u) for u in PUBLISHED_REJECT["users"]]
    (mine,) = agent_entries(data)
    assert mine["status"] == "rejected"
    assert data["status"] == "pending"  # as published: only the agent's entry changes
    assert data["dateUpdated"] == before["dateUpdated"]

    stored = fake.cases[1681]
    assert agent_entries(stored)[0]["status"] == "rejected"
    assert "user" in agent_entries(stored)[0]  # the store keeps the nested user
    assert not fake.is_joined(1681)

    case_model = decode_case(reply.status, reply.headers, reply.body, codes=JOIN_CODES)
    participant = case_model.participant(25)
    assert participant is not None
    assert participant.status == "rejected"

    assert again.status == 200  # rejecting again is harmless: nothing changes
    assert again.data == data
    assert [(r.operation, r.applied) for r in fake.requests] == [
        ("reject_chat", True),
        ("reject_chat", False),
    ]


async def test_reject_by_an_agent_not_offered_the_case_adds_a_rejected_entry(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1, clock=lambda: NOW) as fake:
        routed = fake.cases[1000]["users"][0]["userId"]
        reply = await call(http, fake, REJECT, {"caseId": 1000})
    users = reply.data["users"]
    assert len(users) == 3
    (mine,) = agent_entries(reply.data)
    assert list(mine) == list(PUBLISHED_REJECT["users"][0])
    assert mine["status"] == "rejected"
    assert mine["caseId"] == 1000
    assert agent_entries(reply.data, routed)[0]["status"] == "active"  # still offered to them


async def test_join_after_a_reject_joins(http: aiohttp.ClientSession) -> None:
    case = make_waiting_case(7, routed_agent_id=25, now=NOW)
    async with FakeAcquire(cases=[case]) as fake:
        rejected = await call(http, fake, REJECT, {"caseId": 7})
        joined = await call(http, fake, JOIN, {"caseId": 7, "askJoin": True})
    assert rejected.status == 200
    assert joined.status == 200
    assert [u["status"] for u in agent_entries(joined.data)] == ["joined"]
    assert fake.is_joined(7)


# --------------------------------------------------------------------------- close


async def test_close_answers_the_published_shape_and_closes_the_case(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=2, already_joined=[1000], clock=lambda: NOW) as fake:
        body = {"caseId": 1000, "closingState": "resolved", "archive": "yes", "askFeedback": True}
        reply = await call(http, fake, CLOSE, body)
    assert reply.status == 200
    contact_id = fake.cases[1000]["contactId"]
    assert reply.data == {
        "0": {"foreverClosed": True, "leftUser": True, "caseId": 1000, "contactId": contact_id},
        "userId": 25,
        "userType": "user",
    }
    assert list(reply.data) == list(PUBLISHED_CLOSE)
    assert list(reply.data["0"]) == list(PUBLISHED_CLOSE["0"])
    stored = fake.cases[1000]
    assert stored["status"] == "closed"
    assert stored["dateClosed"] == stored["dateUpdated"] == "2021-03-30T16:05:46.250Z"
    assert stored["closingState"] == "resolved"
    assert stored["closedBy"] == 25
    assert [u["closed"] for u in agent_entries(stored)] == ["yes"]
    assert fake.cases[1001]["status"] != "closed"
    (record,) = fake.requests
    assert (record.operation, record.case_id, record.applied) == ("close_chat", 1000, True)
    assert record.body == body


async def test_close_without_options_and_by_an_agent_not_in_the_case(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, CLOSE, {"caseId": 1000})  # the 2021-03-10 body
    assert reply.data["0"]["foreverClosed"] is True
    assert reply.data["0"]["leftUser"] is False  # the agent was never in it
    assert fake.cases[1000]["status"] == "closed"
    assert fake.cases[1000]["closingState"] == "handled"


async def test_closing_a_closed_case_again_answers_the_same_way(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1, already_joined=[1000]) as fake:
        first = await call(http, fake, CLOSE, {"caseId": 1000})
        closed = dict(fake.cases[1000])
        again = await call(http, fake, CLOSE, {"caseId": 1000, "closingState": "other"})
    assert again.status == 200
    assert again.data["0"]["foreverClosed"] is True
    assert again.data["0"]["leftUser"] is False
    assert first.data["0"]["leftUser"] is True
    assert fake.cases[1000] == closed  # unchanged, closingState included
    assert [r.applied for r in fake.requests] == [True, False]


async def test_close_with_leave_only_leaves_the_case_open(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, already_joined=[1000]) as fake:
        reply = await call(http, fake, CLOSE, {"caseId": 1000, "leaveOnly": True})
        message = await call(http, fake, ADD_MESSAGE, message_body(1000))
        assert fake.cases[1000]["status"] == "active"
        assert [u["closed"] for u in agent_entries(fake.cases[1000])] == ["yes"]
        assert not fake.is_joined(1000)  # it left
        back = await call(http, fake, JOIN, {"caseId": 1000, "askJoin": True})
    assert reply.data["0"]["foreverClosed"] is False
    assert reply.data["0"]["leftUser"] is True
    assert message.status == 200
    assert (back.status, back.code) == (200, None)
    assert [(u["status"], u["closed"]) for u in agent_entries(back.data)] == [("joined", "no")]
    assert fake.is_joined(1000)


@pytest.mark.parametrize(
    "extra",
    [
        {"archive": True},
        {"archive": "maybe"},
        {"closingState": 5},
        {"closingState": ""},
        {"leaveOnly": "yes"},
        {"forceClose": 1},
        {"askFeedback": None},
        {"leaveEvent": "true"},
    ],
)
async def test_close_checks_its_options(http: aiohttp.ClientSession, extra: dict[str, Any]) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, CLOSE, {"caseId": 1000, **extra})
    assert (reply.status, reply.code) == (400, "ERROR_INVALID_INPUT")
    assert next(iter(extra)) in reply.json["error"]["message"]
    assert fake.cases[1000]["status"] != "closed"


# --------------------------------------------------------------------------- add-message


async def test_add_message_answers_the_published_shape(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, already_joined=[1000], clock=lambda: NOW) as fake:
        body = message_body(1000, "Hi! I'm Ana.", channel="chat", meta={"source": "bot"})
        body["message"]["translateLangKey"] = "en"
        reply = await call(http, fake, ADD_MESSAGE, body)
    assert reply.status == 200
    data = reply.data
    assert list(data) == list(PUBLISHED_MESSAGE)
    assert data["message"] == "Hi! I'm Ana."
    assert (data["type"], data["channel"], data["seen"]) == ("message", "chat", "no")
    assert (data["senderType"], data["senderId"]) == ("user", 25)
    assert data["meta"] == {"source": "bot"}
    assert data["dateCreated"] == "2021-03-30T16:05:46.000Z"  # whole seconds, as published
    assert data["dateUpdated"] is None
    stored = fake.cases[1000]
    assert (data["caseId"], data["threadId"], data["contactId"]) == (
        1000,
        stored["threadId"],
        stored["contactId"],
    )
    assert data["sender"] == fake.agent
    assert list(data["sender"]) == list(PUBLISHED_MESSAGE["sender"])
    nested = data["case"]
    assert list(nested) == list(PUBLISHED_MESSAGE["case"])  # a contact, no contactId
    assert list(nested["contact"]) == list(PUBLISHED_MESSAGE["case"]["contact"])
    assert nested["contact"]["id"] == stored["contactId"]
    assert nested["id"] == 1000
    assert nested["status"] == "active"

    (message,) = fake.messages(1000)
    assert message["id"] == data["id"]
    assert message["message"] == "Hi! I'm Ana."
    assert list(message) == list(PUBLISHED_JOIN["lastMessage"])
    assert stored["lastMessage"] == message
    (record,) = fake.requests
    assert (record.operation, record.applied, record.case_id) == ("add_message", True, 1000)
    assert record.body["message"]["translateLangKey"] == "en"


async def test_messages_are_counted_per_case_with_unique_ids(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=2) as fake:
        assert fake.messages(1000) == []
        seeded = {c["lastMessage"]["id"] for c in fake.cases.values()}
        for text in ("one", "two"):
            await call(http, fake, ADD_MESSAGE, message_body(1000, text))
        await call(http, fake, ADD_MESSAGE, message_body(1001, "three", channel="email"))
    assert [m["message"] for m in fake.messages(1000)] == ["one", "two"]
    assert [m["channel"] for m in fake.messages(1001)] == ["email"]
    ids = [m["id"] for case_id in fake.cases for m in fake.messages(case_id)]
    assert len(set(ids)) == 3
    assert not seeded & set(ids)  # no id of a seeded message is reused
    assert fake.cases[1000]["lastMessage"]["message"] == "two"
    with pytest.raises(KeyError):
        fake.messages(4242)


async def test_a_message_needs_no_join(http: aiohttp.ClientSession) -> None:
    # As published: the 2021-03-10 sender (23) is not a participant of case 28.
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, ADD_MESSAGE, message_body(1000))
    assert reply.status == 200
    assert not fake.is_joined(1000)
    assert len(fake.messages(1000)) == 1


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"caseId": 1000}, "message"),
        ({"caseId": 1000, "message": "hello"}, "message"),
        ({"caseId": 1000, "message": {"type": "message"}}, "message"),
        ({"caseId": 1000, "message": {"type": "message", "message": 5}}, "message"),
        ({"caseId": 1000, "message": {"type": 1, "message": "hi"}}, "type"),
        ({"caseId": 1000, "message": {"type": "", "message": "hi"}}, "type"),
        (
            {"caseId": 1000, "message": {"message": "hi", "translateLangKey": 1}},
            "translateLangKey",
        ),
        ({"caseId": 1000, "message": {"message": "hi"}, "channel": 7}, "channel"),
        ({"caseId": 1000, "message": {"message": "hi"}, "meta": []}, "meta"),
    ],
)
async def test_add_message_checks_its_body(
    http: aiohttp.ClientSession, body: dict[str, Any], word: str
) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, ADD_MESSAGE, body)
    assert (reply.status, reply.code) == (400, "ERROR_INVALID_INPUT")
    assert word in reply.json["error"]["message"]
    assert fake.messages(1000) == []


async def test_a_message_without_type_is_a_message(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await call(http, fake, ADD_MESSAGE, {"caseId": 1000, "message": {"message": ""}})
    assert reply.status == 200
    assert (reply.data["type"], reply.data["message"], reply.data["channel"]) == (
        "message",
        "",
        "chat",
    )


# --------------------------------------------------------------------------- a closed case


async def test_a_closed_case_refuses_joins_messages_and_rejects(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1) as fake:
        await call(http, fake, CLOSE, {"caseId": 1000})
        closed = json.loads(json.dumps(fake.cases[1000]))
        replies = [
            await call(http, fake, JOIN, {"caseId": 1000, "askJoin": True}),
            await call(http, fake, ADD_MESSAGE, message_body(1000)),
            await call(http, fake, REJECT, {"caseId": 1000}),
        ]
    assert [(r.status, r.code) for r in replies] == [(400, "ERROR_CASE_CLOSED")] * 3
    assert fake.cases[1000] == closed
    assert fake.messages(1000) == []
    assert [r.applied for r in fake.requests] == [True, False, False, False]


async def test_close_case_helper_and_a_message(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        fake.close_case(1000)
        reply = await call(http, fake, ADD_MESSAGE, message_body(1000))
    assert reply.code == "ERROR_CASE_CLOSED"


# --------------------------------------------------------------------------- the SDK's codec


async def test_the_codec_reads_every_answer_and_its_bodies_are_accepted(
    http: aiohttp.ClientSession,
) -> None:
    # The other direction of the published-shape tests above: what the SDK sends, the
    # emulator takes, and what the emulator answers, the SDK reads.
    from acquire_async._protocol import (
        add_message_body,
        close_body,
        decode_case,
        decode_close,
        decode_message,
        reject_body,
    )

    case = make_waiting_case(1000, routed_agent_id=25, now=NOW)
    async with FakeAcquire(cases=[case]) as fake:
        rejected = await call(http, fake, REJECT, reject_body(1000))
        body = add_message_body(
            1000, 'Hi "there"', type="message", channel="chat", translate_lang_key="en"
        )
        added = await call(http, fake, ADD_MESSAGE, body)
        options = {"ask_feedback": True, "leave_only": None, "force_close": False}
        body = close_body(1000, closing_state="handled", archive=True, leave_event=None, **options)
        closed = await call(http, fake, CLOSE, body)
        late = add_message_body(1000, "late", type="message", channel=None, translate_lang_key=None)
        refused = await call(http, fake, ADD_MESSAGE, late)

    reject = decode_case(rejected.status, rejected.headers, rejected.body, case_id=1000)
    participant = reject.participant(25)
    assert participant is not None
    assert participant.status == "rejected"
    message = decode_message(added.status, added.headers, added.body, case_id=1000)
    assert (message.message, message.case_id, message.sender_id) == ('Hi "there"', 1000, 25)
    assert message.case is not None
    assert message.case.id == 1000
    result = decode_close(closed.status, closed.headers, closed.body, case_id=1000)
    assert result.closed[0].forever_closed is True
    assert result.closed[0].case_id == 1000
    assert refused.code == "ERROR_CASE_CLOSED"
    with pytest.raises(errors.BadRequestError):
        decode_message(refused.status, refused.headers, refused.body, case_id=1000)


# --------------------------------------------------------------------------- faults


async def test_drop_after_read_on_add_message_stores_the_message_once(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1, faults=Faults(sequence=["drop_after_read"])) as fake:
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, fake, ADD_MESSAGE, message_body(1000, "only once"))
    (message,) = fake.messages(1000)
    assert message["message"] == "only once"
    assert fake.cases[1000]["lastMessage"] == message
    (record,) = fake.requests
    assert (record.operation, record.status, record.fault, record.applied) == (
        "add_message",
        None,
        "drop_after_read",
        True,
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (REJECT, {"caseId": 1000}),
        (CLOSE, {"caseId": 1000}),
        (ADD_MESSAGE, message_body(1000)),
    ],
)
@pytest.mark.parametrize("fault", [503, "error_envelope_200", "drop_before_read"])
async def test_faults_that_change_nothing_change_nothing_on_every_route(
    http: aiohttp.ClientSession, path: str, body: Any, fault: str | int
) -> None:
    case = make_waiting_case(1000, routed_agent_id=25, now=NOW)
    async with FakeAcquire(cases=[case], faults=Faults(sequence=[fault])) as fake:
        before = json.loads(json.dumps(fake.cases[1000]))
        try:
            reply = await call(http, fake, path, body)
        except aiohttp.ClientConnectionError:
            assert fault == "drop_before_read"
        else:
            assert reply.code == "ERROR_SERVER_ERROR"
        assert fake.cases[1000] == before
        assert fake.messages(1000) == []
        after = await call(http, fake, path, body)  # the next request is served
    assert after.status == 200
    assert [r.applied for r in fake.requests] == [False, True]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (REJECT, {"caseId": 1000}),
        (CLOSE, {"caseId": 1000}),
        (ADD_MESSAGE, message_body(1000)),
    ],
)
@pytest.mark.parametrize("fault", ["drop_after_read", "truncate", "malformed", "slow_drip"])
async def test_faults_after_the_read_apply_the_operation_on_every_route(
    http: aiohttp.ClientSession, path: str, body: Any, fault: str
) -> None:
    case = make_waiting_case(1000, routed_agent_id=25, now=NOW)
    faults = Faults(sequence=[fault], drip_interval=0.0)
    async with FakeAcquire(cases=[case], faults=faults) as fake:
        try:
            reply = await call(http, fake, path, body)
        except aiohttp.ClientError:
            assert fault in ("drop_after_read", "truncate")
        else:
            assert reply.status == 200
            assert (reply.json is None) == (fault == "malformed")
    (record,) = fake.requests
    assert (record.fault, record.applied) == (fault, True)
    stored = fake.cases[1000]
    if path == REJECT:
        assert agent_entries(stored)[0]["status"] == "rejected"
    elif path == CLOSE:
        assert stored["status"] == "closed"
    else:
        assert len(fake.messages(1000)) == 1


async def test_rate_limit_applies_to_every_route(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, faults=Faults(rate_limit=1, retry_after=0)) as fake:
        first = await call(http, fake, ADD_MESSAGE, message_body(1000))
        limited = await call(http, fake, CLOSE, {"caseId": 1000})
    assert first.status == 200
    assert (limited.status, limited.code) == (429, "ERROR_TOO_MANY_REQUESTS")
    assert [(r.operation, r.fault) for r in fake.requests] == [
        ("add_message", None),
        ("close_chat", "rate_limit"),
    ]
    assert fake.cases[1000]["status"] != "closed"
    assert TIMESTAMP.fullmatch(fake.messages(1000)[0]["dateCreated"])
