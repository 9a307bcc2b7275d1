"""`FakeAcquire`: Acquire's chat endpoints, served by `aiohttp.web` on a real socket.

One request travels like this (`FakeAcquire._handle`):

```text
arrival ── rate limit? ─────────────────────────────▶ 429 + Retry-After   (no draw)
   │ decide the fault (script, else one draw), draw the latency
   ▼
sleep(latency)
   │ drop_before_read ──────────────────────────────▶ abort, body unread
   ▼
read the body
   │ http_NNN / error_envelope_200 ─────────────────▶ error envelope, no state change
   ▼
the API: route → method → auth → body → the route's handler   (synchronous: atomic)
   │ drop_after_read ───────────────────────────────▶ abort (the change happened)
   │ truncate / malformed / slow_drip ──────────────▶ the answer, damaged or slow
   ▼
the answer
```

The routes and their handlers are in `_routes.py`, the store they share in `_store.py`;
the outbound webhooks (the emulator as Acquire's sender) in `_webhooks.py`, their bodies in
`_events.py`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from ._cases import make_waiting_case
from ._events import CASE_INVITE, CASE_STATUS, case_status_data, invite_data
from ._faults import FaultInjector, Faults, ScriptItem
from ._routes import (
    API_PREFIX,
    JOIN_PATH,
    Body,
    Route,
    envelope,
    parse_body,
    route_table,
    status_error,
)
from ._store import CaseStore
from ._webhooks import Delivery, Webhook, WebhookDispatcher, WebhookFaults
from ._wire import Answer, abort, dripped, malformed, respond, truncated

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
"""The API key a `FakeAcquire` accepts unless given another. Not a secret."""

DEFAULT_AGENT_ID = 25
"""The id of the key's agent (the published example joins agent 25)."""

DEFAULT_AGENT_NAME = "Emulator Agent"
"""The name of the key's agent."""

_DEFAULT_EVENTS = (CASE_STATUS, CASE_INVITE)

# How long close() lets in-flight requests (a long latency, a slow drip) finish before they
# are cancelled. Tests close the fake after their clients, so only orphans are still running.
_SHUTDOWN_TIMEOUT = 0.25


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, as logged in `FakeAcquire.requests`.

    The `Authorization` header is never stored: only whether it matched (`authorized`).

    Attributes:
        seq: arrival number, from 0.
        method: the HTTP method (`"POST"`, `"GET"`…).
        path: the request path (`"/api/v1/crm/messenger/chat/join"`).
        case_id: the body's `caseId` if it was an int, else `None`.
        body: the decoded JSON body, or `None` (not read, empty or not JSON).
        ask_join: the body's `askJoin` if it was a bool, else `None` (absent means true).
        authorized: whether `Authorization: Bearer <api_key>` matched.
        status: the status answered, or `None` when the connection was dropped unanswered.
        fault: the fault applied: a `FaultName`, `"http_503"`
            (an injected status), `"rate_limit"`, or `None`.
        applied: whether this request changed the store (joined, rejected or closed the
            case, or stored a message).
        latency: the seconds the emulator waited before answering.
        operation: the operation whose path the request named (`"join_chat"`,
            `"reject_chat"`, `"close_chat"`, `"add_message"`), even when its method was
            refused; `None` for an unknown path.
        received: when it arrived, on the event loop's clock (`loop.time()`, monotonic
            seconds): what a test of a rate limit counts per window.
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
    operation: str | None = None
    received: float = 0.0


def _below_prefix(path: str) -> str | None:
    """`/api/v1/crm/messenger/chat/join/` → `/crm/messenger/chat/join`; `None` if the
    path is not below the API prefix."""
    path = path.rstrip("/")
    if not path.startswith(API_PREFIX + "/"):
        return None
    return path[len(API_PREFIX) :]


def _case_id(case_id: object) -> int:
    if isinstance(case_id, bool) or not isinstance(case_id, int):
        raise TypeError(f"case_id must be an int, not {type(case_id).__name__}")
    return case_id


def _known(cases: Mapping[int, Any], case_id: int) -> int:
    if case_id not in cases:
        raise ValueError(f"case_id {case_id} is not in the store")
    return case_id


class FakeAcquire:
    """An in-process emulator of Acquire's chat API, on a real `127.0.0.1` socket.

    It serves the join, reject, close and add-message endpoints on one store of cases, as
    Acquire does where it publishes how, answers with Acquire's envelopes and logs every
    request; `Faults` make it misbehave on purpose, on every route.

    Args:
        cases: an int N seeds N realistic waiting cases (`make_waiting_case`) with ids
            from `first_case_id`; or an iterable of case dicts (wire shape, camelCase; a
            published `{"data": case}` envelope is unwrapped), deep-copied into the store.
        api_key: the only key accepted as `Authorization: Bearer <api_key>`.
        faults: the faults to inject (default: none).
        host: where to listen; port 0 picks a free port (see `base_url`).
        port: See `host`.
        first_case_id: the id of the first seeded case.
        agent_id: the agent the API key belongs to: the one a join adds.
        agent_name: See `agent_id`.
        already_joined: cases the key's agent has joined before the first request: the ids,
            or a fraction of the initial cases (chosen deterministically).
        allow_get: also serve the join on `GET` with a JSON body (the method of the
            original reference page). `POST` is always served unless refused below.
        method_not_allowed: `"POST"` or `"GET"`: answer that method of the join with 405.
            The other routes take `POST` only.
        clock: returns the current time as an aware `datetime` (for the timestamps).

    Example:
        ```python
        async with FakeAcquire(cases=3, faults=Faults(sequence=["drop_after_read"])) as fake:
            async with aiohttp.ClientSession() as http:
                await http.post(fake.join_url, json={"caseId": 1000, "askJoin": True},
                                headers={"Authorization": f"Bearer {fake.api_key}"})
            fake.requests[0].applied  # True: dropped, but joined
        ```

    Semantics (Acquire's, where documented; the rest is marked **invented**):

    * success: `200 {"data": ...}`; errors: `{"error": {"code", "message", "data": null}}`;
    * wrong or missing key: 401 `ERROR_UNAUTHORIZED`; unknown case: 400
      `ERROR_RECORD_NOT_FOUND` (Acquire's status for it); bad body (not JSON, `caseId`
      missing or not a positive int, a route's own field of the wrong type): 400
      `ERROR_INVALID_INPUT`;
    * join (POST, and GET unless refused) of a waiting (or active, not yet joined) case: see
      `apply_join`; again by the same agent: `CHAT_ALREADY_JOINED` *with HTTP 200*, as
      published;
    * reject: the agent's entry turns `"rejected"`; the answer is the case (published
      shape); an agent with no entry gets a rejected one (**invented**);
    * close: the case turns `"closed"` (`dateClosed`, `closedBy`, `closingState`); the
      answer is `{"0": {"foreverClosed", "leftUser", "caseId", "contactId"}, "userId",
      "userType"}` as published; `leaveOnly: true` only takes the agent out (**invented**);
      closing a closed case again answers the same way and changes nothing (**invented**);
    * add-message: the message is stored (`messages`) and becomes the case's
      `lastMessage`; the answer is the message with its `case` and `sender`;
    * join, reject or add-message on a closed case: 400 `ERROR_CASE_CLOSED`: **this code is
      the emulator's invention**; Acquire does not document what those answer;
    * `askJoin: false` is recorded and joins the same way (Acquire does not say what it
      does); a body without `askJoin` (an older revision) is a join too;
    * unknown path: 404 `ERROR_NOT_FOUND`; a refused method: 405
      `ERROR_METHOD_NOT_ALLOWED` with `Allow` (both codes invented);
    * each answer has `X-Request-Id: fake-<seq>` (the emulator's, for error reports).

    Webhooks (`add_webhook`), the emulator playing Acquire's sender:

    * a delivery is a `POST` of compact JSON (`JSON.stringify`'s bytes) `{"event",
      "data"}` with `Content-Type: application/json` and, when the webhook has a secret,
      `x-acquire-signature`: lowercase hex HMAC-SHA256 over exactly those bytes, as the
      docs' Node reference computes it. The method and content type are **assumed** (v2 does
      not say; v1 and the create API's `format` say JSON over POST);
    * `case:status` on every change of a stored case's status made through the emulator (a
      join that makes it `active`, a close, `close_case`, `mark_joined`), in the
      published shape: ids as strings, `Date.toString()` dates, `fields: {}`, the contact
      (its name; the other published fields are empty strings: **invented**), and the
      transcript in `messages` (the case's last message when stored, then every message
      added through add-message). The join and close event messages Acquire writes into a
      transcript are not added (the emulator's simplification);
    * `case:status` for a case `add_case` stores, with its status: **assumed**
      (whether Acquire sends one for a new case, and with which status, is not published;
      the events page's "Case new" has no published wire name). Cases given to the
      constructor are stored before any webhook exists, so they deliver nothing;
    * a change made by editing `cases` directly delivers nothing; `deliver_status`
      sends the case as it is;
    * `user:case-invite` only from `invite`, shaped `{"caseId", "userId"}` with
      string ids: **assumed** (no delivery of it was published);
    * a non-200 answer, a dropped connection or a timeout is retried `retries` times (5 by
      default: v1's documented "5 more times"; v2 documents no policy: **assumed**),
      `retry_delay` apart (**invented**), then given up; the attempt timeout (10 s) and the
      concurrency (8 in flight per webhook) are **invented**;
    * duplicates and reordering happen only as `WebhookFaults` say.
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
        """The accepted API key (not shown by `repr`)."""
        self.agent_id = agent_id
        """The id of the key's agent."""
        self.host = host
        """The host to listen on."""
        self.port = port
        """The port to listen on; after `start`, the port actually bound."""
        self.methods = frozenset(methods)
        """The methods the join endpoint serves."""
        self._store = CaseStore(
            agent_id=agent_id,
            agent_name=agent_name,
            clock=clock or (lambda: datetime.now(timezone.utc)),
            first_case_id=first_case_id,
        )
        self.agent: dict[str, Any] = self._store.agent
        """The nested `user` object of the key's agent, as a join adds it."""
        self._key = api_key.encode("utf-8", "surrogateescape")
        self._routes = route_table(self.methods)
        self._operations = {path: route.operation for (_, path), route in self._routes.items()}
        self._injector = FaultInjector(faults or Faults())
        self._requests: list[RecordedRequest] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._started = False
        self._webhooks = WebhookDispatcher()
        self._store.on_status = self._on_status

        if isinstance(cases, bool):
            raise TypeError("cases must be an int or an iterable of case dicts")
        if isinstance(cases, int):
            if cases < 0:
                raise ValueError(f"cases must be >= 0 (got {cases})")
            now = self._store.clock()
            for case_id in range(first_case_id, first_case_id + cases):
                self.add_case(make_waiting_case(case_id, now=now))
        else:
            for case in cases:
                self.add_case(case)
        self._store.pre_join(already_joined)

    # ------------------------------------------------------------------ properties

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT/api/v1`: pass it as the client's `base_url`."""
        if not self._started:
            raise RuntimeError("FakeAcquire is not started: use 'async with' or await start()")
        return str(URL.build(scheme="http", host=self.host, port=self.port, path=API_PREFIX))

    @property
    def join_url(self) -> str:
        """The join endpoint: `{base_url}/crm/messenger/chat/join`."""
        return self.base_url + JOIN_PATH

    @property
    def routes(self) -> dict[tuple[str, str], str]:
        """The routes served: `(method, path below base_url)` → operation name, e.g.
        `("POST", "/crm/messenger/chat/add-message")` → `"add_message"`. A copy."""
        return {key: route.operation for key, route in self._routes.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in the order answered (`clear()` it between phases)."""
        return self._requests

    @property
    def cases(self) -> dict[int, dict[str, Any]]:
        """The store: case id → case dict in the wire shape. Mutate it freely."""
        return self._store.cases

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

        Without `case`, a new waiting case (`make_waiting_case`, `status` `"queue"`
        or `"pending"`) with the next free id. A given case is deep-copied; its `id` must
        be a positive int not in the store yet.
        """
        return self._store.add_case(case, status=status)

    def close_case(self, case_id: int) -> dict[str, Any]:
        """Close a stored case, as someone else would (`closedBy: null`); return it.

        A later join, reject or message gets `ERROR_CASE_CLOSED` (an invented code).
        """
        return self._store.close_case(case_id)

    def mark_joined(self, case_id: int) -> dict[str, Any]:
        """Join the key's agent to a stored case now, without a request; return it.

        For the state "joined earlier" (a restarted bot, a colleague's script). A closed case
        raises `ValueError`; an already joined one is left as it is.
        """
        return self._store.mark_joined(case_id)

    def is_joined(self, case_id: int) -> bool:
        """Whether the key's agent has joined the stored case `case_id`."""
        return self._store.is_joined(case_id)

    def messages(self, case_id: int) -> list[dict[str, Any]]:
        """The messages the stored case `case_id` received through add-message, oldest
        first, in the `lastMessage` shape; `KeyError` if there is no such case:

        ```python
        assert len(fake.messages(1000)) == 1  # greeted once, even after a dropped answer
        ```
        """
        return self._store.messages(case_id)

    def script(self, faults: Iterable[ScriptItem]) -> None:
        """Force exact faults on the next requests, one entry each, in order.

        An entry is a fault name (`"drop_after_read"`…), an HTTP status to answer (`503`;
        `429` adds `Retry-After`), or `None` for a normal answer. Scripted entries go
        before random faults; a rate-limited request consumes none:

        ```python
        fake.script(["drop_after_read", 503, None])
        ```
        """
        self._injector.push(faults)

    # ------------------------------------------------------------------ webhooks

    def add_webhook(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = _DEFAULT_EVENTS,
        faults: WebhookFaults | None = None,
        concurrency: int = 8,
        timeout: float = 10.0,
    ) -> Webhook:
        """Register a webhook: from now on, `events` are POSTed to `url`, signed with
        `secret` (`None`: unsigned), misbehaving as `faults` say.

        Several may be registered; each gets every event it names. Deliveries run in the
        background (at most `concurrency` at once per webhook, each attempt within
        `timeout` seconds); `deliveries` logs them and `webhooks_idle` waits for
        them. Events of a change made before `start` wait for it:

        ```python
        hook = fake.add_webhook(f"http://127.0.0.1:{port}/hooks", secret="s3cret")
        fake.add_case(status="pending")   # case:status, status "pending"
        await fake.webhooks_idle()
        ```
        """
        return self._webhooks.add(
            url,
            secret=secret,
            events=events,
            faults=faults,
            concurrency=concurrency,
            timeout=timeout,
        )

    def remove_webhook(self, hook: Webhook) -> None:
        """Stop delivering new events to `hook` (`ValueError` if it is not registered);
        its deliveries in flight finish."""
        self._webhooks.remove(hook)

    @property
    def webhooks(self) -> list[Webhook]:
        """The registered webhooks, in order (a copy)."""
        return list(self._webhooks.hooks)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt, in the order answered (`clear()` it between phases)."""
        return self._webhooks.deliveries

    def invite(self, case_id: int, *, user_id: int | None = None) -> int:
        """Deliver `user:case-invite` for a stored case: the key's agent (or `user_id`)
        was invited to it. Returns how many deliveries were queued.

        The body `{"event": "user:case-invite", "data": {"caseId": "<id>", "userId":
        "<agent id>"}}` is **assumed**: Acquire publishes no delivery of this event. The store
        does not change. A case not in the store is a `ValueError` (`deliver` sends
        any body):

        ```python
        fake.invite(1000)   # the bot hears of case 1000 and joins it
        ```
        """
        case_id = _known(self._store.cases, _case_id(case_id))
        if user_id is None:
            user_id = self.agent_id
        elif isinstance(user_id, bool) or not isinstance(user_id, int):
            raise TypeError(f"user_id must be an int, not {type(user_id).__name__}")
        data = invite_data(case_id, user_id)
        return self._webhooks.emit(CASE_INVITE, lambda: data, case_id=case_id)

    def deliver_status(self, case_id: int) -> int:
        """Deliver `case:status` for a stored case as it is now (after editing
        `cases` by hand, say); returns how many deliveries were queued:

        ```python
        fake.cases[1000]["status"] = "pending"
        fake.deliver_status(1000)
        ```
        """
        case_id = _case_id(case_id)
        return self._on_status(self._store.cases[_known(self._store.cases, case_id)])

    def deliver(self, event: str, data: Mapping[str, Any], *, case_id: int | None = None) -> int:
        """Deliver any event, `{"event": event, "data": data}`, to the webhooks subscribed to
        it (an event Acquire may send that the emulator never does, say); `case_id` is only
        for `deliveries`. Returns how many deliveries were queued:

        ```python
        fake.add_webhook(url, events=["user:case-joined"])
        fake.deliver("user:case-joined", {"caseId": "1000", "userId": "25"})
        ```
        """
        if not isinstance(event, str) or not event:
            raise TypeError("event must be a non-empty str")
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, not {type(data).__name__}")
        if case_id is not None:
            case_id = _case_id(case_id)
        snapshot = dict(data)
        return self._webhooks.emit(event, lambda: snapshot, case_id=case_id)

    async def webhooks_idle(self, timeout: float = 10.0) -> None:
        """Wait until every delivery so far was answered 200 or given up.

        Raises `TimeoutError` after `timeout` seconds, and `RuntimeError` if deliveries
        are waiting for `start`:

        ```python
        fake.close_case(1000)
        await fake.webhooks_idle(timeout=5)
        assert fake.deliveries[-1].delivered
        ```
        """
        await self._webhooks.wait_idle(timeout)

    def _on_status(self, case: dict[str, Any]) -> int:
        store = self._store
        case_id = case.get("id")
        int_id = case_id if isinstance(case_id, int) and not isinstance(case_id, bool) else None

        def data() -> dict[str, Any]:
            transcript = store.transcript(int_id) if int_id in store.cases else []
            return case_status_data(case, transcript)

        return self._webhooks.emit(CASE_STATUS, data, case_id=int_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeAcquire:
        """Bind and start serving. Returns `self`."""
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
        await self._webhooks.start()
        return self

    async def close(self) -> None:
        """Stop serving and close every connection; cancel the webhook deliveries still
        pending. Idempotent."""
        runner, self._runner = self._runner, None
        try:
            await self._webhooks.aclose()
        finally:
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
        hooks = f" webhooks={len(self._webhooks.hooks)}" if self._webhooks.hooks else ""
        return (
            f"<FakeAcquire {where} cases={len(self.cases)} requests={len(self._requests)}{hooks}>"
        )

    # ------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seq = self._seq
        self._seq += 1
        injector = self._injector
        received = asyncio.get_running_loop().time()
        decision = injector.admit(received)
        latency = 0.0
        if decision is None:
            decision = injector.decide()
            latency = injector.latency()
        authorized = self._authorized(request.headers.get("Authorization"))
        headers = {"X-Request-Id": f"fake-{seq}"}
        path = _below_prefix(request.path)
        operation = self._operations.get(path) if path is not None else None

        def note(status: int | None, parsed: Body | None, applied: bool = False) -> None:
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
                    operation=operation,
                    received=received,
                )
            )

        if latency > 0.0:
            await asyncio.sleep(latency)
        if decision.fault == "drop_before_read":
            note(None, None)
            return abort(request)
        try:
            raw_body = await request.read()
        except (ConnectionError, aiohttp.ClientConnectionError):
            # The client went away during the latency (it timed out, or was cancelled).
            note(None, None)
            return abort(request)
        parsed = parse_body(raw_body)

        if decision.status is not None:  # an injected status, or the rate limiter's 429
            code, message = status_error(decision.status)
            if decision.status == 429:
                headers["Retry-After"] = f"{self.faults.retry_after:g}"
            note(decision.status, parsed)
            return respond(Answer(decision.status, envelope(code, message), headers, False))
        if decision.fault == "error_envelope_200":
            note(200, parsed)
            body = envelope("ERROR_SERVER_ERROR", "Something went wrong.")
            return respond(Answer(200, body, headers, False))

        answer = self._answer(request.method, path, authorized, parsed, headers)
        if decision.fault == "drop_after_read":
            note(None, parsed, answer.applied)
            return abort(request)
        note(answer.status if decision.fault != "malformed" else 200, parsed, answer.applied)
        if decision.fault == "malformed":
            return malformed(headers)
        if decision.fault == "truncate":
            return await truncated(request, answer)
        if decision.fault == "slow_drip":
            return await dripped(request, answer, self.faults.drip_bytes, self.faults.drip_interval)
        return respond(answer)

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
        path: str | None,
        authorized: bool,
        parsed: Body,
        headers: dict[str, str],
    ) -> Answer:
        """The API itself: route → method → key → body → the route's handler (synchronous, so
        each request's change is atomic on the event loop)."""
        route: Route | None = self._routes.get((method, path)) if path is not None else None
        if route is None:
            allowed = sorted(m for m, p in self._routes if p == path)
            if not allowed:
                return Answer(404, envelope(*status_error(404)), headers, False)
            allow = {**headers, "Allow": ", ".join(allowed)}
            return Answer(405, envelope(*status_error(405)), allow, False)
        if not authorized:
            body = envelope("ERROR_UNAUTHORIZED", "Invalid or missing API key.")
            return Answer(401, body, headers, False)
        if parsed.problem is not None:
            return Answer(400, envelope("ERROR_INVALID_INPUT", parsed.problem), headers, False)
        reply = route.handler(self._store, parsed)
        return Answer(reply.status, reply.body, headers, reply.applied)
