"""``FakeAcquire``: Acquire's Join Chat endpoint, served by ``aiohttp.web`` on a real socket.

One request travels like this (``FakeAcquire._handle``)::

    arrival ── rate limit? ─────────────────────────────▶ 429 + Retry-After   (no draw)
       │ decide the fault (script, else one draw), draw the latency
       ▼
    sleep(latency)
       │ drop_before_read ──────────────────────────────▶ abort, body unread
       ▼
    read the body
       │ http_NNN / error_envelope_200 ─────────────────▶ error envelope, no state change
       ▼
    the API: route → method → auth → body → case → join   (synchronous: one atomic step)
       │ drop_after_read ───────────────────────────────▶ abort (the join happened)
       │ truncate / malformed / slow_drip ──────────────▶ the answer, damaged or slow
       ▼
    the answer
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp
import msgspec
from aiohttp import web
from yarl import URL

from ._cases import (
    ALREADY_JOINED_MESSAGE,
    agent_user,
    apply_join,
    close,
    is_joined_by,
    make_waiting_case,
)
from ._faults import FaultInjector, Faults, ScriptItem

__all__ = [
    "API_PREFIX",
    "DEFAULT_AGENT_ID",
    "DEFAULT_AGENT_NAME",
    "DEFAULT_API_KEY",
    "JOIN_PATH",
    "FakeAcquire",
    "RecordedRequest",
]

DEFAULT_API_KEY = "acquire-fake-key"
"""The API key a :class:`FakeAcquire` accepts unless given another. Not a secret."""

DEFAULT_AGENT_ID = 25
"""The id of the key's agent (the published example joins agent 25)."""

DEFAULT_AGENT_NAME = "Emulator Agent"
"""The name of the key's agent."""

API_PREFIX = "/api/v1"
"""The path of ``base_url``, as on ``https://{account}.acquire.io/api/v1``."""

JOIN_PATH = "/crm/messenger/chat/join"
"""The join endpoint, relative to ``base_url``."""

# How long close() lets in-flight requests (a long latency, a slow drip) finish before they
# are cancelled. Tests close the fake after their clients, so only orphans are still running.
_SHUTDOWN_TIMEOUT = 0.25

_JSON = "application/json"
_MALFORMED_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
_ENCODER = msgspec.json.Encoder()
_MAX_ID = 2**63 - 1

# Error codes of statuses injected as faults. Acquire documents the first five; the 405, 404
# and 429 codes are this emulator's invention (Acquire documents no such answers).
_STATUS_CODES = {
    400: "ERROR_INVALID_INPUT",
    401: "ERROR_UNAUTHORIZED",
    403: "ERROR_UNAUTHORIZED_ACCESS",
    404: "ERROR_NOT_FOUND",
    405: "ERROR_METHOD_NOT_ALLOWED",
    429: "ERROR_TOO_MANY_REQUESTS",
}
_STATUS_MESSAGES = {
    400: "Invalid input.",
    401: "Unauthorized.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "Method not allowed.",
    429: "Too many requests.",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, as logged in :attr:`FakeAcquire.requests`.

    The ``Authorization`` header is never stored: only whether it matched (``authorized``).

    Attributes:
        seq: arrival number, from 0.
        method: the HTTP method (``"POST"``, ``"GET"``…).
        path: the request path (``"/api/v1/crm/messenger/chat/join"``).
        case_id: the body's ``caseId`` if it was an int, else ``None``.
        body: the decoded JSON body, or ``None`` (not read, empty or not JSON).
        ask_join: the body's ``askJoin`` if it was a bool, else ``None`` (absent means true).
        authorized: whether ``Authorization: Bearer <api_key>`` matched.
        status: the status answered, or ``None`` when the connection was dropped unanswered.
        fault: the fault applied: a :data:`~acquire_async.testing.FaultName`, ``"http_503"``
            (an injected status), ``"rate_limit"``, or ``None``.
        applied: whether this request joined the case (changed the store).
        latency: the seconds the emulator waited before answering.
    """

    seq: int
    method: str
    path: str
    case_id: int | None
    body: Any
    ask_join: bool | None
    authorized: bool
    status: int | None
    fault: str | None
    applied: bool
    latency: float


class _Body(NamedTuple):
    body: Any
    case_id: int | None
    ask_join: bool | None
    problem: str | None


class _Answer(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str]
    applied: bool


def _parse_body(raw: bytes) -> _Body:
    """Decode a join body; ``problem`` says why it is invalid (``ERROR_INVALID_INPUT``)."""
    if not raw.strip():
        return _Body(None, None, None, "The request body must be a JSON object.")
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return _Body(None, None, None, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _Body(body, None, None, "The request body must be a JSON object.")
    raw_id = body.get("caseId")
    case_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    raw_ask = body.get("askJoin")
    ask_join = raw_ask if isinstance(raw_ask, bool) else None
    problem = None
    if "caseId" not in body:
        problem = "caseId is required."
    elif case_id is None or not 0 < case_id <= _MAX_ID:
        problem = "caseId must be a positive integer."
    elif "askJoin" in body and ask_join is None:
        problem = "askJoin must be a boolean."
    return _Body(body, case_id, ask_join, problem)


def _envelope(code: str, message: str) -> bytes:
    return _ENCODER.encode({"error": {"code": code, "message": message, "data": None}})


def _status_error(status: int) -> tuple[str, str]:
    if status >= 500:
        return "ERROR_SERVER_ERROR", "Internal server error."
    return (
        _STATUS_CODES.get(status, f"ERROR_HTTP_{status}"),
        _STATUS_MESSAGES.get(status, "Request failed."),
    )


def _abort(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp tries to send this, finds the transport closed and lets it go quietly.
    return web.Response(status=500)


class FakeAcquire:
    """An in-process emulator of Acquire's Join Chat API, on a real ``127.0.0.1`` socket.

    It keeps a store of cases in the wire shape, joins them as Acquire does, answers with
    Acquire's envelopes and logs every request; :class:`Faults` make it misbehave on purpose.

    Args:
        cases: an int N seeds N realistic waiting cases (:func:`make_waiting_case`) with ids
            from ``first_case_id``; or an iterable of case dicts (wire shape, camelCase; a
            published ``{"data": case}`` envelope is unwrapped), deep-copied into the store.
        api_key: the only key accepted as ``Authorization: Bearer <api_key>``.
        faults: the faults to inject (default: none).
        host, port: where to listen; port 0 picks a free port (see :attr:`base_url`).
        first_case_id: the id of the first seeded case.
        agent_id, agent_name: the agent the API key belongs to: the one a join adds.
        already_joined: cases the key's agent has joined before the first request: the ids,
            or a fraction of the initial cases (chosen deterministically).
        allow_get: also serve the join on ``GET`` with a JSON body (the method of the
            original reference page). ``POST`` is always served unless refused below.
        method_not_allowed: ``"POST"`` or ``"GET"``: answer that method with 405.
        clock: returns the current time as an aware ``datetime`` (for the timestamps).

    Example::

        async with FakeAcquire(cases=3, faults=Faults(sequence=["drop_after_read"])) as fake:
            async with aiohttp.ClientSession() as http:
                await http.post(fake.join_url, json={"caseId": 1000, "askJoin": True},
                                headers={"Authorization": f"Bearer {fake.api_key}"})
            fake.requests[0].applied  # True: dropped, but joined

    Semantics (Acquire's, where documented):

    * success: ``200 {"data": <case>}``; errors: ``{"error": {"code", "message", "data": null}}``;
    * wrong or missing key: 401 ``ERROR_UNAUTHORIZED``; unknown case: 400
      ``ERROR_RECORD_NOT_FOUND`` (Acquire's status for it); bad body (not JSON, ``caseId``
      missing or not a positive int, ``askJoin`` not a bool): 400 ``ERROR_INVALID_INPUT``;
    * join of a waiting (or active, not yet joined) case: see :func:`apply_join`; again by the
      same agent: ``CHAT_ALREADY_JOINED`` *with HTTP 200*, as published;
    * closed case: 400 ``ERROR_CASE_CLOSED``: **this code is the emulator's invention**;
      Acquire does not document what joining a closed case answers;
    * ``askJoin: false`` is recorded and joins the same way (Acquire does not say what it
      does); a body without ``askJoin`` (an older revision) is a join too;
    * unknown path: 404 ``ERROR_NOT_FOUND``; a refused method: 405
      ``ERROR_METHOD_NOT_ALLOWED`` with ``Allow`` (both codes invented);
    * each answer has ``X-Request-Id: fake-<seq>`` (the emulator's, for error reports).
    """

    def __init__(
        self,
        cases: int | Iterable[Mapping[str, Any]] = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        first_case_id: int = 1000,
        agent_id: int = DEFAULT_AGENT_ID,
        agent_name: str = DEFAULT_AGENT_NAME,
        already_joined: float | Iterable[int] = 0.0,
        allow_get: bool = True,
        method_not_allowed: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or api_key != api_key.strip():
            raise ValueError("api_key must be a non-empty str without surrounding spaces")
        if method_not_allowed is not None and method_not_allowed not in ("POST", "GET"):
            raise ValueError(
                f"method_not_allowed must be 'POST', 'GET' or None: {method_not_allowed!r}"
            )
        methods = {"POST"} | ({"GET"} if allow_get else set())
        methods.discard(method_not_allowed or "")
        if not methods:
            raise ValueError("no method left to join with: allow_get=False and POST refused")
        self.api_key = api_key
        """The accepted API key (not shown by ``repr``)."""
        self.agent_id = agent_id
        """The id of the key's agent."""
        self.host = host
        """The host to listen on."""
        self.port = port
        """The port to listen on; after :meth:`start`, the port actually bound."""
        self.methods = frozenset(methods)
        """The methods the join endpoint serves."""
        self.agent: dict[str, Any] = agent_user(agent_id, agent_name)
        """The nested ``user`` object of the key's agent, as a join adds it."""
        self._key = api_key.encode("utf-8", "surrogateescape")
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._first_case_id = first_case_id
        self._injector = FaultInjector(faults or Faults())
        self._requests: list[RecordedRequest] = []
        self._cases: dict[int, dict[str, Any]] = {}
        self._next_participant_id = 1
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._started = False

        if isinstance(cases, bool):
            raise TypeError("cases must be an int or an iterable of case dicts")
        if isinstance(cases, int):
            if cases < 0:
                raise ValueError(f"cases must be >= 0 (got {cases})")
            now = self._clock()
            for case_id in range(first_case_id, first_case_id + cases):
                self.add_case(make_waiting_case(case_id, now=now))
        else:
            for case in cases:
                self.add_case(case)
        self._pre_join(already_joined)

    # ------------------------------------------------------------------ properties

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/api/v1``: pass it as the client's ``base_url``."""
        if not self._started:
            raise RuntimeError("FakeAcquire is not started: use 'async with' or await start()")
        return str(URL.build(scheme="http", host=self.host, port=self.port, path=API_PREFIX))

    @property
    def join_url(self) -> str:
        """The join endpoint: ``{base_url}/crm/messenger/chat/join``."""
        return self.base_url + JOIN_PATH

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in the order answered (``clear()`` it between phases)."""
        return self._requests

    @property
    def cases(self) -> dict[int, dict[str, Any]]:
        """The store: case id → case dict in the wire shape. Mutate it freely."""
        return self._cases

    @property
    def faults(self) -> Faults:
        """The faults in force. Setting new ones restarts the random stream and the script."""
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._injector = FaultInjector(faults)

    # ------------------------------------------------------------------ the store

    def add_case(
        self, case: Mapping[str, Any] | None = None, *, status: str | None = None
    ) -> dict[str, Any]:
        """Put a case in the store and return the stored dict.

        Without ``case``, a new waiting case (:func:`make_waiting_case`, ``status`` ``"queue"``
        or ``"pending"``) with the next free id. A given case is deep-copied; its ``id`` must
        be a positive int not in the store yet.
        """
        if case is None:
            next_id = max(self._cases, default=self._first_case_id - 1) + 1
            stored = make_waiting_case(next_id, now=self._clock(), status=status)
        else:
            if "id" not in case and isinstance(case.get("data"), Mapping):
                case = case["data"]
            stored = copy.deepcopy(dict(case))
        case_id = stored.get("id")
        if isinstance(case_id, bool) or not isinstance(case_id, int) or case_id <= 0:
            raise ValueError(f"a case needs a positive int 'id' (got {case_id!r})")
        if case_id in self._cases:
            raise ValueError(f"case {case_id} is already in the store")
        self._cases[case_id] = stored
        for entry in stored.get("users") or ():
            if isinstance(entry, dict) and isinstance(entry.get("id"), int):
                self._next_participant_id = max(self._next_participant_id, entry["id"] + 1)
        return stored

    def close_case(self, case_id: int) -> dict[str, Any]:
        """Close a stored case (a later join gets ``ERROR_CASE_CLOSED``); return it."""
        case = self._cases[case_id]
        close(case, now=self._clock())
        return case

    def mark_joined(self, case_id: int) -> dict[str, Any]:
        """Join the key's agent to a stored case now, without a request; return it.

        For the state "joined earlier" (a restarted bot, a colleague's script). A closed case
        raises ``ValueError``; an already joined one is left as it is.
        """
        case = self._cases[case_id]
        if case.get("status") == "closed":
            raise ValueError(f"case {case_id} is closed")
        if not is_joined_by(case, self.agent_id):
            self._join(case)
        return case

    def is_joined(self, case_id: int) -> bool:
        """Whether the key's agent has joined the stored case ``case_id``."""
        return is_joined_by(self._cases[case_id], self.agent_id)

    def script(self, faults: Iterable[ScriptItem]) -> None:
        """Force exact faults on the next requests, one entry each, in order.

        An entry is a fault name (``"drop_after_read"``…), an HTTP status to answer (``503``;
        ``429`` adds ``Retry-After``), or ``None`` for a normal answer. Scripted entries go
        before random faults; a rate-limited request consumes none::

            fake.script(["drop_after_read", 503, None])
        """
        self._injector.push(faults)

    def _join(self, case: dict[str, Any]) -> dict[str, Any]:
        participant_id = self._next_participant_id
        self._next_participant_id += 1
        return apply_join(case, agent=self.agent, participant_id=participant_id, now=self._clock())

    def _pre_join(self, already_joined: float | Iterable[int]) -> None:
        if isinstance(already_joined, bool):
            raise TypeError("already_joined must be a fraction or case ids, not a bool")
        if isinstance(already_joined, (int, float)):
            if not 0.0 <= already_joined <= 1.0:
                raise ValueError(
                    f"already_joined must be a fraction in [0, 1] or ids: {already_joined!r}"
                )
            open_ids = sorted(i for i, c in self._cases.items() if c.get("status") != "closed")
            count = round(already_joined * len(open_ids))
            ids: Iterable[int] = sorted(random.Random(0).sample(open_ids, count))
        else:
            ids = already_joined
        for case_id in ids:
            if case_id not in self._cases:
                raise ValueError(f"already_joined names case {case_id}, which is not in the store")
            self.mark_joined(case_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeAcquire:
        """Bind and start serving. Returns ``self``."""
        if self._runner is not None:
            raise RuntimeError("FakeAcquire is already started")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._started = True
        return self

    async def close(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeAcquire:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._started else "not started"
        return f"<FakeAcquire {where} cases={len(self._cases)} requests={len(self._requests)}>"

    # ------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seq = self._seq
        self._seq += 1
        injector = self._injector
        decision = injector.admit(asyncio.get_running_loop().time())
        latency = 0.0
        if decision is None:
            decision = injector.decide()
            latency = injector.latency()
        authorized = self._authorized(request.headers.get("Authorization"))
        headers = {"X-Request-Id": f"fake-{seq}"}

        def note(status: int | None, parsed: _Body | None, applied: bool = False) -> None:
            # Logged before the client can see anything, so a test never races its own log.
            self._requests.append(
                RecordedRequest(
                    seq=seq,
                    method=request.method,
                    path=request.path,
                    case_id=parsed.case_id if parsed else None,
                    body=parsed.body if parsed else None,
                    ask_join=parsed.ask_join if parsed else None,
                    authorized=authorized,
                    status=status,
                    fault=decision.fault,
                    applied=applied,
                    latency=latency,
                )
            )

        if latency > 0.0:
            await asyncio.sleep(latency)
        if decision.fault == "drop_before_read":
            note(None, None)
            return _abort(request)
        try:
            raw_body = await request.read()
        except (ConnectionError, aiohttp.ClientConnectionError):
            # The client went away during the latency (it timed out, or was cancelled).
            note(None, None)
            return _abort(request)
        parsed = _parse_body(raw_body)

        if decision.status is not None:  # an injected status, or the rate limiter's 429
            code, message = _status_error(decision.status)
            if decision.status == 429:
                headers["Retry-After"] = f"{self.faults.retry_after:g}"
            note(decision.status, parsed)
            return self._response(
                _Answer(decision.status, _envelope(code, message), headers, False)
            )
        if decision.fault == "error_envelope_200":
            note(200, parsed)
            body = _envelope("ERROR_SERVER_ERROR", "Something went wrong.")
            return self._response(_Answer(200, body, headers, False))

        answer = self._answer(request.method, request.path, authorized, parsed, headers)
        if decision.fault == "drop_after_read":
            note(None, parsed, answer.applied)
            return _abort(request)
        note(answer.status if decision.fault != "malformed" else 200, parsed, answer.applied)
        if decision.fault == "malformed":
            return web.Response(
                status=200, body=_MALFORMED_BODY, headers=headers, content_type="text/html"
            )
        if decision.fault == "truncate":
            return await self._truncated(request, answer)
        if decision.fault == "slow_drip":
            return await self._dripped(request, answer)
        return self._response(answer)

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, token = header.partition(" ")
        given = token.encode("utf-8", "surrogateescape")
        # compare_digest: the comparison takes as long whatever the key's first wrong byte.
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._key)

    def _answer(
        self,
        method: str,
        path: str,
        authorized: bool,
        parsed: _Body,
        headers: dict[str, str],
    ) -> _Answer:
        """The API itself. Synchronous, so each join is atomic on the event loop."""
        if path.rstrip("/") != API_PREFIX + JOIN_PATH:
            return _Answer(404, _envelope(*_status_error(404)), headers, False)
        if method not in self.methods:
            allow = {**headers, "Allow": ", ".join(sorted(self.methods))}
            return _Answer(405, _envelope(*_status_error(405)), allow, False)
        if not authorized:
            body = _envelope("ERROR_UNAUTHORIZED", "Invalid or missing API key.")
            return _Answer(401, body, headers, False)
        if parsed.problem is not None or parsed.case_id is None:
            body = _envelope("ERROR_INVALID_INPUT", parsed.problem or "Invalid input.")
            return _Answer(400, body, headers, False)
        case = self._cases.get(parsed.case_id)
        if case is None:
            body = _envelope("ERROR_RECORD_NOT_FOUND", "Record not found.")
            return _Answer(400, body, headers, False)
        if case.get("status") == "closed":
            body = _envelope("ERROR_CASE_CLOSED", "This chat is closed.")
            return _Answer(400, body, headers, False)
        if is_joined_by(case, self.agent_id):
            body = _envelope("CHAT_ALREADY_JOINED", ALREADY_JOINED_MESSAGE)
            return _Answer(200, body, headers, False)
        data = self._join(case)
        return _Answer(200, _ENCODER.encode({"data": data}), headers, True)

    @staticmethod
    def _response(answer: _Answer) -> web.Response:
        return web.Response(
            status=answer.status, body=answer.body, headers=answer.headers, content_type=_JSON
        )

    @staticmethod
    async def _truncated(request: web.Request, answer: _Answer) -> web.StreamResponse:
        """Promise more bytes than are sent, then close the connection."""
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_type = _JSON
        response.content_length = 2 * len(answer.body) + 16
        try:
            await response.prepare(request)
            await response.write(answer.body[: len(answer.body) // 2])
        except ConnectionError:
            return response
        transport = request.transport
        if transport is not None:
            transport.close()  # close, not abort: flush what was written first
        return response

    async def _dripped(self, request: web.Request, answer: _Answer) -> web.StreamResponse:
        """Send the whole answer, ``drip_bytes`` at a time, ``drip_interval`` apart."""
        faults = self.faults
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_type = _JSON
        response.content_length = len(answer.body)
        try:
            await response.prepare(request)
            for start in range(0, len(answer.body), faults.drip_bytes):
                if start:
                    await asyncio.sleep(faults.drip_interval)
                await response.write(answer.body[start : start + faults.drip_bytes])
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up
        return response
