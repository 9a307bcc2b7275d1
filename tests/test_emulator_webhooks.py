"""The emulator's outbound webhooks, received by a tiny ``aiohttp.web`` server on 127.0.0.1.

The receiver here is deliberately not the SDK's bot: these tests pin what the emulator sends
on the wire (bytes, headers, signature, retries, faults), so a bug in the bot can't hide one
in the emulator (or the other way round).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import logging
import re
import socket
import warnings
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from docexample import assert_example_is_in

from acquire_async import AcquireClient
from acquire_async.bot import Bot
from acquire_async.testing import (
    DEFAULT_API_KEY,
    Delivery,
    FakeAcquire,
    Webhook,
    WebhookFaults,
)
from acquire_async.testing._events import encode_event, js_date
from acquire_async.testing._serve import announce_webhook, describe
from acquire_async.webhooks import CaseInviteEvent, CaseStatusEvent, construct_event, sign

NOW = datetime(2021, 3, 24, 10, 44, 48, 538000, tzinfo=timezone.utc)
JS_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d\d \d{4} \d\d:\d\d:\d\d GMT\+0000 \(Coordinated Universal Time\)"
)
SECRET = "s3cret-webhook-key"
FAST = WebhookFaults(retries=2, retry_delay=0.01)

# The published delivery (webhook-api/webhooks/README.md@408cd38, 2021-03-05): the shape the
# emulator's case:status must have.
PUBLISHED_CASE_STATUS: dict[str, Any] = json.loads(
    (
        Path(__file__).parent
        / "fixtures"
        / "webhook-examples"
        / "case.status__2021-03-05_408cd38.json"
    ).read_text()
)


# ---------------------------------------------------------------------- the receiver


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every delivery; answers from ``plan`` (a status or ``"drop"``), then
    ``default``. ``gate``, when set, holds every answer until it is opened."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.plan: deque[int | str] = deque()
        self.default: int | str = 200
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.peak = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        now = asyncio.get_running_loop().time()
        self.received.append(
            Received(request.method, request.path, dict(request.headers), body, now)
        )
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.gate is not None:
                await self.gate.wait()
            action = self.plan.popleft() if self.plan else self.default
        finally:
            self.in_flight -= 1
        if action == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        assert isinstance(action, int)
        return web.Response(status=action, text="ok")

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def arrived() -> None:
            while len(self.received) < count:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(arrived(), timeout)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/acquire/hooks"
    try:
        yield rec
    finally:
        if rec.gate is not None:
            rec.gate.set()
        await runner.cleanup()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeAcquire]:
    async with FakeAcquire(cases=3, clock=lambda: NOW) as emulator:
        yield emulator


async def api(fake: FakeAcquire, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            fake.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"},
        ) as answer:
            assert answer.status == 200
            result: dict[str, Any] = await answer.json()
            return result


def statuses(receiver: Receiver, case_id: int) -> list[str]:
    return [
        r.json()["data"]["status"]
        for r in receiver.received
        if r.json()["event"] == "case:status" and r.json()["data"]["caseId"] == str(case_id)
    ]


def shape(value: Any) -> Any:
    """Key sets and value types, recursively; a list is the shape of its first element."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------- the wire


async def test_a_delivery_is_signed_over_its_exact_bytes(
    fake: FakeAcquire, receiver: Receiver
) -> None:
    fake.add_webhook(receiver.url, secret=SECRET)
    fake.add_case(status="pending")
    await fake.webhooks_idle(timeout=5)

    (got,) = receiver.received
    assert got.method == "POST"
    assert got.path == "/acquire/hooks"
    assert got.headers["Content-Type"] == "application/json"
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-acquire-signature"] == expected
    # Compact JSON, as JSON.stringify writes it: re-serialising gives the same bytes.
    compact = json.dumps(got.json(), separators=(",", ":"), ensure_ascii=False).encode()
    assert got.body == compact
    (delivery,) = fake.deliveries
    assert delivery.body == got.body
    assert delivery.signature == expected
    assert (delivery.event, delivery.case_id, delivery.attempt, delivery.status) == (
        "case:status",
        1003,
        1,
        200,
    )
    assert delivery.delivered and not delivery.given_up


async def test_the_sdk_verifies_and_parses_every_delivery(
    fake: FakeAcquire, receiver: Receiver
) -> None:
    fake.add_webhook(receiver.url, secret=SECRET)
    fake.mark_joined(1000)
    fake.invite(1001)
    await fake.webhooks_idle(timeout=5)
    events = [
        construct_event(
            r.body,
            r.headers.get("x-acquire-signature"),
            SECRET,
            content_type=r.headers.get("Content-Type"),
        )
        for r in receiver.received
    ]
    by_kind = {type(event): event for event in events}
    status = by_kind[CaseStatusEvent]
    invite = by_kind[CaseInviteEvent]
    assert (status.event, status.case_id, status.status) == ("case:status", 1000, "active")
    assert (invite.event, invite.case_id) == ("user:case-invite", 1001)


def test_the_signature_matches_the_node_reference_vector() -> None:
    # Derived from the docs' Node code over the published example (not published itself).
    body = encode_event(PUBLISHED_CASE_STATUS["event"], PUBLISHED_CASE_STATUS["data"])
    assert len(body) == 1375
    assert sign(body, "string") == (
        "d521565853aa8d1c470832ea351f9ba0a5e4d5043d1a8f51528a22959e1bb473"
    )


async def test_without_a_secret_deliveries_are_unsigned(
    fake: FakeAcquire, receiver: Receiver
) -> None:
    hook = fake.add_webhook(receiver.url)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    (got,) = receiver.received
    assert "x-acquire-signature" not in got.headers
    assert fake.deliveries[0].signature is None
    assert not hook.signed


def test_js_date_is_date_to_string_in_utc() -> None:
    assert js_date(datetime(2021, 3, 3, 10, 19, 49, tzinfo=timezone.utc)) == (
        "Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)"
    )
    assert js_date(datetime(1999, 12, 31, 23, 5, 1, tzinfo=timezone.utc)).startswith(
        "Fri Dec 31 1999 23:05:01"
    )


# ---------------------------------------------------------------------- what is delivered


async def test_case_status_has_the_published_shape(fake: FakeAcquire, receiver: Receiver) -> None:
    fake.add_webhook(receiver.url, secret=SECRET)
    await api(fake, "/crm/messenger/chat/join", {"caseId": 1000, "askJoin": True})
    await api(
        fake,
        "/crm/messenger/chat/add-message",
        {"caseId": 1000, "message": {"type": "message", "message": "Hello, I'm the bot"}},
    )
    await api(fake, "/crm/messenger/chat/close", {"caseId": 1000})
    await fake.webhooks_idle(timeout=5)

    assert statuses(receiver, 1000) == ["active", "closed"]
    closed = receiver.received[-1].json()
    assert list(closed) == ["event", "data"]
    assert shape(closed) == shape(PUBLISHED_CASE_STATUS)
    data = closed["data"]
    assert data["caseId"] == "1000"
    assert data["contact"]["id"] == str(fake.cases[1000]["contactId"])
    assert data["contact"]["fields"]["name"] == f"#{fake.cases[1000]['contactId']}"
    # The whole transcript: the case's own waiting message, then the one the bot posted.
    first, posted = data["messages"]
    assert first["senderType"] == "contact" and first["type"] == "event"
    assert posted == {
        "id": str(fake.messages(1000)[0]["id"]),
        "channel": "chat",
        "senderId": str(fake.agent_id),
        "senderType": "user",
        "type": "message",
        "message": "Hello, I'm the bot",
        "seen": "no",
        "dateCreated": "Wed Mar 24 2021 10:44:48 GMT+0000 (Coordinated Universal Time)",
    }
    for message in data["messages"]:
        assert JS_DATE.fullmatch(message["dateCreated"])
        assert message["id"].isdigit() and message["senderId"].isdigit()
        assert message["seen"] in ("yes", "no")


async def test_every_status_change_delivers_and_nothing_else_does(
    fake: FakeAcquire, receiver: Receiver
) -> None:
    fake.add_webhook(receiver.url, secret=SECRET)
    new = fake.add_case(status="pending")["id"]  # assumed: a new case announces itself
    await api(fake, "/crm/messenger/chat/reject", {"caseId": 1001})  # no status change
    await api(fake, "/crm/messenger/chat/join", {"caseId": new})  # pending -> active
    await api(fake, "/crm/messenger/chat/join", {"caseId": new})  # CHAT_ALREADY_JOINED
    await api(fake, "/crm/messenger/chat/close", {"caseId": 1001, "leaveOnly": True})
    fake.mark_joined(1002)  # queue/pending -> active
    fake.close_case(1002)  # active -> closed
    fake.close_case(1002)  # closed again: no change
    await api(fake, "/crm/messenger/chat/close", {"caseId": new})  # active -> closed
    await fake.webhooks_idle(timeout=5)

    assert statuses(receiver, new) == ["pending", "active", "closed"]
    assert statuses(receiver, 1001) == []
    assert statuses(receiver, 1002) == ["active", "closed"]
    assert [d.case_id for d in fake.deliveries].count(1001) == 0


async def test_the_body_is_the_state_at_the_change(fake: FakeAcquire, receiver: Receiver) -> None:
    fake.add_webhook(receiver.url)
    receiver.gate = asyncio.Event()  # nothing is answered yet
    fake.mark_joined(1000)
    fake.close_case(1000)
    receiver.gate.set()
    await fake.webhooks_idle(timeout=5)
    assert sorted(statuses(receiver, 1000)) == ["active", "closed"]


async def test_invite_delivers_the_assumed_shape(fake: FakeAcquire, receiver: Receiver) -> None:
    fake.add_webhook(receiver.url, secret=SECRET)
    assert fake.invite(1001) == 1
    await fake.webhooks_idle(timeout=5)
    (got,) = receiver.received
    assert got.body == b'{"event":"user:case-invite","data":{"caseId":"1001","userId":"25"}}'
    assert fake.deliveries[0].event == "user:case-invite"
    assert fake.deliveries[0].case_id == 1001
    assert not fake.is_joined(1001)  # an invite changes nothing in the store


async def test_deliver_and_deliver_status(fake: FakeAcquire, receiver: Receiver) -> None:
    fake.add_webhook(receiver.url, events=["user:case-joined", "case:status"])
    fake.deliver("user:case-joined", {"caseId": "1000", "userId": "25"}, case_id=1000)
    fake.cases[1001]["status"] = "pending"  # by hand: nothing is delivered...
    fake.deliver_status(1001)  # ...until asked
    await fake.webhooks_idle(timeout=5)
    bodies = sorted(r.body for r in receiver.received)
    assert b'{"event":"user:case-joined","data":{"caseId":"1000","userId":"25"}}' in bodies
    assert statuses(receiver, 1001) == ["pending"]


async def test_no_delivery_of_events_not_subscribed(fake: FakeAcquire, receiver: Receiver) -> None:
    fake.add_webhook(receiver.url, events=["user:case-invite"])
    fake.add_case(status="queue")
    fake.close_case(1000)
    assert fake.deliver("x:unknown", {}) == 0
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [r.json()["event"] for r in receiver.received] == ["user:case-invite"]


async def test_several_webhooks_and_removing_one(fake: FakeAcquire, receiver: Receiver) -> None:
    first = fake.add_webhook(receiver.url, secret="one")
    second = fake.add_webhook(receiver.url + "/2", secret="two", events=["case:status"])
    assert fake.webhooks == [first, second]
    fake.close_case(1000)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert sorted(r.path for r in receiver.received) == [
        "/acquire/hooks",
        "/acquire/hooks",
        "/acquire/hooks/2",
    ]
    for got in receiver.received:
        key = "two" if got.path.endswith("/2") else "one"
        assert got.headers["x-acquire-signature"] == sign(got.body, key)

    fake.remove_webhook(second)
    with pytest.raises(ValueError, match="not registered"):
        fake.remove_webhook(second)
    receiver.received.clear()
    fake.close_case(1001)
    await fake.webhooks_idle(timeout=5)
    assert [r.path for r in receiver.received] == ["/acquire/hooks"]


async def test_events_before_start_wait_for_it(receiver: Receiver) -> None:
    fake = FakeAcquire(cases=1)
    fake.add_webhook(receiver.url)
    fake.invite(1000)
    with pytest.raises(RuntimeError, match="not started"):
        await fake.webhooks_idle(timeout=1)
    async with fake:
        await fake.webhooks_idle(timeout=5)
    assert [r.json()["event"] for r in receiver.received] == ["user:case-invite"]


# ---------------------------------------------------------------------- retries


async def test_a_non_200_is_retried_until_answered(fake: FakeAcquire, receiver: Receiver) -> None:
    receiver.plan.extend([500, 503, 204])  # 204 is not 200 either (v1's rule)
    fake.add_webhook(receiver.url, faults=WebhookFaults(retries=5, retry_delay=0.01))
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [(d.attempt, d.status) for d in fake.deliveries] == [
        (1, 500),
        (2, 503),
        (3, 204),
        (4, 200),
    ]
    assert len({r.body for r in receiver.received}) == 1  # the same bytes each time
    assert not any(d.given_up for d in fake.deliveries)


async def test_retries_stop_at_the_cap_then_give_up(fake: FakeAcquire, receiver: Receiver) -> None:
    receiver.default = 500
    fake.add_webhook(receiver.url, faults=FAST)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [(d.attempt, d.status, d.given_up) for d in fake.deliveries] == [
        (1, 500, False),
        (2, 500, False),
        (3, 500, True),
    ]
    assert len(receiver.received) == 3


async def test_a_dropped_connection_is_retried(fake: FakeAcquire, receiver: Receiver) -> None:
    receiver.plan.extend(["drop", "drop"])
    fake.add_webhook(receiver.url, secret=SECRET, faults=FAST)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [d.status for d in fake.deliveries] == [None, None, 200]
    assert all(d.error for d in fake.deliveries[:2])
    assert fake.deliveries[-1].error is None


async def test_dropped_every_time_is_given_up(fake: FakeAcquire, receiver: Receiver) -> None:
    receiver.default = "drop"
    fake.add_webhook(receiver.url, faults=FAST)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [(d.status, d.given_up) for d in fake.deliveries] == [
        (None, False),
        (None, False),
        (None, True),
    ]


async def test_nothing_listening_and_a_timeout_are_failures(fake: FakeAcquire) -> None:
    fake.add_webhook(
        f"http://127.0.0.1:{free_port()}/", faults=WebhookFaults(retries=1, retry_delay=0)
    )
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    assert [(d.status, d.given_up) for d in fake.deliveries] == [(None, False), (None, True)]
    assert fake.deliveries[0].error == "ClientConnectorError"


async def test_an_attempt_that_takes_too_long_times_out(
    fake: FakeAcquire, receiver: Receiver
) -> None:
    receiver.plan.append(200)
    receiver.delay = 0.3
    fake.add_webhook(receiver.url, faults=WebhookFaults(retries=0), timeout=0.05)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    (delivery,) = fake.deliveries
    assert (delivery.status, delivery.error, delivery.given_up) == (None, "timeout", True)


# ---------------------------------------------------------------------- faults


async def test_duplicates_at_the_configured_rate(fake: FakeAcquire, receiver: Receiver) -> None:
    n = 200
    faults = WebhookFaults(duplicate=0.2, seed=11)
    fake.add_webhook(receiver.url, secret=SECRET, events=["tick"], faults=faults)
    for i in range(n):
        fake.deliver("tick", {"n": i})
    await fake.webhooks_idle(timeout=10)

    extra = [d for d in fake.deliveries if d.duplicate]
    assert 20 <= len(extra) <= 60  # 40 expected
    assert len(receiver.received) == n + len(extra)
    counts = Counter(r.body for r in receiver.received)
    assert len(counts) == n  # every event arrived
    twice = {body for body, count in counts.items() if count == 2}
    assert twice == {d.body for d in extra}
    assert set(counts.values()) <= {1, 2}
    # A duplicate is byte-identical, so its signature is too.
    signatures = Counter(r.headers["x-acquire-signature"] for r in receiver.received)
    assert sum(1 for count in signatures.values() if count == 2) == len(extra)

    # The same seed draws the same duplicates.
    async with FakeAcquire(cases=0) as again:
        again.add_webhook(receiver.url, secret=SECRET, events=["tick"], faults=faults)
        for i in range(n):
            again.deliver("tick", {"n": i})
        await again.webhooks_idle(timeout=10)
        assert {d.body for d in again.deliveries if d.duplicate} == twice


async def test_reordering_at_the_configured_rate(fake: FakeAcquire, receiver: Receiver) -> None:
    n = 100
    faults = WebhookFaults(reorder=0.2, seed=5, reorder_delay=0.05)
    fake.add_webhook(receiver.url, events=["tick"], faults=faults, concurrency=1)
    for i in range(n):
        fake.deliver("tick", {"n": i})
    await fake.webhooks_idle(timeout=10)

    held = {json.loads(d.body)["data"]["n"] for d in fake.deliveries if d.held}
    assert 8 <= len(held) <= 35  # 20 expected
    arrival = {r.json()["data"]["n"]: index for index, r in enumerate(receiver.received)}
    assert sorted(arrival) == list(range(n))
    for i in held:
        later = [j for j in range(i + 1, n) if j not in held]
        if later:  # a later delivery that was not held overtook it
            assert arrival[later[0]] < arrival[i]
    # Without reordering (one at a time), they arrive in the order emitted.
    in_time = [n for n in sorted(arrival, key=arrival.__getitem__) if n not in held]
    assert in_time == sorted(in_time)


async def test_hundreds_of_deliveries_stay_bounded(fake: FakeAcquire, receiver: Receiver) -> None:
    n = 300
    receiver.delay = 0.002
    fake.add_webhook(receiver.url, secret=SECRET, events=["tick"], concurrency=8)
    for i in range(n):
        fake.deliver("tick", {"n": i})
    await fake.webhooks_idle(timeout=30)
    assert len(receiver.received) == n
    assert len(fake.deliveries) == n and all(d.delivered for d in fake.deliveries)
    assert 1 < receiver.peak <= 8


# ---------------------------------------------------------------------- lifecycle, hygiene


def our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("acquire-fake-webhook")]


async def test_close_with_deliveries_pending_is_clean(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.gate = asyncio.Event()  # never answers
    fake = FakeAcquire(cases=3)
    await fake.start()
    fake.add_webhook(receiver.url, secret=SECRET)
    fake.add_webhook(f"http://127.0.0.1:{free_port()}/", faults=WebhookFaults(retry_delay=60))
    for case_id in (1000, 1001, 1002):
        fake.invite(case_id)
    await receiver.wait_for(3)

    async def first_failure() -> None:  # the unreachable hook's: it is now in a retry sleep
        while not fake.deliveries:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(first_failure(), 5)
    assert our_tasks()

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        await asyncio.wait_for(fake.close(), 5)  # pending deliveries are cancelled, not awaited
        await fake.close()  # idempotent
        await fake.webhooks_idle(timeout=1)  # nothing pending any more
        await asyncio.sleep(0)
        gc.collect()
    assert our_tasks() == []
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records] == []
    # After close, a change delivers nothing.
    assert fake.invite(1000) == 0


async def test_webhooks_idle_times_out(fake: FakeAcquire, receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    fake.add_webhook(receiver.url)
    fake.invite(1000)
    with pytest.raises(TimeoutError, match="1 webhook deliveries still pending"):
        await fake.webhooks_idle(timeout=0.05)
    receiver.gate.set()
    await fake.webhooks_idle(timeout=5)


async def test_the_secret_is_never_shown(fake: FakeAcquire, receiver: Receiver) -> None:
    hook = fake.add_webhook(receiver.url, secret=SECRET, faults=FAST)
    receiver.plan.append(500)
    fake.invite(1000)
    await fake.webhooks_idle(timeout=5)
    shown = " ".join(
        [repr(hook), str(hook), repr(fake), repr(fake.webhooks), repr(fake.deliveries)]
    )
    assert SECRET not in shown
    assert "signed" in repr(hook)
    assert isinstance(hook, Webhook) and isinstance(fake.deliveries[0], Delivery)


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"duplicate": 1.5}, ValueError, "duplicate"),
        ({"duplicate": "0.1"}, TypeError, "duplicate"),
        ({"reorder": -0.1}, ValueError, "reorder"),
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": 2.0}, TypeError, "retries"),
        ({"retries": True}, TypeError, "retries"),
        ({"retry_delay": float("nan")}, ValueError, "retry_delay"),
        ({"retry_delay": None}, TypeError, "retry_delay"),
        ({"reorder_delay": -1}, ValueError, "reorder_delay"),
        ({"seed": "7"}, TypeError, "seed"),
    ],
)
def test_webhook_faults_are_checked(kwargs: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        WebhookFaults(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "name"),
    [
        ((b"http://x/",), {}, TypeError, "url"),
        (("ftp://127.0.0.1/",), {}, ValueError, "url"),
        (("/relative",), {}, ValueError, "url"),
        (("http://127.0.0.1/",), {"secret": 5}, TypeError, "secret"),
        (("http://127.0.0.1/",), {"secret": b"key"}, TypeError, "secret"),
        (("http://127.0.0.1/",), {"secret": ""}, ValueError, "secret"),
        (("http://127.0.0.1/",), {"events": "case:status"}, TypeError, "events"),
        (("http://127.0.0.1/",), {"events": []}, ValueError, "events"),
        (("http://127.0.0.1/",), {"events": [""]}, ValueError, "events"),
        (("http://127.0.0.1/",), {"events": [1]}, TypeError, "events"),
        (("http://127.0.0.1/",), {"faults": {"duplicate": 0.1}}, TypeError, "faults"),
        (("http://127.0.0.1/",), {"concurrency": 0}, ValueError, "concurrency"),
        (("http://127.0.0.1/",), {"timeout": 0}, ValueError, "timeout"),
    ],
)
def test_add_webhook_arguments_are_checked(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, name: str
) -> None:
    fake = FakeAcquire(cases=1)
    with pytest.raises(error, match=name):
        fake.add_webhook(*args, **kwargs)
    assert fake.webhooks == []


def test_invite_and_deliver_arguments_are_checked() -> None:
    fake = FakeAcquire(cases=1)
    with pytest.raises(ValueError, match="case_id"):
        fake.invite(999)
    with pytest.raises(TypeError, match="case_id"):
        fake.invite("1000")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="user_id"):
        fake.invite(1000, user_id="25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="case_id"):
        fake.deliver_status(999)
    with pytest.raises(TypeError, match="event"):
        fake.deliver("", {})
    with pytest.raises(TypeError, match="data"):
        fake.deliver("x", [])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- with the SDK's bot


async def test_a_bot_joins_and_greets_what_the_emulator_announces() -> None:
    # The example of docs/testing.md#webhooks, as written there.
    async with FakeAcquire(cases=3) as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            bot = Bot(
                client,
                "s3cret",
                auto_join=("user:case-invite", "case:status=pending"),
                greeting="Hello! How can I help?",
            )
            runner = web.AppRunner(bot.app(path="/acquire"))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            fake.add_webhook(
                f"http://127.0.0.1:{port}/acquire",
                secret="s3cret",
                faults=WebhookFaults(duplicate=1.0, seed=1),  # every delivery sent twice
            )
            fake.invite(1000)
            fake.add_case(status="pending")  # case:status "pending" (assumed for a new case)
            await fake.webhooks_idle(timeout=5)  # the bot answered: its work may still run
            await runner.cleanup()  # stops the bot, after its work is done
        assert fake.is_joined(1000) and fake.is_joined(1003)
        assert len(fake.messages(1000)) == 1  # greeted once, though invited twice
        assert len(fake.messages(1003)) == 1


def test_the_documented_example_is_this_file() -> None:
    assert_example_is_in(
        Path(__file__).parents[1] / "docs" / "testing.md", "## Webhooks", Path(__file__)
    )


async def test_announce_webhook_for_a_separate_bot(receiver: Receiver) -> None:
    # What serve(webhook=...) does, before the emulator starts.
    fake = FakeAcquire(cases=3)
    fake.close_case(1002)
    announce_webhook(fake, receiver.url, secret=SECRET, invite=True)
    async with fake:
        lines = describe(fake, default_key=True)
        await fake.webhooks_idle(timeout=5)
    assert sorted((r.json()["event"], r.json()["data"]["caseId"]) for r in receiver.received) == [
        ("case:status", "1000"),
        ("case:status", "1001"),
        ("case:status", "1002"),
        ("user:case-invite", "1000"),
        ("user:case-invite", "1001"),
    ]
    assert f"  webhook: {receiver.url} (case:status, user:case-invite; signed)" in lines
    assert SECRET not in "\n".join(lines)
    assert fake.webhooks[0].faults.retry_delay == 1.0  # a bot may start a moment later
