"""`Bot`: Acquire's webhooks in, joins and greetings out (ack first, work afterwards).

One delivery travels like this:

```text
POST ── not POST ──────────────────────────────────────────▶ 405 (Allow: POST)
 │ ── closing ─────────────────────────────────────────────▶ 503 + Retry-After
 │ ── Content-Length > max_body ───────────────────────────▶ 413 (body unread)
 │ ── max_receiving bodies already being read ─────────────▶ 503 + Retry-After (unread)
 ▼ read at most max_body + 1 bytes ── more ────────────────▶ 413
 │    within read_timeout ── not ──────────────────────────▶ 408 (connection closed)
 │    sender gone mid-body ────────────────────────────────▶ 400 (nobody hears it)
construct_event: size 413 → content type 415 → signature 401 → parse 400
 ▼
submit(event): seen within dedupe_window ──────────────────▶ 200 (duplicate, not rerun)
 │             client closed, backlog or backlog_bytes full ▶ 503 + Retry-After (not kept)
 ▼ queued                                                      200 (accepted)
a worker (one of ``concurrency``): the auto-join policy (``_policy.py``: the join tried
again on a passing failure, one case at a time), then the handlers
```

Nothing after the 200 can change the answer, so a slow join or a failing handler never makes
Acquire retry. A join that fails for good makes the bot forget the delivery, so Acquire's next
delivery of it runs again. Everything the bot does is also one JSON-able dict to
`on_record`.

Memory is bounded on both sides of the 200: at most `max_receiving` bodies of up to
`max_body + 1` bytes are being read at once, and the events accepted and not yet handled
hold at most `backlog` events and `backlog_bytes` bytes of body (the parsed events cost a
few times their bytes). Headers and idle connections are not bounded here: aiohttp has no
header timeout, so a proxy with header and idle timeouts and connection limits belongs in
front (docs/bots.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from acquire_async._checks import check_count, check_delay, check_hook, check_optional_text
from acquire_async._client import AcquireClient
from acquire_async._secrets import Secret
from acquire_async.errors import WebhookError
from acquire_async.webhooks import DEFAULT_MAX_BODY, SIGNATURE_HEADER, construct_event

from ._dedupe import DEFAULT_DEDUPE_SIZE, Deduper, delivery_key
from ._policy import DEFAULT_AUTO_JOIN, JoinRule, Policy, parse_policy, short
from ._router import H, Handler, Router

if TYPE_CHECKING:
    from acquire_async.webhooks import WebhookEvent

__all__ = [
    "DEFAULT_AUTO_JOIN",
    "DEFAULT_BACKLOG_BYTES",
    "RETRY_AFTER",
    "Bot",
    "BotStats",
    "JoinRule",
    "SubmitResult",
]

log = logging.getLogger("acquire_async.bot")

RETRY_AFTER = 5
"""Seconds in the `Retry-After` of a 503 (backlog full, too many bodies being received, or
shutting down). Whether Acquire honours it is not documented."""

DEFAULT_BACKLOG_BYTES = 64 * 1_048_576
"""Bytes of body the accepted, unfinished events may hold at most (64 MiB)."""

SubmitResult = Literal["accepted", "duplicate", "busy"]

_MESSAGE_LIMIT = 300
# After the shutdown grace, how long cancelled work may take to unwind before it is abandoned.
_CANCEL_GRACE = 5.0


def _check_secret(secret: object) -> Secret[bytes] | None:
    if secret is None:
        return None
    if not isinstance(secret, (str, bytes)):
        raise TypeError(f"secret must be a str, bytes or None, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty (pass None to turn verification off)")
    return Secret(secret.encode() if isinstance(secret, str) else secret)


def _check_event(event: object) -> None:
    if not (
        isinstance(getattr(event, "event", None), str)
        and isinstance(getattr(event, "fingerprint", None), str)
        and isinstance(getattr(event, "size", None), int)
    ):
        raise TypeError(
            f"event must be a webhook event (from construct_event), not {type(event).__name__}"
        )


@dataclass
class BotStats:
    """What a `Bot` has done so far (`bot.stats`). Read them; the bot writes them.

    - `deliveries`: requests that reached the receiver (any answer);
      `accepted`/`duplicates`/`busy`/`rejected`: how they were answered (200 new,
      200 seen before, 503, 4xx). `Bot.submit` counts in the same fields.
    - `handled`: accepted events whose work has finished (policy and handlers).
    - `joined`/`already_joined`/`greeted`: the auto-join policy's successes;
      `join_failed`/`greet_failed`: events whose join or greeting failed for good (after
      `retry_for` seconds of the bot's own tries, or at once when not transient; a join
      that gave up on a passing failure has its delivery forgotten, so a redelivery runs
      again); `retried`: tries made again after a passing failure; `skipped`: matching
      events without a case id.
    - `handler_errors`: handler calls that raised.
    - `dropped`: accepted events given up at shutdown (queued or cut short).
    - `dedupe_evicted`: remembered deliveries forgotten early because the table was full.

    Example:
        ```python
        print(bot.stats.as_dict())
        ```
    """

    deliveries: int = 0
    accepted: int = 0
    duplicates: int = 0
    busy: int = 0
    rejected: int = 0
    handled: int = 0
    joined: int = 0
    already_joined: int = 0
    greeted: int = 0
    join_failed: int = 0
    greet_failed: int = 0
    retried: int = 0
    skipped: int = 0
    handler_errors: int = 0
    dropped: int = 0
    dedupe_evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (JSON-able)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


class Bot:
    """Receive Acquire's signed webhooks; join (and greet) the chats they announce.

    Args:
        client: the `AcquireClient` joins and handlers use. The bot
            never closes it: the caller owns it (close it after the bot).
        secret: the webhook's HMAC key (`str` or `bytes`). `None` turns signature
            checking off, explicitly: anyone who can reach the URL can then make the bot join.
        auto_join: the policy: `"event"` or `"event=status"` entries; an event that matches
            one has its `case_id` joined. `()` turns it off. Default
            `DEFAULT_AUTO_JOIN`.
        greeting: sent with `add_message` after a join that joined now (never after
            `AlreadyJoinedError`, so never twice).
        retry_for: how long, in seconds from its first try, the bot keeps trying a join that
            fails for a passing reason (a connection error or timeout,
            408/429/500/502/503/504), the client's own retries inside each try; a greeting
            only when the server provably did not act (nothing sent, 408/429/503). 600; 0
            turns the bot's own retries off.
        backoff: the wait before a try made again: `backoff` seconds (0.5)
            doubling up to `backoff_cap` (30.0), half of it jitter; a server's
            `Retry-After` lengthens it (up to the cap). The worker waits: backpressure.
        backoff_cap: See `backoff`.
        concurrency: worker tasks that run the work (16).
        backlog: accepted events waiting for a worker (1000); beyond it the receiver answers
            503 with `Retry-After` and keeps nothing.
        backlog_bytes: the bytes of body those events (and the running ones) may hold
            (`DEFAULT_BACKLOG_BYTES`, 64 MiB; at least `max_body`); beyond it, 503.
        max_receiving: bodies being read at once (64); beyond it, 503 with `Retry-After`
            before reading.
        read_timeout: seconds a body may take to arrive (10.0); then 408 and the connection
            is closed.
        dedupe_window: seconds a delivery is remembered; a redelivery within it (same event,
            case id and body) is answered 200 and not run again. 0 turns de-duplication off.
        dedupe_size: at most this many deliveries are remembered (100,000: about 20 MiB).
        max_body: the largest body accepted, in bytes (1 MiB); more is a 413, unread.
        on_record: called with one JSON-able dict per thing done (`kind`: `received`,
            `duplicate`, `busy`, `rejected`, `joined`, `already_joined`,
            `greeted`, `retrying`, `skipped`, `handled`, `failed`, `dropped`). It
            runs inline: keep it fast. Records never hold the secret, the API key or the
            event's data.
        router: a `Router` with handlers registered elsewhere (the bot's own
            `on` adds to it).

    Order of work for one event: the policy first (join, then greet), then every handler
    that matches, in registration order, each awaited in turn. A handler runs whatever the
    join did, and its exception is logged (event kind and case id) and recorded; the next
    handler still runs.

    Example:
        ```python
        async with AcquireClient() as client:
            bot = Bot(client, os.environ["ACQUIRE_WEBHOOK_SECRET"], greeting="Hello!")

            @bot.on("case:status", status="closed")
            async def closed(event, client):
                print("closed:", event.case_id)

            runner = web.AppRunner(bot.app(path="/acquire"))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 8080).start()
            ...  # until asked to stop
            await runner.cleanup()  # drains the bot; the client closes after it
        ```
    """

    def __init__(
        self,
        client: AcquireClient,
        secret: str | bytes | None,
        *,
        auto_join: Iterable[str] = DEFAULT_AUTO_JOIN,
        greeting: str | None = None,
        retry_for: float = 600.0,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        concurrency: int = 16,
        backlog: int = 1000,
        backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
        max_receiving: int = 64,
        read_timeout: float = 10.0,
        dedupe_window: float = 600.0,
        dedupe_size: int = DEFAULT_DEDUPE_SIZE,
        max_body: int = DEFAULT_MAX_BODY,
        on_record: Callable[[dict[str, Any]], object] | None = None,
        router: Router | None = None,
    ) -> None:
        if not isinstance(client, AcquireClient):
            raise TypeError(f"client must be an AcquireClient, not {type(client).__name__}")
        self._secret = _check_secret(secret)
        del secret  # a traceback's locals must not hold it
        rules = parse_policy(auto_join)
        greeting = check_optional_text("greeting", greeting)
        retry_for = check_delay("retry_for", retry_for)
        backoff = check_delay("backoff", backoff)
        backoff_cap = check_delay("backoff_cap", backoff_cap)
        self._concurrency = check_count("concurrency", concurrency)
        self._backlog = check_count("backlog", backlog)
        self._backlog_bytes = check_count("backlog_bytes", backlog_bytes)
        self._max_receiving = check_count("max_receiving", max_receiving)
        self._read_timeout = check_delay("read_timeout", read_timeout)
        self._seen = Deduper(dedupe_window, dedupe_size)
        self._max_body = check_count("max_body", max_body)
        if self._backlog_bytes < self._max_body:
            # Else a body of max_body could never be accepted, and Acquire would resend forever.
            raise ValueError(
                f"backlog_bytes must be >= max_body ({self._backlog_bytes} < {self._max_body})"
            )
        check_hook("on_record", on_record)
        if router is not None and not isinstance(router, Router):
            raise TypeError(f"router must be a Router, not {type(router).__name__}")
        self._client = client
        self._on_record = on_record
        self._router = router if router is not None else Router()
        self.stats = BotStats()
        self._policy = Policy(
            rules,
            greeting,
            stats=self.stats,
            record=self._record,
            retry_for=retry_for,
            backoff=backoff,
            backoff_cap=backoff_cap,
        )
        self._queue: asyncio.Queue[WebhookEvent] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._current: dict[int, WebhookEvent] = {}  # worker number -> the event it runs
        self._held_bytes = 0  # body bytes of the events accepted and not yet handled
        self._receiving = 0  # bodies being read right now
        self._accepting = True
        self._closed = False
        self._closer: asyncio.Future[None] | None = None
        if self._secret is None:
            log.warning("bot: signature verification is OFF (secret=None)")

    # ------------------------------------------------------------------ properties

    @property
    def client(self) -> AcquireClient:
        """The client the bot joins and greets with (and hands to handlers)."""
        return self._client

    @property
    def router(self) -> Router:
        """The `Router` of the bot's handlers."""
        return self._router

    @property
    def auto_join(self) -> tuple[str, ...]:
        """The policy, as `"event"`/`"event=status"` strings."""
        return tuple(str(rule) for rule in self._policy.rules)

    @property
    def accepting(self) -> bool:
        """`False` once shutdown began: deliveries are then answered 503."""
        return self._accepting

    @property
    def queued(self) -> int:
        """Accepted events waiting for a worker."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> int:
        """Events a worker is on right now."""
        return len(self._current)

    @property
    def queued_bytes(self) -> int:
        """Bytes of body the accepted, unfinished events hold (at most `backlog_bytes`)."""
        return self._held_bytes

    @property
    def receiving(self) -> int:
        """Bodies being read right now (at most `max_receiving`)."""
        return self._receiving

    def __repr__(self) -> str:
        state = "closed" if self._closed else "accepting" if self._accepting else "closing"
        return (
            f"<Bot {state} auto_join={self.auto_join!r} queued={self.queued} "
            f"running={self.running}>"
        )

    # ------------------------------------------------------------------ handlers

    def on(self, event: str | None = None, **filters: Any) -> Callable[[H], H]:
        """Register `async def handler(event, client)` for `event` (`None`: every event).

        `filters` compare attributes of the event (`status="pending"`). Handlers run
        after the auto-join policy, in registration order.

        Example:
            ```python
            @bot.on("case:status", status="closed")
            async def closed(event, client):
                ...
            ```
        """
        return self._router.register(event, **filters)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Bot:
        """Start the workers (the first delivery does it too). Returns `self`.

        Example:
            ```python
            await bot.start()
            ...
            await bot.aclose()
            ```
        """
        self._ensure_started()
        return self

    def _ensure_started(self) -> asyncio.Queue[WebhookEvent]:
        if self._closed:
            raise RuntimeError("this Bot is closed; create a new one")
        if self._queue is None:
            asyncio.get_running_loop()  # RuntimeError outside a loop, before any state changes
            queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(self._backlog)
            self._queue = queue
            self._workers = [self._spawn(number) for number in range(self._concurrency)]
        return self._queue

    def _spawn(self, number: int) -> asyncio.Task[None]:
        worker = asyncio.ensure_future(self._work(number))
        worker.add_done_callback(self._respawn)
        return worker

    def _respawn(self, worker: asyncio.Task[None]) -> None:
        # A handler that raised CancelledError on its own ended its worker (the error passes
        # through, as it must); a new worker takes its place so the pool keeps its size.
        if self._closed or worker not in self._workers:
            return
        number = self._workers.index(worker)
        log.warning("bot: a worker was cancelled by its work; starting another")
        self._workers[number] = self._spawn(number)

    async def __aenter__(self) -> Bot:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stop_accepting(self) -> None:
        """Answer every further delivery 503 (`submit` says `"busy"`); work goes on.

        `aclose` does this first; call it alone to drain before a restart.
        """
        self._accepting = False

    async def aclose(self, timeout: float = 30.0) -> None:
        """Stop accepting, let the work in hand finish for up to `timeout` seconds, then
        cancel what is left: each event given up is logged, recorded (`dropped`) and counted
        in `stats.dropped`. Cancelled work gets 5 more seconds to unwind; a worker that
        ignores its cancellation longer is abandoned (logged). A join waiting to be tried
        again is work in hand too. The client is not closed. Safe to call twice: a second
        call waits for the first shutdown, and its `timeout` is ignored.

        Example:
            ```python
            await bot.aclose(timeout=10.0)
            ```
        """
        timeout = check_delay("timeout", timeout)
        self._accepting = False
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._shutdown(timeout))
        # shield: a cancelled caller leaves the shutdown running to its end.
        await asyncio.shield(self._closer)

    async def _shutdown(self, timeout: float) -> None:
        queue, workers = self._queue, self._workers
        if queue is None:
            self._closed = True
            return
        if queue.qsize() or self._current:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(queue.join(), timeout)
        self._closed = True
        dropped: list[tuple[str, WebhookEvent]] = [("running", e) for e in self._current.values()]
        while not queue.empty():
            event = queue.get_nowait()
            dropped.append(("queued", event))
            self._held_bytes -= event.size
            queue.task_done()
        for worker in workers:
            worker.cancel()
        _, stuck = await asyncio.wait(workers, timeout=_CANCEL_GRACE)
        if stuck:
            log.error("bot: %d worker(s) ignored cancellation; abandoned", len(stuck))
        for stage, event in dropped:
            self.stats.dropped += 1
            self._record("dropped", event, stage=stage)
        if dropped:
            log.warning(
                "bot: shutdown dropped %d event(s) after %.1f s (%d running, %d queued)",
                len(dropped),
                timeout,
                sum(1 for stage, _ in dropped if stage == "running"),
                sum(1 for stage, _ in dropped if stage == "queued"),
            )

    # ------------------------------------------------------------------ receiving

    def app(self, path: str = "/", *, drain_timeout: float = 30.0) -> web.Application:
        """An `aiohttp.web` application serving the receiver at `path`. Its startup starts
        the bot; its shutdown stops accepting; its cleanup closes the bot
        (`aclose` with `drain_timeout`: the seconds the work in hand may take).

        aiohttp's `AppRunner(shutdown_timeout=...)` (60 s by default) is the other wait at
        shutdown: for requests still being received. A body takes at most `read_timeout`,
        so a `shutdown_timeout` a little above it is enough.

        Example:
            ```python
            runner = web.AppRunner(bot.app(path="/acquire", drain_timeout=10.0))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 8080).start()
            ```
        """
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/' (got {path!r})")
        drain_timeout = check_delay("drain_timeout", drain_timeout)
        app = web.Application(client_max_size=self._max_body + 1)
        app.router.add_route("*", path, self.handle)

        async def startup(app: web.Application) -> None:
            await self.start()

        async def shutdown(app: web.Application) -> None:
            self.stop_accepting()

        async def cleanup(app: web.Application) -> None:
            await self.aclose(drain_timeout)

        app.on_startup.append(startup)
        app.on_shutdown.append(shutdown)
        app.on_cleanup.append(cleanup)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The receiver: an `aiohttp.web` handler to mount in an existing app.

        200 accepted (or a duplicate); 401/400/413/415 from the delivery's
        `WebhookError`; 405 for a method other than POST; 503
        with `Retry-After` when the backlog is full (in events or bytes), `max_receiving`
        bodies are already being read, the client is closed or the bot is shutting down; 408
        (connection closed) when the body takes longer than `read_timeout`; 400 when the
        sender goes away mid-body. The body is never read past `max_body + 1` bytes.

        Example:
            ```python
            app.router.add_post("/acquire", bot.handle)
            ```
        """
        self.stats.deliveries += 1
        if request.method != "POST":
            response = self._rejected(405, "MethodNotAllowed", "use POST")
            response.headers["Allow"] = "POST"
            return response
        if not self._accepting:
            self.stats.busy += 1
            self._record("busy", None, reason="closing")
            return _unavailable("shutting down")
        length = request.content_length
        if length is not None and length > self._max_body:
            return await _close_after(
                request, self._rejected(413, "PayloadTooLargeError", "body too large")
            )
        if self._receiving >= self._max_receiving:
            # Each body being read may hold max_body bytes: their number is the memory bound.
            self.stats.busy += 1
            self._record("busy", None, reason="receiving")
            return await _close_after(request, _unavailable("busy"))
        self._receiving += 1
        try:
            body = await asyncio.wait_for(self._read(request), self._read_timeout)
        except asyncio.TimeoutError:
            response = self._rejected(408, "ReadTimeout", "body not received in time")
            return await _close_after(request, response)
        except (ConnectionError, HttpProcessingError) as exc:
            # The sender went away or broke the framing mid-body: nobody hears this answer.
            return self._rejected(400, type(exc).__name__, "body not received")
        finally:
            self._receiving -= 1
        if body is None:
            return await _close_after(
                request, self._rejected(413, "PayloadTooLargeError", "body too large")
            )
        try:
            event = construct_event(
                body,
                request.headers.get(SIGNATURE_HEADER),
                self._secret,
                content_type=request.headers.get("Content-Type"),
                max_body=self._max_body,
            )
        except WebhookError as exc:
            return self._rejected(exc.http_status, type(exc).__name__, exc.message)
        result = self._submit(event)
        if result == "busy":
            return _unavailable("busy")
        return web.Response(status=200, text=result)

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or `None` as soon as it passes `max_body` (chunked bodies too)."""
        limit = self._max_body
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)

    def _rejected(self, status: int, error: str, message: str) -> web.Response:
        self.stats.rejected += 1
        self._record("rejected", None, http_status=status, error=error, message=short(message))
        response = web.Response(status=status, text=short(message, _MESSAGE_LIMIT))
        if status == 400:
            response.force_close()  # the framing may be broken: no kept-alive connection
        return response

    def submit(self, event: WebhookEvent) -> SubmitResult:
        """Hand a verified event to the bot without waiting: `"accepted"` (queued; answer
        200), `"duplicate"` (seen within `dedupe_window`; answer 200) or `"busy"`
        (backlog full, client closed or shutting down; answer 503, nothing was kept). The
        first call starts the workers. For receivers on other frameworks (FastAPI,
        Starlette); call it on the event loop's thread (from an `async def` endpoint), as
        every method of the bot.

        Example:
            ```python
            event = construct_event(body, signature, secret, content_type=content_type)
            if bot.submit(event) == "busy":
                return Response(status_code=503, headers={"Retry-After": "5"})
            ```
        """
        _check_event(event)
        self.stats.deliveries += 1
        return self._submit(event)

    def _submit(self, event: WebhookEvent) -> SubmitResult:
        if not self._accepting:
            self.stats.busy += 1
            self._record("busy", event, reason="closing")
            return "busy"
        if self._client.closed:
            # Every join and handler call would fail: let Acquire keep the event for later.
            self.stats.busy += 1
            self._record("busy", event, reason="client closed")
            return "busy"
        queue = self._ensure_started()
        key = delivery_key(event.event, event.case_id, event.fingerprint)
        if key in self._seen:
            self.stats.duplicates += 1
            self._record("duplicate", event)
            return "duplicate"
        if queue.full() or self._held_bytes + event.size > self._backlog_bytes:
            self.stats.busy += 1
            self._record("busy", event, reason="backlog full")
            return "busy"
        self._seen.add(key)
        self.stats.dedupe_evicted = self._seen.evicted
        queue.put_nowait(event)
        self._held_bytes += event.size
        self.stats.accepted += 1
        self._record("received", event)
        return "accepted"

    # ------------------------------------------------------------------ working

    async def _work(self, number: int) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            event = await queue.get()
            self._current[number] = event
            try:
                await self._process(event)
                self.stats.handled += 1
            except _PASS_THROUGH:
                raise
            except BaseException:  # _process isolates each step: this is a bug, not a handler
                log.exception(
                    "bot: internal error on event %r, case %s", short(event.event), event.case_id
                )
            finally:
                self._current.pop(number, None)
                self._held_bytes -= event.size
                queue.task_done()

    async def _process(self, event: WebhookEvent) -> None:
        if self._policy.matches(event) and not await self._policy.run(self._client, event):
            # The join gave up on a passing failure: forget the delivery, so that a later one
            # runs again (a permanent failure stays remembered: it would only fail again).
            self._seen.discard(delivery_key(event.event, event.case_id, event.fingerprint))
        handlers = self._router.fetch(event)
        if not handlers:
            return
        errors = 0
        for handler in handlers:
            errors += not await self._run_handler(handler, event)
        self._record("handled", event, handlers=len(handlers), errors=errors)

    async def _run_handler(self, handler: Handler, event: WebhookEvent) -> bool:
        try:
            await handler(event, self._client)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # any other BaseException is the handler's failure too
            self.stats.handler_errors += 1
            name = getattr(handler, "__qualname__", type(handler).__name__)
            log.error(
                "bot: handler %s failed on event %r, case %s: %s",
                name,
                short(event.event),
                event.case_id,
                type(exc).__name__,
                exc_info=exc,
            )
            self._record(
                "failed",
                event,
                action="handler",
                handler=name,
                error=type(exc).__name__,
                message=short(str(exc), _MESSAGE_LIMIT),
            )
            return False
        return True

    def _record(self, kind: str, event: WebhookEvent | None, **details: Any) -> None:
        hook = self._on_record
        if hook is None:
            return
        record: dict[str, Any] = {"ts": round(time.time(), 3), "kind": kind}
        if event is not None:
            record["event"] = short(event.event)
            record["case_id"] = event.case_id
            if event.status is not None:
                record["status"] = short(event.status)
        record.update(details)
        try:
            hook(record)
        except Exception as exc:  # the CLI's printer must not break a delivery
            log.warning("bot: on_record raised %s; record dropped", type(exc).__name__)


# Cancellation passes through, as it must (the worker is replaced); so do the requests to stop
# the process. Every other exception of a handler is its failure, isolated.
_PASS_THROUGH = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


async def _close_after(request: web.Request, response: web.Response) -> web.Response:
    """Send `response` now and close the connection without reading the rest of the body
    (aiohttp would otherwise linger up to 10 s reading and dropping it)."""
    with contextlib.suppress(ConnectionError):  # the sender may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()
    return response


def _unavailable(reason: str) -> web.Response:
    return web.Response(status=503, headers={"Retry-After": str(RETRY_AFTER)}, text=reason)
