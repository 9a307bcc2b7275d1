"""Fault servers on 127.0.0.1 for the resilience tests.

``FaultServer`` is an ``aiohttp.web`` app that answers the join endpoint according to a script
of actions, one per request (then ``default``); it tracks the peak number of requests in
flight and which cases were joined. ``RawServer`` is a bare ``asyncio.start_server`` for
protocol faults ``aiohttp.web`` cannot produce (bad chunking, a stale keep-alive connection).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from payloads import JOIN_RESPONSE

JOIN_PATH = "/api/v1/crm/messenger/chat/join"
PAYLOAD = JOIN_RESPONSE
ALREADY = json.dumps(
    {
        "error": {
            "code": "CHAT_ALREADY_JOINED",
            "message": "You have already joined this chat.",
            "data": None,
        }
    }
).encode()


def case_body(case_id: int) -> bytes:
    data = json.loads(PAYLOAD)
    data["data"]["id"] = case_id
    return json.dumps(data).encode()


def error_body(code: str, message: str = "error") -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "data": None}}).encode()


Action = Callable[[web.Request, "FaultServer", int], Awaitable[web.StreamResponse]]


async def ok(request: web.Request, server: FaultServer, case_id: int) -> web.StreamResponse:
    """Join: the case the first time, CHAT_ALREADY_JOINED (HTTP 200) after that."""
    if case_id in server.joined:
        return web.Response(body=ALREADY, content_type="application/json")
    server.joined.add(case_id)
    return web.Response(body=case_body(case_id), content_type="application/json")


def status(code: int, headers: dict[str, str] | None = None, body: bytes | None = None) -> Action:
    async def action(request: web.Request, server: FaultServer, case_id: int) -> web.Response:
        default = error_body("ERROR_SERVER_ERROR" if code >= 500 else f"HTTP_{code}", "fault")
        text = body if body is not None else default
        return web.Response(
            status=code, body=text, headers=headers or {}, content_type="application/json"
        )

    return action


def raw(body: bytes, code: int = 200) -> Action:
    async def action(request: web.Request, server: FaultServer, case_id: int) -> web.Response:
        return web.Response(status=code, body=body, content_type="application/json")

    return action


def sleep_then(seconds: float, then: Action = ok) -> Action:
    async def action(request: web.Request, server: FaultServer, case_id: int) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await then(request, server, case_id)

    return action


async def drop_after_read(
    request: web.Request, server: FaultServer, case_id: int
) -> web.StreamResponse:
    """The ambiguous failure: the join happens, the answer never arrives."""
    server.joined.add(case_id)
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def reset_mid_body(
    request: web.Request, server: FaultServer, case_id: int
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(PAYLOAD)
    await response.prepare(request)
    await response.write(PAYLOAD[:100])
    await asyncio.sleep(0.01)
    assert request.transport is not None
    request.transport.abort()
    return response


async def truncated(request: web.Request, server: FaultServer, case_id: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(PAYLOAD) + 50
    await response.prepare(request)
    await response.write(PAYLOAD)
    assert request.transport is not None
    request.transport.close()
    return response


def drip(interval: float, chunk: int = 1) -> Action:
    async def action(request: web.Request, server: FaultServer, case_id: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(PAYLOAD)
        await response.prepare(request)
        for start in range(0, len(PAYLOAD), chunk):
            await response.write(PAYLOAD[start : start + chunk])
            await asyncio.sleep(interval)
        return response

    return action


@dataclass
class FaultServer:
    """A join endpoint that plays ``script`` (one action per request), then ``default``."""

    script: list[Action] = field(default_factory=list)
    default: Action = ok
    requests: int = 0
    in_flight: int = 0
    peak: int = 0
    joined: set[int] = field(default_factory=set)
    arrivals: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    port: int = 0
    _queue: deque[Action] = field(default_factory=deque)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def __aenter__(self) -> FaultServer:
        self._queue.extend(self.script)
        app = web.Application()
        app.router.add_route("*", JOIN_PATH, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def then(self, *actions: Action) -> None:
        self._queue.extend(actions)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.arrivals.append(time.monotonic())
        self.methods.append(request.method)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            body: Any = await request.json()
            case_id = int(body["caseId"])
            action = self._queue.popleft() if self._queue else self.default
            return await action(request, self, case_id)
        finally:
            self.in_flight -= 1


class RawServer:
    """``asyncio.start_server`` answering each request with ``respond(n, connection_n)``.

    ``respond`` returns the raw bytes to write, or ``None`` to close the connection without
    answering.
    """

    def __init__(self, respond: Callable[[int, int], bytes | None]) -> None:
        self.respond = respond
        self.requests = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        on_this_connection = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests += 1
                on_this_connection += 1
                answer = self.respond(self.requests, on_this_connection)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def http_response(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )
