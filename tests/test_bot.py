"""Bot: the receiver's answers, the auto-join policy, handlers, de-duplication, overload and
shutdown, on real sockets, with a real AcquireClient against FakeAcquire."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from acquire_async import AcquireClient, RetryPolicy
from acquire_async.bot import Bot, Router
from acquire_async.testing import FakeAcquire, Faults
from acquire_async.webhooks import SIGNATURE_HEADER, construct_event, sign

SECRET = "whsec-bot-test-Sup3rS3cret"
FIRST = 1000


def body_of(
    event: str, case_id: int | None = None, status: str | None = None, **more: Any
) -> bytes:
    """A compact delivery: ``{"event": ..., "data": {"caseId": "<id>", ...}}``."""
    data: dict[str, Any] = dict(more)
    if case_id is not None:
        data["caseId"] = str(case_id)
    if status is not None:
        data["status"] = status
    return json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()


def invite(case_id: int | None, **more: Any) -> bytes:
    return body_of("user:case-invite", case_id, userId="25", **more)


def headers(body: bytes, secret: str | None = SECRET) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if secret is not None:
        out[SIGNATURE_HEADER] = sign(body, secret)
    return out


class Records(list[dict[str, Any]]):
    def kinds(self) -> list[str]:
        return [record["kind"] for record in self]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [record for record in self if record["kind"] == kind]


@asynccontextmanager
async def running(
    cases: int = 5,
    path: str = "/hook",
    faults: Faults | None = None,
    retry: RetryPolicy | None = None,
    **options: Any,
) -> AsyncIterator[tuple[FakeAcquire, AcquireClient, Bot, str, Records]]:
    """A FakeAcquire (with those faults), a client on it, a Bot with those options served on
    127.0.0.1. The bot's own retries wait 10 ms, doubling (tests need no real backoff)."""
    records = Records()
    options.setdefault("on_record", records.append)
    options.setdefault("greeting", "Hello! How can I help?")
    # Both kinds of trigger (the default is invites only), so the tests cover status rules.
    options.setdefault("auto_join", ("user:case-invite", "case:status=pending"))
    options.setdefault("backoff", 0.01)
    options.setdefault("backoff_cap", 0.2)
    async with FakeAcquire(cases=cases, first_case_id=FIRST, faults=faults) as fake:
        async with AcquireClient(
            api_key=fake.api_key, base_url=fake.base_url, retry=retry or RetryPolicy()
        ) as client:
            bot = Bot(client, options.pop("secret", SECRET), **options)
            runner = web.AppRunner(bot.app(path=path), access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = runner.addresses[0][1]
                yield fake, client, bot, f"http://127.0.0.1:{port}{path}", records
            finally:
                await runner.cleanup()


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, secret: str | None = SECRET
) -> aiohttp.ClientResponse:
    async with http.post(url, data=body, headers=headers(body, secret)) as response:
        await response.read()
        return response


async def idle(bot: Bot, timeout: float = 5.0) -> None:
    """Wait until every accepted event's work has finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while bot.queued or bot.running:
        assert loop.time() < deadline, "the bot did not go idle"
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------- the policy


async def test_an_invite_joins_and_greets_once_even_when_redelivered() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        body = invite(FIRST)
        first = await post(http, url, body)
        assert first.status == 200
        await idle(bot)
        again = await post(http, url, body)  # an at-least-once redelivery
        assert again.status == 200
        await idle(bot)

        assert fake.is_joined(FIRST)
        assert [m["message"] for m in fake.messages(FIRST)] == ["Hello! How can I help?"]
        assert [r.operation for r in fake.requests] == ["join_chat", "add_message"]
        assert records.kinds()[:4] == ["received", "joined", "greeted", "duplicate"]
        assert records.of("joined")[0]["case_id"] == FIRST
        assert bot.stats.accepted == 1 and bot.stats.duplicates == 1
        assert bot.stats.joined == bot.stats.greeted == 1


async def test_already_joined_is_a_success_and_is_not_greeted() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.mark_joined(FIRST)
        assert (await post(http, url, invite(FIRST))).status == 200
        await idle(bot)
        assert fake.messages(FIRST) == []
        assert records.kinds() == ["received", "already_joined"]
        assert bot.stats.already_joined == 1
        assert bot.stats.joined == bot.stats.greeted == bot.stats.join_failed == 0


async def test_two_events_for_one_case_join_once_and_greet_once() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        pending = body_of("case:status", FIRST, "pending")
        answers = await asyncio.gather(post(http, url, invite(FIRST)), post(http, url, pending))
        assert [a.status for a in answers] == [200, 200]
        await idle(bot)
        assert len(fake.messages(FIRST)) == 1
        assert sorted(records.kinds()) == sorted(
            ["received", "received", "joined", "greeted", "already_joined"]
        )


async def test_two_events_for_one_case_run_one_after_the_other() -> None:
    # Each request takes 0.1 s: two workers at once would send both joins before either is
    # answered, and never-greeted-twice would rest on the server alone.
    faults = Faults(latency=0.1)
    async with running(faults=faults) as (fake, _, bot, url, _records):
        pending = body_of("case:status", FIRST, "pending")
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(post(http, url, invite(FIRST)), post(http, url, pending))
        await idle(bot)
        assert [r.operation for r in fake.requests] == ["join_chat", "add_message", "join_chat"]
        assert len(fake.messages(FIRST)) == 1
        assert bot.stats.joined == bot.stats.already_joined == 1
        assert bot._policy.locked_cases == 0  # a free case's lock is dropped


async def test_the_status_of_a_rule_must_match() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        await post(http, url, body_of("case:status", FIRST, "active"))
        await post(http, url, body_of("case:status", FIRST + 1, "closed"))
        await idle(bot)
        assert fake.requests == []
        assert records.kinds() == ["received", "received"]


async def test_an_event_without_a_case_id_is_recorded_and_skipped() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        assert (await post(http, url, invite(None))).status == 200
        await idle(bot)
        assert fake.requests == []
        assert records.of("skipped")[0]["reason"] == "no case id"
        assert bot.stats.skipped == 1


async def test_auto_join_off_joins_nothing_but_handlers_run() -> None:
    seen: list[int | None] = []
    async with running(auto_join=()) as (fake, _, bot, url, _r), aiohttp.ClientSession() as http:

        @bot.on("user:case-invite")
        async def on_invite(event: Any, client: AcquireClient) -> None:
            seen.append(event.case_id)

        await post(http, url, invite(FIRST))
        await idle(bot)
        assert fake.requests == []
        assert seen == [FIRST]


async def test_a_failed_join_is_recorded_and_not_greeted() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.close_case(FIRST)
        await post(http, url, invite(FIRST))
        await idle(bot)
        failed = records.of("failed")
        assert len(failed) == 1
        assert failed[0]["action"] == "join"
        assert failed[0]["case_id"] == FIRST
        assert failed[0]["request_sent"] is True
        assert failed[0]["final"] is True and failed[0]["tries"] == 1
        assert fake.messages(FIRST) == []
        assert bot.stats.join_failed == 1


# ---------------------------------------------------------------------------- the bot's retries


async def test_a_join_that_fails_transiently_is_tried_again_by_the_bot() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.script([503, 503, 503, 503])  # every attempt of the client's first call
        assert (await post(http, url, invite(FIRST))).status == 200
        await idle(bot)
        assert fake.is_joined(FIRST)
        assert len(fake.messages(FIRST)) == 1
        assert [(r.operation, r.status) for r in fake.requests] == [("join_chat", 503)] * 4 + [
            ("join_chat", 200),
            ("add_message", 200),
        ]
        assert records.kinds() == ["received", "retrying", "joined", "greeted"]
        retrying = records.of("retrying")[0]
        assert retrying["action"] == "join" and retrying["http_status"] == 503
        assert retrying["tries"] == 1 and 0 < retrying["delay"] <= 0.2
        assert bot.stats.retried == 1 and bot.stats.join_failed == 0
        assert bot.stats.handled == 1


@pytest.mark.slow
async def test_a_greeting_the_server_did_not_act_on_is_tried_again_once_posted() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.script([None, 503, 503, 503, 503])  # the join answers; the greeting is refused
        await post(http, url, invite(FIRST))
        await idle(bot)
        assert [m["message"] for m in fake.messages(FIRST)] == ["Hello! How can I help?"]
        assert [r["action"] for r in records.of("retrying")] == ["greet"]
        assert bot.stats.greeted == 1 and bot.stats.greet_failed == 0


async def test_a_permanent_failure_is_not_retried_and_its_redelivery_stays_a_duplicate() -> None:
    ran: list[int | None] = []
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:

        @bot.on("user:case-invite")
        async def handler(event: Any, client: AcquireClient) -> None:
            ran.append(event.case_id)

        fake.script([404])
        body = invite(FIRST)
        assert (await post(http, url, body)).status == 200
        await idle(bot)
        assert [(r.operation, r.status) for r in fake.requests] == [("join_chat", 404)]
        assert records.of("retrying") == []
        failed = records.of("failed")
        assert [(f["http_status"], f["final"], f["tries"]) for f in failed] == [(404, True, 1)]
        # It would fail the same way: the redelivery is a duplicate; the handler ran once.
        assert (await post(http, url, body)).status == 200
        await idle(bot)
        assert bot.stats.accepted == 1 and bot.stats.duplicates == 1
        assert [r.operation for r in fake.requests] == ["join_chat"]
        assert ran == [FIRST] and bot.stats.join_failed == 1


@pytest.mark.slow
async def test_when_the_time_runs_out_the_delivery_is_forgotten() -> None:
    options = {"retry_for": 0.0}  # one try of the bot's: the client's four attempts
    async with running(**options) as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.script([503] * 4)
        body = invite(FIRST)
        await post(http, url, body)
        await idle(bot)
        assert not fake.is_joined(FIRST)
        assert [(f["final"], f["tries"]) for f in records.of("failed")] == [(True, 1)]
        assert bot.stats.join_failed == 1 and bot.stats.retried == 0
        assert (await post(http, url, body)).status == 200  # Acquire's next delivery
        await idle(bot)
        assert fake.is_joined(FIRST) and len(fake.messages(FIRST)) == 1
        assert bot.stats.duplicates == 0 and bot.stats.joined == 1


async def test_a_greeting_whose_answer_was_lost_is_never_sent_again() -> None:
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:
        fake.script([None, "drop_after_read"])  # the join answers; the greeting's answer is lost
        await post(http, url, invite(FIRST))
        await idle(bot)
        assert len(fake.messages(FIRST)) == 1  # posted once, and not resent
        failed = records.of("failed")
        assert [(f["action"], f["request_sent"]) for f in failed] == [("greet", True)]
        assert bot.stats.greet_failed == 1


# ---------------------------------------------------------------------------- handlers


async def test_handlers_run_after_the_policy_and_an_exception_is_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    async with running() as (fake, _, bot, url, records), aiohttp.ClientSession() as http:

        @bot.on("user:case-invite")
        async def boom(event: Any, client: AcquireClient) -> None:
            calls.append(f"boom joined={fake.is_joined(event.case_id)}")
            raise ValueError("handler bug")

        @bot.on()
        async def after(event: Any, client: AcquireClient) -> None:
            calls.append("after")

        with caplog.at_level(logging.INFO, logger="acquire_async.bot"):
            assert (await post(http, url, invite(FIRST))).status == 200
            await idle(bot)
            assert (await post(http, url, invite(FIRST + 1))).status == 200  # still serving
            await idle(bot)

        assert calls == ["boom joined=True", "after"] * 2
        failing = [r for r in caplog.records if "handler" in r.getMessage()]
        assert len(failing) == 2
        message = failing[0].getMessage()
        assert "user:case-invite" in message and str(FIRST) in message
        assert failing[0].exc_info is not None
        failed = records.of("failed")
        assert failed[0]["action"] == "handler" and failed[0]["error"] == "ValueError"
        assert records.of("handled")[0]["errors"] == 1
        assert bot.stats.handler_errors == 2 and bot.stats.handled == 2
        assert SECRET not in caplog.text


async def test_a_cancelled_error_from_a_handler_passes_through_and_the_worker_is_replaced() -> None:
    handled: list[int | None] = []
    async with running(auto_join=(), concurrency=1) as (_, _c, bot, url, _r):

        @bot.on("user:case-invite")
        async def cancelled(event: Any, client: AcquireClient) -> None:
            if event.case_id == FIRST:
                raise asyncio.CancelledError
            handled.append(event.case_id)

        async with aiohttp.ClientSession() as http:
            await post(http, url, invite(FIRST))
            await idle(bot)
            await post(http, url, invite(FIRST + 1))
            await idle(bot)
        assert handled == [FIRST + 1]


class Escaped(BaseException):
    """Neither an Exception nor a cancellation: a handler's bug all the same."""


async def test_a_handler_raising_a_base_exception_is_its_failure_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int | None] = []
    async with running(auto_join=(), concurrency=1) as (_, _c, bot, url, records):

        @bot.on()
        async def odd(event: Any, client: AcquireClient) -> None:
            calls.append(event.case_id)
            if event.case_id == FIRST:
                raise Escaped("not an Exception")

        @bot.on()
        async def after(event: Any, client: AcquireClient) -> None:
            calls.append(-1)

        async with aiohttp.ClientSession() as http:
            with caplog.at_level(logging.WARNING, logger="acquire_async.bot"):
                await post(http, url, invite(FIRST))
                await idle(bot)
                await post(http, url, invite(FIRST + 1))
                await idle(bot)
        assert calls == [FIRST, -1, FIRST + 1, -1]  # the next handler and event still ran
        assert "cancelled" not in caplog.text
        failing = [r.getMessage() for r in caplog.records if "handler" in r.getMessage()]
        assert len(failing) == 1 and "user:case-invite" in failing[0] and str(FIRST) in failing[0]
        assert records.of("failed")[0]["error"] == "Escaped"
        assert bot.stats.handler_errors == 1 and bot.stats.handled == 2


async def test_a_router_built_elsewhere() -> None:
    router = Router()
    seen: list[str] = []

    @router.register("case:status", status="closed")
    async def closed(event: Any, client: AcquireClient) -> None:
        seen.append(event.event)

    async with running(router=router) as (_, _c, bot, url, _r), aiohttp.ClientSession() as http:
        assert bot.router is router
        await post(http, url, body_of("case:status", FIRST, "closed"))
        await idle(bot)
    assert seen == ["case:status"]


# ---------------------------------------------------------------------------- the receiver


async def test_the_receiver_refuses_what_it_cannot_trust() -> None:
    async with running(max_body=4096) as (fake, _, bot, url, records):
        body = invite(FIRST)
        async with aiohttp.ClientSession() as http:

            async def status(**kwargs: Any) -> int:
                method = kwargs.pop("method", "POST")
                async with http.request(method, url, **kwargs) as response:
                    await response.read()
                    if response.status == 405:
                        assert response.headers["Allow"] == "POST"
                    return response.status

            json_type = {"Content-Type": "application/json"}
            assert await status(data=body, headers=json_type) == 401  # missing
            forged = {**json_type, SIGNATURE_HEADER: sign(body, "not-the-secret")}
            assert await status(data=body, headers=forged) == 401
            assert await status(data=body, headers={**json_type, SIGNATURE_HEADER: ""}) == 401
            bad = b"{not json"
            assert await status(data=bad, headers=headers(bad)) == 400
            plain = {"Content-Type": "text/plain", SIGNATURE_HEADER: sign(body, SECRET)}
            assert await status(data=body, headers=plain) == 415
            big = invite(FIRST, padding="x" * 5000)
            assert await status(data=big, headers=headers(big)) == 413
            assert await status(method="GET") == 405
            assert await status(method="PUT", data=body, headers=headers(body)) == 405
            upper = {**json_type, SIGNATURE_HEADER: sign(body, SECRET).upper()}
            assert await status(data=body, headers=upper) == 200  # hex in any case

        await idle(bot)
        assert [r["http_status"] for r in records.of("rejected")] == [
            401,
            401,
            401,
            400,
            415,
            413,
            405,
            405,
        ]
        # Every delivery is counted once, in one of the answers' counters.
        assert bot.stats.rejected == 8 and bot.stats.accepted == 1
        assert bot.stats.deliveries == 9
        assert [r.operation for r in fake.requests] == ["join_chat", "add_message"]


async def test_a_chunked_body_is_not_read_past_the_cap() -> None:
    # The sender writes max_body + 1 bytes and then stalls: reading to the end would hang.
    async with running(max_body=1024) as (_, _c, bot, url, _records):
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(5):  # 5 x 205 bytes = 1025
                writer.write(b"cd\r\n" + b"x" * 205 + b"\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5.0)
        finally:
            writer.close()
            await writer.wait_closed()
        assert status_line.startswith(b"HTTP/1.1 413")
        assert bot.stats.rejected == 1 and bot.stats.accepted == 0


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    # The headers promise 10 MB and no byte follows: waiting for the body would hang.
    async with running(max_body=1024) as (_, _c, bot, url, _records):
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000000\r\n\r\n"
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5.0)
        finally:
            writer.close()
            await writer.wait_closed()
        assert status_line.startswith(b"HTTP/1.1 413")
        assert bot.stats.rejected == 1


def stalled_head(length: int = 1000) -> bytes:
    """The headers of a delivery whose body will never all come."""
    return (
        b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n{" % length
    )


async def test_stalled_senders_get_408_and_the_bodies_being_read_stay_capped() -> None:
    async with running(max_receiving=4, read_timeout=0.3) as (_, _c, bot, url, records):
        port = int(url.split(":")[2].split("/")[0])
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, bot.receiving)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        connections = []
        for _ in range(12):
            connections.append(await asyncio.open_connection("127.0.0.1", port))
            connections[-1][1].write(stalled_head())
            await connections[-1][1].drain()

        async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
            head = await reader.readuntil(b"\r\n\r\n")
            return head.split(b" ")[1], await reader.read()  # read(): the bot closes it

        answers = await asyncio.wait_for(asyncio.gather(*(answer(r) for r, _ in connections)), 5)
        watcher.cancel()
        for _, writer in connections:
            writer.close()
        assert Counter(status for status, _ in answers) == {b"408": 4, b"503": 8}
        assert peak <= 4 and bot.receiving == 0
        assert [r["http_status"] for r in records.of("rejected")] == [408] * 4
        assert [r["reason"] for r in records.of("busy")] == ["receiving"] * 8
        async with aiohttp.ClientSession() as http:  # and real deliveries still get in
            assert (await post(http, url, invite(FIRST))).status == 200


async def test_a_sender_gone_mid_body_is_a_quiet_400(caplog: pytest.LogCaptureFixture) -> None:
    async with running() as (_, _c, bot, url, records):
        port = int(url.split(":")[2].split("/")[0])
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(stalled_head())
                await writer.drain()
                while bot.receiving == 0:
                    await asyncio.sleep(0.005)
                writer.transport.abort()  # a reset, mid-body
                while bot.receiving:
                    await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert [r["http_status"] for r in records.of("rejected")] == [400] * 3
        assert bot.stats.rejected == 3


async def test_the_backlog_is_bounded_in_bytes_too() -> None:
    release = asyncio.Event()
    options = {"concurrency": 1, "backlog_bytes": 2000, "max_body": 1000, "auto_join": ()}
    async with running(cases=10, **options) as (_, _c, bot, url, records):

        @bot.on()
        async def slow(event: Any, client: AcquireClient) -> None:
            await release.wait()

        bodies = [
            invite(FIRST + n, note="x" * (600 - len(invite(FIRST + n, note="")))) for n in range(4)
        ]
        assert all(len(body) == 600 for body in bodies)
        async with aiohttp.ClientSession() as http:
            statuses = [(await post(http, url, body)).status for body in bodies]
            assert statuses == [200, 200, 200, 503]  # 1,800 bytes held; 2,400 would not fit
            assert bot.queued_bytes == 1800
            assert records.of("busy")[0]["reason"] == "backlog full"
            release.set()
            await idle(bot)
            assert bot.queued_bytes == 0
            assert (await post(http, url, bodies[3])).status == 200


async def test_the_apps_cleanup_drains_for_drain_timeout() -> None:
    async with FakeAcquire(cases=1, first_case_id=FIRST) as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            records = Records()
            bot = Bot(client, SECRET, auto_join=(), on_record=records.append)
            started = asyncio.Event()

            @bot.on()
            async def stuck(event: Any, client: AcquireClient) -> None:
                started.set()
                await asyncio.sleep(60)

            runner = web.AppRunner(bot.app(path="/hook", drain_timeout=0.05), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
            async with aiohttp.ClientSession() as http:
                await post(http, url, invite(FIRST))
            await started.wait()
            await asyncio.wait_for(runner.cleanup(), 3.0)  # not aclose's default 30 s
            assert [r["stage"] for r in records.of("dropped")] == ["running"]


async def test_a_closed_client_makes_the_bot_busy_not_blind() -> None:
    async with running() as (fake, client, bot, url, records), aiohttp.ClientSession() as http:
        await client.aclose()
        answer = await post(http, url, invite(FIRST))
        assert answer.status == 503 and answer.headers["Retry-After"] == "5"
        assert records.of("busy")[0]["reason"] == "client closed"
        assert bot.stats.accepted == 0 and fake.requests == []


async def test_mounted_in_an_existing_app() -> None:
    async with FakeAcquire(cases=1, first_case_id=FIRST) as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            async with Bot(client, SECRET, greeting="Hi") as bot:
                app = web.Application()
                app.router.add_post("/acquire", bot.handle)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                try:
                    await web.TCPSite(runner, "127.0.0.1", 0).start()
                    url = f"http://127.0.0.1:{runner.addresses[0][1]}/acquire"
                    async with aiohttp.ClientSession() as http:
                        assert (await post(http, url, invite(FIRST))).status == 200
                    await idle(bot)
                finally:
                    await runner.cleanup()
            assert fake.is_joined(FIRST) and len(fake.messages(FIRST)) == 1
            assert not client.closed  # the caller owns the client


async def test_verification_off_only_with_secret_none(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="acquire_async.bot"):
        async with running(secret=None) as (fake, _, bot, url, _r), aiohttp.ClientSession() as http:
            assert (await post(http, url, invite(FIRST), secret=None)).status == 200
            await idle(bot)
            assert fake.is_joined(FIRST)
    assert "verification is OFF" in caplog.text


async def test_on_record_that_raises_does_not_break_the_receiver() -> None:
    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("printer broke")

    async with running(on_record=broken) as (fake, _, bot, url, _r), aiohttp.ClientSession() as h:
        assert (await post(h, url, invite(FIRST))).status == 200
        await idle(bot)
        assert fake.is_joined(FIRST)


async def test_the_secret_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with running() as (_, _c, bot, url, records), aiohttp.ClientSession() as http:
            body = invite(FIRST)
            async with http.post(
                url, data=body, headers=headers(body, "wrong-secret-entirely")
            ) as response:
                text = await response.text()
            await post(http, url, body)
            await idle(bot)
            shown = [repr(bot), str(bot), repr(vars(bot)), text, json.dumps(records)]
            shown.append(repr(bot._secret))
            with pytest.raises(TypeError):
                import pickle

                pickle.dumps(bot._secret)
    for text in [*shown, caplog.text]:
        assert SECRET not in text
        assert "acquire-fake-key" not in text


def test_records_are_json() -> None:
    # Every kind a record can have, through the CLI's printer: json.dumps must never fail.
    async def scenario() -> Records:
        async with running(backlog=1, concurrency=1) as (fake, _, bot, url, records):
            fake.mark_joined(FIRST + 1)
            async with aiohttp.ClientSession() as http:
                for body in (invite(FIRST), invite(FIRST + 1), invite(None), b"nope"):
                    await post(http, url, body)
                    await idle(bot)
            return records

    records = asyncio.run(scenario())
    for record in records:
        assert json.loads(json.dumps(record)) == record
    assert {"received", "joined", "greeted", "already_joined", "skipped", "rejected"} <= set(
        records.kinds()
    )


# ---------------------------------------------------------------------------- submit


async def test_submit_is_the_framework_neutral_path() -> None:
    async with FakeAcquire(cases=3, first_case_id=FIRST) as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            bot = Bot(client, SECRET, backlog=1, concurrency=1)
            body = invite(FIRST)
            event = construct_event(body, sign(body, SECRET), SECRET)
            assert bot.submit(event) == "accepted"  # starts the workers
            assert bot.submit(event) == "duplicate"
            other = construct_event(invite(FIRST + 1), None, None)
            third = construct_event(invite(FIRST + 2), None, None)
            results = [bot.submit(other), bot.submit(third)]
            assert "busy" in results  # one worker, one slot: something did not fit
            with pytest.raises(TypeError, match="event"):
                bot.submit({"event": "x"})  # type: ignore[arg-type]
            await bot.aclose()
            assert bot.submit(other) == "busy"
            assert fake.is_joined(FIRST)


# ---------------------------------------------------------------------------- overload


@pytest.mark.slow
async def test_overload_answers_503_and_loses_nothing_acknowledged() -> None:
    release = asyncio.Event()
    handled: Counter[int | None] = Counter()
    async with running(cases=40, concurrency=2, backlog=5, auto_join=()) as (_, _c, bot, url, _r):

        @bot.on()
        async def slow(event: Any, client: AcquireClient) -> None:
            await release.wait()
            handled[event.case_id] += 1

        bodies = {FIRST + n: invite(FIRST + n) for n in range(40)}
        async with aiohttp.ClientSession() as http:
            first = list(bodies.values())[:2]
            assert [(await post(http, url, b)).status for b in first] == [200, 200]
            while bot.running < 2:  # both workers busy: the next five wait in the backlog
                await asyncio.sleep(0.005)
            answers = await asyncio.gather(*(post(http, url, b) for b in bodies.values()))
            statuses = dict(zip(bodies, (a.status for a in answers)))
            statuses.update(dict.fromkeys(list(bodies)[:2], 200))
            busy = [case for case, status in statuses.items() if status == 503]
            acknowledged = [case for case, status in statuses.items() if status == 200]
            assert len(acknowledged) == 2 + 5  # two running, five waiting
            assert all(a.headers["Retry-After"] == "5" for a in answers if a.status == 503)
            assert bot.queued == 5
            assert bot.stats.duplicates == 2  # the first two, sent again in the burst
            release.set()
            await idle(bot)
            assert set(handled) == set(acknowledged)  # every acknowledged event ran
            # A refused delivery was not remembered: its retry is accepted, not a duplicate.
            retry = await post(http, url, bodies[busy[0]])
            assert retry.status == 200
            await idle(bot)
        assert handled[busy[0]] == 1
        assert all(count == 1 for count in handled.values())
        assert bot.stats.busy == len(busy)


# ---------------------------------------------------------------------------- load


@pytest.mark.slow
async def test_1000_deliveries_from_50_senders() -> None:
    """300 invites, 300 pending statuses for the same cases, 300 redeliveries, 100 forgeries."""
    cases = 300
    rng = random.Random(12)
    invites = [invite(FIRST + n) for n in range(cases)]
    pendings = [body_of("case:status", FIRST + n, "pending") for n in range(cases)]
    valid = invites + pendings
    redelivered = [rng.choice(valid) for _ in range(300)]
    forged = [invite(FIRST + n, note="forged") for n in range(100)]
    deliveries = [(body, SECRET) for body in valid + redelivered]
    deliveries += [(body, "forger") for body in forged]
    rng.shuffle(deliveries)
    assert len(deliveries) == 1000

    handled: Counter[tuple[str, int | None]] = Counter()
    async with running(cases=cases) as (fake, _, bot, url, records):

        @bot.on()
        async def count(event: Any, client: AcquireClient) -> None:
            handled[(event.event, event.case_id)] += 1

        statuses: Counter[int] = Counter()
        work = iter(deliveries)
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def sender() -> None:
                for body, secret in work:
                    statuses[(await post(http, url, body, secret)).status] += 1

            await asyncio.gather(*(sender() for _ in range(50)))
        await idle(bot, timeout=30.0)

        assert statuses == {200: 900, 401: 100}
        assert len(handled) == 2 * cases and set(handled.values()) == {1}
        assert all(fake.is_joined(FIRST + n) for n in range(cases))
        assert all(len(fake.messages(FIRST + n)) == 1 for n in range(cases))
        joins = Counter(r.case_id for r in fake.requests if r.operation == "join_chat")
        assert set(joins.values()) == {2}  # invite and status each asked; one joined
        assert bot.stats.joined == bot.stats.greeted == cases
        assert bot.stats.already_joined == cases
        assert bot.stats.accepted == 2 * cases and bot.stats.duplicates == 300
        assert len(records.of("received")) == 2 * cases


@pytest.mark.slow
async def test_a_storm_of_503s_and_drops_loses_no_acknowledged_case() -> None:
    """700 cases, 1,050 distinct deliveries and ~370 redeliveries from 50 senders, while the API
    answers 35% of requests 503 and drops 8% of connections (half of those after acting).
    The client's retry budget runs dry; the bot's own tries, with its default retry_for
    (bounded in time, not in tries), must join every acknowledged case, none twice, and greet
    none twice. A 503 from the bot (backlog full) is sent again."""
    cases = 700
    rng = random.Random(7)
    unique = [invite(FIRST + n) for n in range(cases)]
    unique += [body_of("case:status", FIRST + n, "pending") for n in range(0, cases, 2)]
    sends = unique + [rng.choice(unique) for _ in range(370)]
    rng.shuffle(sends)
    assert len(sends) >= 1400
    faults = Faults(seed=7, error_rates={503: 0.35}, drop_after_read=0.05, drop_before_read=0.03)
    options = {"backlog": 100, "concurrency": 16}
    async with running(cases=cases, faults=faults, **options) as (fake, client, bot, url, _r):
        answers: Counter[int] = Counter()
        acknowledged: set[bytes] = set()
        work = iter(sends)
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def sender() -> None:
                for body in work:
                    while True:  # as Acquire would: a 503 is delivered again later
                        status = (await post(http, url, body)).status
                        answers[status] += 1
                        if status != 503:
                            break
                        await asyncio.sleep(0.05)
                    if status == 200:
                        acknowledged.add(body)

            await asyncio.gather(*(sender() for _ in range(50)))
        await idle(bot, timeout=60.0)

        assert set(answers) <= {200, 503} and len(acknowledged) == len(unique)
        acked_cases = {json.loads(body)["data"]["caseId"] for body in acknowledged}
        assert len(acked_cases) == cases
        never_joined = [n for n in range(cases) if not fake.is_joined(FIRST + n)]
        assert never_joined == []
        applied = Counter(
            r.case_id for r in fake.requests if r.operation == "join_chat" and r.applied
        )
        assert set(applied.values()) == {1}  # none joined twice
        greetings = [len(fake.messages(FIRST + n)) for n in range(cases)]
        assert max(greetings) == 1  # none greeted twice
        # A greeting whose answer was dropped was stored, failed and (rightly) not sent again.
        assert bot.stats.greeted <= sum(greetings) <= bot.stats.greeted + bot.stats.greet_failed
        assert bot.stats.handled == bot.stats.accepted == len(unique) + bot.stats.join_failed
        assert bot.stats.retried > 100  # the storm was real: the bot tried again, a lot
        assert client.stats.errors.get("InternalServerError", 0) > 300


# ---------------------------------------------------------------------------- shutdown


async def test_shutdown_finishes_the_work_in_hand() -> None:
    done: list[int | None] = []
    async with running(concurrency=2, auto_join=()) as (_, client, bot, url, _records):

        @bot.on()
        async def slow(event: Any, client: AcquireClient) -> None:
            await asyncio.sleep(0.02)
            done.append(event.case_id)

        async with aiohttp.ClientSession() as http:
            for n in range(6):
                await post(http, url, invite(FIRST + n))
            await bot.aclose(timeout=10.0)
            assert len(done) == 6
            assert bot.stats.dropped == 0
            late = await post(http, url, invite(FIRST + 9))
            assert late.status == 503 and late.headers["Retry-After"] == "5"
        assert not client.closed


async def test_shutdown_times_out_and_says_what_it_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(concurrency=1, auto_join=()) as (_, _c, bot, url, records):
        started = asyncio.Event()

        @bot.on()
        async def stuck(event: Any, client: AcquireClient) -> None:
            started.set()
            await asyncio.sleep(60)

        async with aiohttp.ClientSession() as http:
            for n in range(3):
                await post(http, url, invite(FIRST + n))
        await started.wait()
        with caplog.at_level(logging.WARNING, logger="acquire_async.bot"):
            await bot.aclose(timeout=0.05)
        dropped = records.of("dropped")
        assert [(r["stage"], r["case_id"]) for r in dropped] == [
            ("running", FIRST),
            ("queued", FIRST + 1),
            ("queued", FIRST + 2),
        ]
        assert bot.stats.dropped == 3
        assert "dropped 3 event(s)" in caplog.text
        await bot.aclose()  # twice is fine


async def test_aclose_before_start_and_start_after_close() -> None:
    async with FakeAcquire() as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            bot = Bot(client, SECRET)
            await bot.aclose()
            with pytest.raises(RuntimeError, match="closed"):
                await bot.start()


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"auto_join": "user:case-invite"}, TypeError, "auto_join"),
        ({"auto_join": [42]}, TypeError, "auto_join"),
        ({"auto_join": ["case:status="]}, ValueError, "auto_join"),
        ({"auto_join": ["=pending"]}, ValueError, "auto_join"),
        ({"auto_join": ["case: status"]}, ValueError, "auto_join"),
        ({"auto_join": ["a=b=c"]}, ValueError, "auto_join"),
        ({"greeting": ""}, ValueError, "greeting"),
        ({"greeting": 3}, TypeError, "greeting"),
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"backlog": 1.5}, TypeError, "backlog"),
        ({"dedupe_window": -1}, ValueError, "dedupe_window"),
        ({"max_body": 0}, ValueError, "max_body"),
        ({"retry_for": -1.0}, ValueError, "retry_for"),
        ({"retry_for": "600"}, TypeError, "retry_for"),
        ({"backoff": -1}, ValueError, "backoff"),
        ({"backoff_cap": "30"}, TypeError, "backoff_cap"),
        ({"backlog_bytes": 1000, "max_body": 2000}, ValueError, "backlog_bytes"),
        ({"max_receiving": 0}, ValueError, "max_receiving"),
        ({"read_timeout": float("inf")}, ValueError, "read_timeout"),
        ({"secret": ""}, ValueError, "secret"),
        ({"secret": 123}, TypeError, "secret"),
        ({"router": object()}, TypeError, "router"),
        ({"on_record": "print"}, TypeError, "on_record"),
    ],
)
async def test_bad_arguments_raise_early(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    async with FakeAcquire() as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            secret = options.pop("secret", SECRET)
            with pytest.raises(error, match=name):
                Bot(client, secret, **options)
            assert fake.requests == []


def test_the_client_must_be_an_acquire_client() -> None:
    with pytest.raises(TypeError, match="client"):
        Bot(object(), SECRET)  # type: ignore[arg-type]


async def test_async_on_record_is_refused() -> None:
    async def hook(record: dict[str, Any]) -> None:
        pass

    async with FakeAcquire() as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            with pytest.raises(TypeError, match="on_record"):
                Bot(client, SECRET, on_record=hook)


async def test_policy_is_normalised() -> None:
    async with FakeAcquire() as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            bot = Bot(client, SECRET, auto_join=["a", "b=c", "a"])
            assert bot.auto_join == ("a", "b=c")
            default = Bot(client, SECRET)
            assert default.auto_join == ("user:case-invite",)


# ---------------------------------------------------------------------------- second review


async def test_retry_after_zero_does_not_remove_the_backoff() -> None:
    # A proxy's "503 + Retry-After: 0" (or a date in the past) is a lower bound, not the wait.
    faults = Faults(retry_after=0.0)
    async with running(faults=faults) as (fake, _, bot, url, records):
        fake.script([429] * 4)  # Retry-After: 0 on each
        async with aiohttp.ClientSession() as http:
            await post(http, url, invite(FIRST))
        await idle(bot)
        retrying = records.of("retrying")
        assert len(retrying) == 1 and retrying[0]["delay"] >= 0.005  # backoff 0.01, half jitter
        assert fake.is_joined(FIRST)


@pytest.mark.slow
async def test_events_waiting_on_a_case_that_gave_up_try_once() -> None:
    # Three events for one case whose join keeps failing: the first retries for retry_for,
    # the two that waited on the case's lock try once each instead of a cycle each.
    options = {"retry_for": 0.5, "concurrency": 3, "retry": RetryPolicy(max_attempts=1)}
    async with running(**options) as (fake, _, bot, url, records):
        fake.script([503] * 400)
        bodies = [
            invite(FIRST),
            body_of("case:status", FIRST, "pending"),
            invite(FIRST, note="again"),
        ]
        async with aiohttp.ClientSession() as http:
            for body in bodies:
                assert (await post(http, url, body)).status == 200
        started = asyncio.get_running_loop().time()
        await idle(bot, timeout=10.0)
        took = asyncio.get_running_loop().time() - started
    tries = [f["tries"] for f in records.of("failed")]
    assert len(tries) == 3 and tries[0] > 1 and tries[1:] == [1, 1], tries
    assert took < 1.5, took  # one cycle of 0.5 s, not three
