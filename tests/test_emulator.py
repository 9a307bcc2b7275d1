"""``acquire_async.testing.FakeAcquire``, driven over real sockets by a plain aiohttp client.

The SDK's client is deliberately not used here: these tests pin the emulator's behaviour on
the wire, so a bug in the client can't hide one in the emulator (or the other way round).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from payloads import ALREADY_JOINED, EXAMPLES, Reply

from acquire_async import errors
from acquire_async._protocol import JOIN_CODES, JOIN_PATH, decode_case
from acquire_async.models import Agent
from acquire_async.testing import (
    DEFAULT_API_KEY,
    FakeAcquire,
    Faults,
    RecordedRequest,
    make_waiting_case,
)
from acquire_async.testing._faults import FaultInjector

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_JOIN = json.loads(
    (
        EXAMPLES
        / "crm-messenger-chat-join__response-200__FINAL-POST-version__2021-04-01_498d8f1.json"
    ).read_text()
)
PUBLISHED_ALREADY_JOINED = json.loads(ALREADY_JOINED)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
NOW = datetime(2021, 3, 24, 10, 44, 48, 538000, tzinfo=timezone.utc)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def join(
    http: aiohttp.ClientSession,
    fake: FakeAcquire,
    case_id: Any = 1000,
    *,
    ask_join: Any = True,
    method: str = "POST",
    key: str | None = "",
    body: bytes | None = None,
    url: str | None = None,
) -> Reply:
    """Send one join; ``key=""`` means the fake's key, ``None`` no Authorization header."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key or fake.api_key}"
    if body is None:
        body = json.dumps({"caseId": case_id, "askJoin": ask_join}).encode()
    async with http.request(method, url or fake.join_url, data=body, headers=headers) as resp:
        return Reply(resp.status, resp.headers, await resp.read())


def agent_entry(case: Mapping[str, Any], agent_id: int) -> dict[str, Any]:
    (entry,) = [u for u in case["users"] if u["type"] == "user" and u["userId"] == agent_id]
    return dict(entry)


def published_entry(status: str) -> dict[str, Any]:
    data = PUBLISHED_JOIN["data"]
    return next(u for u in data["users"] if u["status"] == status)


# --------------------------------------------------------------------------- generated cases


def test_make_waiting_case_is_shaped_like_the_published_payload() -> None:
    case = make_waiting_case(1684, now=NOW)
    published = PUBLISHED_JOIN["data"]
    assert list(case) == list(published)  # same fields, same order
    assert case["status"] in ("queue", "pending")
    assert case["dateActive"] is None
    assert case["dateClosed"] is None
    assert case["title"] == f"#{case['contactId']} has just started a chat"
    assert set(case["meta"]) == {"sessionId", "queueRecheck", "queues"}
    for field in ("dateCreated", "dateUpdated", "dateQueue"):
        assert TIMESTAMP.fullmatch(case[field]), field
        assert case[field] < "2021-03-24T10:44:48.538Z"

    routed, contact = case["users"]
    assert list(routed) == list(published_entry("ignored"))
    assert list(contact) == list(published_entry("active"))
    assert list(routed["user"]) == list(published_entry("ignored")["user"])
    assert routed["type"] == "user"
    assert routed["status"] == "active"
    assert routed["user"]["roles"] == []
    assert routed["user"]["firstName"]
    assert contact["type"] == "contact"
    assert contact["status"] == "active"
    assert contact["user"] == {
        "type": "contact",
        "id": case["contactId"],
        "name": f"#{case['contactId']}",
        "photo": None,
    }
    last = case["lastMessage"]
    assert list(last) == list(published["lastMessage"])
    assert last["type"] == "event"
    assert last["message"].endswith("|translate")

    decoded = decode_case(200, {}, msgspec.json.encode({"data": case}), codes=JOIN_CODES)
    assert decoded.id == 1684
    assert decoded.plain_description == last["message"].removesuffix("|translate")
    assert isinstance(decoded.users[0].user, Agent)


def test_make_waiting_case_is_deterministic_and_configurable() -> None:
    assert make_waiting_case(7, now=NOW) == make_waiting_case(7, now=NOW)
    assert make_waiting_case(7, now=NOW) != make_waiting_case(8, now=NOW)
    statuses = {make_waiting_case(i, now=NOW)["status"] for i in range(1, 40)}
    assert statuses == {"queue", "pending"}

    case = make_waiting_case(
        9, status="queue", contact_id=42, routed_agent_id=3, routed_agent_name="Zoé", queue_id=15
    )
    assert case["status"] == "queue"
    assert case["datePending"] is None
    assert case["contactId"] == 42
    assert case["users"][0]["user"]["name"] == "Zoé"
    assert case["meta"]["queues"] == [15]
    with pytest.raises(ValueError, match="queue"):
        make_waiting_case(1, status="active")
    with pytest.raises(ValueError, match="positive"):
        make_waiting_case(0)


# --------------------------------------------------------------------------- lifecycle


async def test_lifecycle_and_base_url() -> None:
    fake = FakeAcquire(cases=3)
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url
    await fake.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", fake.base_url)
        assert fake.port > 0
        assert fake.join_url == fake.base_url + JOIN_PATH
        assert sorted(fake.cases) == [1000, 1001, 1002]
        assert fake.api_key == DEFAULT_API_KEY
        assert fake.api_key not in repr(fake)
        with pytest.raises(RuntimeError, match="already"):
            await fake.start()
    finally:
        await fake.close()
        await fake.close()  # idempotent


async def test_join_of_a_waiting_case(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=2, first_case_id=500, clock=lambda: NOW) as fake:
        before = copy.deepcopy(fake.cases[500])
        routed_id = before["users"][0]["userId"]
        reply = await join(http, fake, 500)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    data = reply.json["data"]
    assert data["status"] == "active"
    assert data["dateActive"] == data["dateUpdated"] == "2021-03-24T10:44:48.538Z"
    assert data["waitTime"] > 0
    assert agent_entry(data, routed_id)["status"] == "ignored"
    mine = agent_entry(data, 25)
    assert list(mine) == list(published_entry("joined"))  # the published shape, key for key
    assert mine["status"] == "joined"
    assert mine["dateCreated"] == "2021-03-24T10:44:48.000Z"
    assert mine["user"]["name"] == "Emulator Agent"
    assert list(mine["user"]) == list(published_entry("joined")["user"])
    assert list(mine["case"]) == list(published_entry("joined")["case"])
    assert "users" not in mine["case"]
    assert mine["case"]["status"] == "active"

    stored = fake.cases[500]
    assert stored["status"] == "active"
    assert "case" not in agent_entry(stored, 25)  # the store keeps no nested snapshot
    assert fake.is_joined(500)
    assert not fake.is_joined(501)

    case = reply.decode()
    assert case.id == 500
    assert case.status == "active"
    joined = case.participant(25)
    assert joined is not None
    assert joined.status == "joined"
    assert isinstance(joined.user, Agent)
    assert joined.user.name == "Emulator Agent"
    assert joined.case is not None
    assert joined.case.id == 500

    (record,) = fake.requests
    assert record == RecordedRequest(
        seq=0,
        method="POST",
        path="/api/v1/crm/messenger/chat/join",
        case_id=500,
        body={"caseId": 500, "askJoin": True},
        ask_join=True,
        authorized=True,
        status=200,
        fault=None,
        applied=True,
        latency=0.0,
        operation="join_chat",
        received=record.received,
    )
    assert 0 < record.received <= asyncio.get_running_loop().time()


async def test_second_join_is_chat_already_joined_with_200(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        first = await join(http, fake)
        stored = copy.deepcopy(fake.cases[1000])
        again = await join(http, fake)
    assert first.status == 200
    assert again.status == 200
    assert again.json == PUBLISHED_ALREADY_JOINED
    assert fake.cases[1000] == stored
    assert [r.applied for r in fake.requests] == [True, False]
    with pytest.raises(errors.AlreadyJoinedError):
        again.decode()


async def test_the_published_case_is_already_joined_by_agent_25(
    http: aiohttp.ClientSession,
) -> None:
    # An envelope is unwrapped; in the published payload agent 25 has joined already.
    async with FakeAcquire(cases=[PUBLISHED_JOIN]) as fake:
        reply = await join(http, fake, 1684)
    assert list(fake.cases) == [1684]
    assert reply.code == "CHAT_ALREADY_JOINED"
    assert PUBLISHED_JOIN["data"]["users"][2]["status"] == "joined"  # the input is not mutated


async def test_concurrent_joins_apply_exactly_once(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        replies = await asyncio.gather(*(join(http, fake) for _ in range(30)))
    codes = sorted(str(r.code) for r in replies)
    assert codes == ["CHAT_ALREADY_JOINED"] * 29 + ["None"]
    assert sum(r.applied for r in fake.requests) == 1
    assert len(agent_entry(fake.cases[1000], 25)) > 0


async def test_active_case_not_yet_joined_keeps_its_date_active(
    http: aiohttp.ClientSession,
) -> None:
    case = make_waiting_case(77, status="pending", now=NOW)
    case.update(status="active", dateActive="2021-03-24T10:40:00.000Z")
    async with FakeAcquire(cases=[case]) as fake:
        reply = await join(http, fake, 77)
    data = reply.json["data"]
    assert data["dateActive"] == "2021-03-24T10:40:00.000Z"
    assert agent_entry(data, 25)["status"] == "joined"
    assert case["status"] == "active"
    assert len(case["users"]) == 2  # the caller's dict was copied, not joined


async def test_join_by_the_routed_agent_turns_its_entry_joined(
    http: aiohttp.ClientSession,
) -> None:
    case = make_waiting_case(5, routed_agent_id=25, now=NOW)
    async with FakeAcquire(cases=[case]) as fake:
        reply = await join(http, fake, 5)
    users = reply.json["data"]["users"]
    assert len(users) == 2
    assert users[0]["userId"] == 25
    assert users[0]["status"] == "joined"
    assert "case" in users[0]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("key", "authorization"),
    [(None, None), ("wrong-key", "Bearer wrong-key"), ("", "Token {key}"), ("", "Bearer")],
)
async def test_bad_or_missing_key_is_401(
    http: aiohttp.ClientSession, key: str | None, authorization: str | None
) -> None:
    async with FakeAcquire(cases=1, api_key="the-real-key-123") as fake:
        headers = {}
        if authorization is not None:
            headers["Authorization"] = authorization.format(key=fake.api_key)
        async with http.post(fake.join_url, json={"caseId": 1000}, headers=headers) as resp:
            reply = Reply(resp.status, resp.headers, await resp.read())
    assert reply.status == 401
    assert reply.json == {
        "error": {
            "code": "ERROR_UNAUTHORIZED",
            "message": "Invalid or missing API key.",
            "data": None,
        }
    }
    assert not fake.is_joined(1000)
    (record,) = fake.requests
    assert record.authorized is False
    assert record.case_id == 1000
    assert "the-real-key-123" not in repr(fake.requests)
    with pytest.raises(errors.AuthenticationError):
        reply.decode()


async def test_scheme_is_case_insensitive(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        headers = {"Authorization": f"bearer {fake.api_key}"}
        async with http.post(fake.join_url, json={"caseId": 1000}, headers=headers) as resp:
            assert resp.status == 200
    assert fake.requests[0].authorized


async def test_unknown_case_is_400_record_not_found(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await join(http, fake, 999_999)
    assert reply.status == 400
    assert reply.code == "ERROR_RECORD_NOT_FOUND"
    assert reply.json["error"]["data"] is None
    with pytest.raises(errors.NotFoundError):
        reply.decode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1000]",
        b'{"askJoin": true}',
        b'{"caseId": "1000"}',
        b'{"caseId": 0}',
        b'{"caseId": -5}',
        b'{"caseId": true}',
        b'{"caseId": 1000.5}',
        b'{"caseId": null}',
        b'{"caseId": 18446744073709551616}',
        b'{"caseId": 1000, "askJoin": "yes"}',
        b'{"caseId": 1000, "askJoin": null}',
    ],
)
async def test_bad_body_is_400_invalid_input(http: aiohttp.ClientSession, body: bytes) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await join(http, fake, body=body)
    assert reply.status == 400
    assert reply.code == "ERROR_INVALID_INPUT"
    assert reply.json["error"]["message"]
    assert not fake.is_joined(1000)
    assert fake.requests[0].applied is False
    with pytest.raises(errors.BadRequestError):
        reply.decode()


async def test_body_without_ask_join_and_ask_join_false_both_join(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=2) as fake:
        older = await join(http, fake, body=b'{"caseId": 1000}')
        no_ask = await join(http, fake, 1001, ask_join=False)
    assert older.status == no_ask.status == 200
    assert fake.is_joined(1000)
    assert fake.is_joined(1001)
    assert [r.ask_join for r in fake.requests] == [None, False]


async def test_closed_case_is_400_case_closed(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=2) as fake:
        closed = fake.close_case(1001)
        reply = await join(http, fake, 1001)
    assert closed["status"] == "closed"
    assert TIMESTAMP.fullmatch(closed["dateClosed"])
    assert reply.status == 400
    assert reply.code == "ERROR_CASE_CLOSED"
    assert not fake.is_joined(1001)
    with pytest.raises(ValueError, match="closed"):
        fake.mark_joined(1001)
    with pytest.raises(errors.BadRequestError):
        reply.decode()


async def test_add_case_and_mark_joined(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=2) as fake:
        added = fake.add_case(status="queue")
        assert added["status"] == "queue"
        mine = fake.add_case(make_waiting_case(42))
        fake.mark_joined(42)
        replies = [await join(http, fake, 1002), await join(http, fake, 42)]
        with pytest.raises(ValueError, match="already"):
            fake.add_case(make_waiting_case(42))
        with pytest.raises(ValueError, match="id"):
            fake.add_case({"status": "queue"})
    assert added["id"] == 1002
    assert added["status"] == "active"  # the stored dict itself: joined by the request
    assert mine is fake.cases[42]
    assert [r.code for r in replies] == [None, "CHAT_ALREADY_JOINED"]
    ids = [u["id"] for c in fake.cases.values() for u in c["users"]]
    assert len(ids) == len(set(ids))  # participant ids stay unique


async def test_already_joined_as_a_fraction_or_ids(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=10, already_joined=0.3) as fake:
        joined = [i for i in fake.cases if fake.is_joined(i)]
        replies = [await join(http, fake, i) for i in fake.cases]
    assert len(joined) == 3
    assert (
        sorted(i for i, r in zip(fake.cases, replies) if r.code == "CHAT_ALREADY_JOINED") == joined
    )
    again = FakeAcquire(cases=10, already_joined=0.3)
    assert [i for i in again.cases if again.is_joined(i)] == joined  # deterministic
    explicit = FakeAcquire(cases=3, already_joined=[1001])
    assert [i for i in explicit.cases if explicit.is_joined(i)] == [1001]
    with pytest.raises(ValueError, match="not in the store"):
        FakeAcquire(cases=3, already_joined=[5])


# --------------------------------------------------------------------------- methods & routes


async def test_get_with_a_json_body_joins_by_default(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await join(http, fake, method="GET")
    assert reply.status == 200
    assert fake.requests[0].method == "GET"
    assert fake.is_joined(1000)


@pytest.mark.parametrize(
    ("options", "refused", "allowed"),
    [
        ({"method_not_allowed": "POST"}, "POST", "GET"),
        ({"method_not_allowed": "GET"}, "GET", "POST"),
        ({"allow_get": False}, "GET", "POST"),
    ],
)
async def test_refused_method_is_405(
    http: aiohttp.ClientSession, options: dict[str, Any], refused: str, allowed: str
) -> None:
    async with FakeAcquire(cases=1, **options) as fake:
        no = await join(http, fake, method=refused)
        assert not fake.is_joined(1000)
        yes = await join(http, fake, method=allowed)
    assert no.status == 405
    assert no.headers["Allow"] == allowed
    assert no.code == "ERROR_METHOD_NOT_ALLOWED"
    with pytest.raises(errors.APIStatusError) as caught:
        no.decode()
    assert caught.value.status == 405
    assert yes.status == 200


def test_method_options_are_checked() -> None:
    with pytest.raises(ValueError, match="method_not_allowed"):
        FakeAcquire(method_not_allowed="PUT")
    with pytest.raises(ValueError, match="no method left"):
        FakeAcquire(allow_get=False, method_not_allowed="POST")


async def test_unknown_path_is_404(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        reply = await join(http, fake, url=fake.base_url + "/crm/messenger/chat/leave")
    assert reply.status == 404
    assert fake.requests[0].path == "/api/v1/crm/messenger/chat/leave"
    assert not fake.is_joined(1000)


# --------------------------------------------------------------------------- faults


async def test_fixed_and_ranged_latency(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=3, faults=Faults(latency=0.05)) as fake:
        started = time.monotonic()
        await join(http, fake)
        assert time.monotonic() - started >= 0.045
        fake.faults = Faults(seed=3, latency=(0.001, 0.02))
        await join(http, fake, 1001)
        await join(http, fake, 1002)
    assert fake.requests[0].latency == 0.05
    assert all(0.001 <= r.latency <= 0.02 for r in fake.requests[1:])
    assert fake.requests[1].latency != fake.requests[2].latency


async def test_error_rates_answer_acquire_envelopes_without_state_change(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1, faults=Faults(error_rates={503: 1.0})) as fake:
        reply = await join(http, fake)
    assert reply.status == 503
    assert reply.json == {
        "error": {"code": "ERROR_SERVER_ERROR", "message": "Internal server error.", "data": None}
    }
    assert not fake.is_joined(1000)
    assert fake.requests[0].fault == "http_503"
    assert fake.requests[0].body == {"caseId": 1000, "askJoin": True}
    with pytest.raises(errors.InternalServerError):
        reply.decode()


async def test_same_seed_same_faults(http: aiohttp.ClientSession) -> None:
    faults = Faults(
        seed=1234,
        latency=(0.0, 0.002),
        error_rates={500: 0.1, 503: 0.15},
        drop_before_read=0.1,
        malformed=0.1,
        error_envelope_200=0.1,
    )

    async def run(faults: Faults) -> list[tuple[str | None, float]]:
        async with FakeAcquire(cases=40, faults=faults) as fake:
            for case_id in fake.cases:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    await join(http, fake, case_id)
        return [(r.fault, r.latency) for r in fake.requests]

    first = await run(faults)
    assert await run(faults) == first
    kinds = {fault for fault, _ in first}
    assert {None, "http_500", "http_503", "drop_before_read", "malformed"} <= kinds
    other = await run(Faults(seed=4321, error_rates={500: 0.1, 503: 0.15}, malformed=0.1))
    assert [f for f, _ in other] != [f for f, _ in first]


async def test_rate_limit_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=5, faults=Faults(rate_limit=3, retry_after=2)) as fake:
        replies = [await join(http, fake, case_id) for case_id in fake.cases]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    limited = replies[3]
    assert limited.headers["Retry-After"] == "2"
    assert limited.json == {
        "error": {"code": "ERROR_TOO_MANY_REQUESTS", "message": "Too many requests.", "data": None}
    }
    assert [r.fault for r in fake.requests] == [None, None, None, "rate_limit", "rate_limit"]
    assert not fake.is_joined(1003)
    with pytest.raises(errors.RateLimitError) as caught:
        limited.decode()
    assert caught.value.retry_after == 2.0


def test_rate_limit_window_slides() -> None:
    injector = FaultInjector(Faults(rate_limit=2))
    assert injector.admit(10.0) is None
    assert injector.admit(10.5) is None
    assert injector.admit(10.9) is not None  # 3rd inside one second
    assert injector.admit(11.0) is None  # 10.0 left the window
    assert injector.admit(11.4) is not None
    assert injector.admit(11.6) is None


async def test_drop_before_read_changes_nothing(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, faults=Faults(sequence=["drop_before_read"])) as fake:
        with pytest.raises(aiohttp.ClientConnectionError):
            await join(http, fake)
        assert not fake.is_joined(1000)
        retry = await join(http, fake)
    assert retry.status == 200
    dropped, ok = fake.requests
    assert (dropped.status, dropped.body, dropped.fault, dropped.applied) == (
        None,
        None,
        "drop_before_read",
        False,
    )
    assert (ok.status, ok.fault, ok.applied) == (200, None, True)


async def test_drop_after_read_joins_then_the_retry_is_already_joined(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeAcquire(cases=1) as fake:
        fake.script(["drop_after_read"])
        with pytest.raises(aiohttp.ClientConnectionError):
            await join(http, fake)
        assert fake.is_joined(1000)  # the ambiguous failure: it did happen
        retry = await join(http, fake)
    assert retry.status == 200
    assert retry.code == "CHAT_ALREADY_JOINED"
    with pytest.raises(errors.AlreadyJoinedError):
        retry.decode()
    dropped = fake.requests[0]
    assert (dropped.status, dropped.fault, dropped.applied, dropped.case_id) == (
        None,
        "drop_after_read",
        True,
        1000,
    )


async def test_truncated_body_is_a_payload_error(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, faults=Faults(truncate=1.0)) as fake:
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        async with http.post(fake.join_url, json={"caseId": 1000}, headers=headers) as resp:
            assert resp.status == 200
            promised = int(resp.headers["Content-Length"])
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert promised > 0
    assert fake.is_joined(1000)
    assert fake.requests[0].fault == "truncate"


async def test_malformed_body_is_200_not_json(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1) as fake:
        fake.script(["malformed"])
        reply = await join(http, fake)
    assert reply.status == 200
    assert reply.json is None
    assert reply.body.startswith(b"<html>")
    with pytest.raises(errors.ResponseDecodeError):
        reply.decode()


async def test_error_envelope_with_200(http: aiohttp.ClientSession) -> None:
    async with FakeAcquire(cases=1, faults=Faults(error_envelope_200=1.0)) as fake:
        reply = await join(http, fake)
    assert reply.status == 200
    assert reply.code == "ERROR_SERVER_ERROR"
    assert not fake.is_joined(1000)
    with pytest.raises(errors.InternalServerError) as caught:
        reply.decode()
    assert caught.value.status == 200


async def test_slow_drip_delivers_the_whole_body_slowly(http: aiohttp.ClientSession) -> None:
    faults = Faults(slow_drip=1.0, drip_bytes=512, drip_interval=0.02)
    async with FakeAcquire(cases=1, faults=faults) as fake:
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        started = time.monotonic()
        async with http.post(fake.join_url, json={"caseId": 1000}, headers=headers) as resp:
            chunks = [chunk async for chunk in resp.content.iter_any()]
            status, response_headers = resp.status, resp.headers
        elapsed = time.monotonic() - started
    body = b"".join(chunks)
    pieces = -(-len(body) // 512)
    assert len(body) == int(response_headers["Content-Length"])
    assert len(chunks) > 1
    assert elapsed >= (pieces - 1) * 0.02 * 0.8
    case = decode_case(status, response_headers, body, codes=JOIN_CODES)
    assert case.participant(25) is not None
    assert fake.requests[0].fault == "slow_drip"


async def test_scripted_statuses_and_sequence(http: aiohttp.ClientSession) -> None:
    faults = Faults(sequence=[500, None], error_envelope_200=1.0)
    async with FakeAcquire(cases=1, faults=faults) as fake:
        fake.script([429])
        replies = [await join(http, fake) for _ in range(4)]
    assert [r.status for r in replies] == [500, 200, 429, 200]
    assert replies[2].headers["Retry-After"] == "1"
    assert [r.fault for r in fake.requests] == ["http_500", None, "http_429", "error_envelope_200"]
    assert [r.code for r in replies] == [
        "ERROR_SERVER_ERROR",
        None,
        "ERROR_TOO_MANY_REQUESTS",
        "ERROR_SERVER_ERROR",
    ]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"malformed": 0.6, "truncate": 0.5}, ValueError),
        ({"error_rates": {200: 0.1}}, ValueError),
        ({"error_rates": {503: 1.5}}, ValueError),
        ({"latency": -1.0}, ValueError),
        ({"latency": (0.2, 0.1)}, ValueError),
        ({"rate_limit": 0}, ValueError),
        ({"drip_bytes": 0}, ValueError),
        ({"sequence": ["explode"]}, ValueError),
        ({"sequence": [600]}, ValueError),
        ({"sequence": "truncate"}, TypeError),
        ({"malformed": "often"}, TypeError),
    ],
)
def test_faults_are_validated(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Faults(**kwargs)


def test_faults_are_frozen_values() -> None:
    faults = Faults(seed=1, error_rates={503: 0.5}, sequence=["truncate", 503])
    assert faults.sequence == ("truncate", 503)
    assert faults == Faults(seed=1, error_rates={503: 0.5}, sequence=["truncate", 503])
    hash(faults)
    with pytest.raises(AttributeError):
        faults.seed = 2  # type: ignore[misc]
    fake = FakeAcquire()
    with pytest.raises(ValueError, match="unknown fault"):
        fake.script(["drop"])  # type: ignore[list-item]


# --------------------------------------------------------------------------- serve()


async def test_serve_runs_until_interrupted_and_prints_no_key(
    http: aiohttp.ClientSession,
) -> None:
    code = (
        "from acquire_async.testing import serve; serve(port=0, cases=3, api_key='sekrit-key-4242')"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("Press Ctrl-C"):
            line = await asyncio.wait_for(process.stdout.readline(), 10)
            assert line, "serve() exited early"
            lines.append(line.decode().rstrip())
        base_url = lines[0].rsplit(" ", 1)[1]
        headers = {"Authorization": "Bearer sekrit-key-4242"}
        async with http.post(base_url + JOIN_PATH, json={"caseId": 1001}, headers=headers) as resp:
            assert resp.status == 200
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    output = "\n".join(lines)
    assert "sekrit-key-4242" not in output + stderr.decode()
    assert "3 (ids 1000-1002)" in output
    assert f"  join:    POST or GET {base_url}/crm/messenger/chat/join" in lines
    assert f"  message: POST {base_url}/crm/messenger/chat/add-message" in lines
    assert "not shown" in output
