"""The emulator's outbound webhooks: registered URLs, signed deliveries, retries and faults.

Here the emulator plays Acquire, the *sender*: it POSTs events to a bot's receiver from an
`aiohttp.ClientSession` of its own. The SDK's transport rules (one session per client, the
client's retry policy) are the SDK's; they do not apply to this code, which imitates a server.

One event travels like this (`WebhookDispatcher.emit`):

```text
a status change, an invite ── compact JSON bytes, built once ──▶ for each subscribed hook:
    copies: 1, or 2 on a ``duplicate`` draw; each copy is one background task
    held back ``reorder_delay`` s on a ``reorder`` draw (later deliveries overtake it)
    attempt 1..1+retries: POST (at most ``concurrency`` in flight per hook)
        200 ─▶ done;  other status / connection error / timeout ─▶ sleep retry_delay, again
    the last attempt fails ─▶ given up
```

Every attempt is recorded as a `Delivery`, after it is answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from acquire_async._checks import check_count, check_delay
from acquire_async._secrets import Secret
from acquire_async.webhooks import SIGNATURE_HEADER, sign

from ._events import encode_event
from ._faults import _probability

__all__ = ["Delivery", "Webhook", "WebhookDispatcher", "WebhookFaults"]

# Invented: Acquire documents no User-Agent; this one says who is calling.
_USER_AGENT = "acquire-async-emulator"
# The answer's body is never needed; read at most this much so a hostile receiver can't make
# the emulator buffer without bound.
_MAX_ANSWER = 65_536


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low} (got {value})")
    return value


@dataclass(frozen=True)
class WebhookFaults:
    """How the emulator's deliveries misbehave, as an at-least-once sender may. Seeded.

    Attributes:
        duplicate: probability that a delivery is sent twice (two copies, the same bytes and
            signature, each with its own retries).
        reorder: probability that a delivery is held back `reorder_delay` seconds, so the
            deliveries queued after it overtake it.
        retries: how many more times a delivery is sent after a non-200 answer, a dropped
            connection or a timeout. 5 is v1's documented "5 more times"; Acquire documents
            no retry policy for v2 deliveries (**assumed**).
        retry_delay: seconds between two attempts (**invented**: no interval is published).
        reorder_delay: how long a held-back delivery waits (the emulator's).
        seed: seed of the random stream (`None`: from the OS). Each webhook draws from its
            own stream, in the order events are emitted, so a seed reproduces a run.

    Example:
        ```python
        fake.add_webhook(url, secret="s3cret", faults=WebhookFaults(duplicate=0.1, seed=7))
        WebhookFaults(retries=0)  # one attempt, given up on the first failure
        ```
    """

    duplicate: float = 0.0
    reorder: float = 0.0
    retries: int = 5
    retry_delay: float = 0.05
    seed: int | None = None
    reorder_delay: float = 0.05

    def __post_init__(self) -> None:
        _probability("duplicate", self.duplicate)
        _probability("reorder", self.reorder)
        _count("retries", self.retries, 0)
        check_delay("retry_delay", self.retry_delay)
        check_delay("reorder_delay", self.reorder_delay)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed must be an int or None, not {type(self.seed).__name__}")


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver an event, as logged in `FakeAcquire.deliveries`.

    Attributes:
        seq: the delivery (one copy of one event to one webhook), from 0; its attempts share it.
        event: the event's wire name (`"case:status"`).
        case_id: the case it is about.
        attempt: 1 for the first try, 2 for the first retry…
        status: the status the receiver answered, or `None` (no answer: see `error`).
        error: why there was no answer: `"timeout"` or the aiohttp error's class name
            (`"ServerDisconnectedError"`…); `None` when answered.
        url: the webhook's URL.
        duplicate: this copy is the extra one a `duplicate` draw added.
        held: this copy was held back by a `reorder` draw.
        given_up: this failed attempt was the last one.
        sent: when the attempt started, on the event loop's clock (`loop.time()`).
        body: the exact bytes sent (and signed).
        signature: the `x-acquire-signature` sent, or `None` (no secret).

    Example:
        ```python
        await fake.webhooks_idle()
        assert [d.status for d in fake.deliveries] == [500, 200]  # retried once
        ```
    """

    seq: int
    event: str
    case_id: int | None
    attempt: int
    status: int | None
    error: str | None
    url: str
    duplicate: bool = False
    held: bool = False
    given_up: bool = False
    sent: float = 0.0
    body: bytes = field(default=b"", repr=False)
    signature: str | None = field(default=None, repr=False)

    @property
    def delivered(self) -> bool:
        """Whether this attempt was answered 200 (the delivery is done)."""
        return self.status == 200


class Webhook:
    """A webhook registered with `FakeAcquire.add_webhook`: URL, events, faults, secret.

    The secret is held in a `Secret` and never shown: `repr` says only `signed` or
    `unsigned`.

    Example:
        ```python
        hook = fake.add_webhook(f"http://127.0.0.1:{port}/", secret="s3cret")
        hook.events  # ('case:status', 'user:case-invite')
        ```
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        events: tuple[str, ...],
        faults: WebhookFaults,
        concurrency: int,
        timeout: float,
    ) -> None:
        self.url = url
        """Where the events are POSTed."""
        self.events = events
        """The wire names of the events it receives."""
        self.faults = faults
        """Its `WebhookFaults`."""
        self.concurrency = concurrency
        """At most this many of its deliveries are in flight at once."""
        self.timeout = timeout
        """Seconds an attempt may take before it counts as failed."""
        self._secret = Secret(secret.encode()) if secret is not None else None
        self._rng = random.Random(faults.seed)
        self._slots: asyncio.Semaphore | None = None

    @property
    def signed(self) -> bool:
        """Whether deliveries carry `x-acquire-signature` (a secret was given)."""
        return self._secret is not None

    def signature(self, body: bytes) -> str | None:
        """The `x-acquire-signature` of `body` for this webhook, or `None` if unsigned."""
        # The SDK's own sign(): the receiver's verify_signature is its inverse by construction.
        return sign(body, self._secret) if self._secret is not None else None

    def __repr__(self) -> str:
        signed = "signed" if self.signed else "unsigned"
        return f"<Webhook {self.url} events={list(self.events)} {signed}>"


@dataclass
class _Job:
    hook: Webhook
    seq: int
    event: str
    case_id: int | None
    body: bytes
    duplicate: bool
    held: bool


def check_url(url: object) -> str:
    """`url` if it is an absolute http(s) URL with a host, else `TypeError`/`ValueError`."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("url must be an absolute http:// or https:// URL with a host")
    return url


def check_events(events: object) -> tuple[str, ...]:
    """`events` as a tuple of non-empty names, else `TypeError`/`ValueError`."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise TypeError("events must be an iterable of event names, not a single string")
    names = tuple(events)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"events must hold str names, not {type(name).__name__}")
        if not name:
            raise ValueError("events must not hold an empty name")
    if not names:
        raise ValueError("events must name at least one event")
    return tuple(dict.fromkeys(names))


class WebhookDispatcher:
    """The deliveries of one `FakeAcquire`: its webhooks, their tasks and their log.

    Events emitted before `start` wait and go out when it runs; after `aclose`
    they are dropped. Not thread-safe: it lives on the emulator's event loop.
    """

    def __init__(self) -> None:
        self.hooks: list[Webhook] = []
        self.deliveries: list[Delivery] = []
        self._seq = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._waiting: list[_Job] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    # ------------------------------------------------------------------ registration

    def add(
        self,
        url: str,
        *,
        secret: str | None,
        events: Iterable[str],
        faults: WebhookFaults | None,
        concurrency: int,
        timeout: float,
    ) -> Webhook:
        """Register a webhook; see `FakeAcquire.add_webhook`."""
        url = check_url(url)
        if secret is not None and not isinstance(secret, str):
            raise TypeError(f"secret must be a str or None, not {type(secret).__name__}")
        if secret is not None and not secret:
            raise ValueError("secret must not be empty (None sends deliveries unsigned)")
        names = check_events(events)
        if faults is not None and not isinstance(faults, WebhookFaults):
            raise TypeError(f"faults must be a WebhookFaults, not {type(faults).__name__}")
        concurrency = check_count("concurrency", concurrency)
        timeout = check_delay("timeout", timeout)
        if timeout == 0:
            raise ValueError("timeout must be > 0")
        hook = Webhook(
            url,
            secret=secret,
            events=names,
            faults=faults or WebhookFaults(),
            concurrency=concurrency,
            timeout=timeout,
        )
        self.hooks.append(hook)
        return hook

    def remove(self, hook: Webhook) -> None:
        """Stop delivering new events to `hook` (those in flight finish)."""
        try:
            self.hooks.remove(hook)
        except ValueError:
            raise ValueError(f"{hook!r} is not registered") from None

    def subscribed(self, event: str) -> list[Webhook]:
        """The webhooks that receive `event`."""
        return [hook for hook in self.hooks if event in hook.events]

    # ------------------------------------------------------------------ sending

    def emit(
        self, event: str, data: Callable[[], Mapping[str, Any]], *, case_id: int | None
    ) -> int:
        """Queue `event` to every webhook subscribed; return how many deliveries it made.

        `data` is called once, now (so the body is the state at the change), and only if a
        webhook is subscribed.
        """
        hooks = self.subscribed(event)
        if not hooks or self._closed:
            return 0
        body = encode_event(event, data())
        made = 0
        for hook in hooks:
            faults = hook.faults
            # Always two draws per event (then one per copy), whatever the rates, so a seed
            # gives the same run when only a rate changes.
            copies = 2 if hook._rng.random() < faults.duplicate else 1
            for copy in range(copies):
                held = hook._rng.random() < faults.reorder
                job = _Job(hook, next(self._seq), event, case_id, body, copy > 0, held)
                self._queue(job)
                made += 1
        return made

    def _queue(self, job: _Job) -> None:
        self._pending += 1
        self._idle.clear()
        if self._session is None:
            self._waiting.append(job)
        else:
            self._spawn(job)

    def _spawn(self, job: _Job) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(job), name=f"acquire-fake-webhook-{job.seq}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: _Job) -> None:
        hook, faults = job.hook, job.hook.faults
        try:
            if job.held:
                await asyncio.sleep(faults.reorder_delay)
            last = faults.retries + 1
            for attempt in range(1, last + 1):
                if attempt > 1:
                    await asyncio.sleep(faults.retry_delay)
                if hook._slots is None:
                    hook._slots = asyncio.Semaphore(hook.concurrency)
                async with hook._slots:
                    sent = asyncio.get_running_loop().time()
                    status, error = await self._post(job)
                self.deliveries.append(
                    Delivery(
                        seq=job.seq,
                        event=job.event,
                        case_id=job.case_id,
                        attempt=attempt,
                        status=status,
                        error=error,
                        url=hook.url,
                        duplicate=job.duplicate,
                        held=job.held,
                        given_up=status != 200 and attempt == last,
                        sent=sent,
                        body=job.body,
                        signature=hook.signature(job.body),
                    )
                )
                # v1's rule, the only published one: anything but 200 is a failure.
                if status == 200:
                    return
        finally:
            self._pending -= 1
            if self._pending <= 0:
                self._pending = 0
                self._idle.set()

    async def _post(self, job: _Job) -> tuple[int | None, str | None]:
        assert self._session is not None
        hook = job.hook
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        signature = hook.signature(job.body)
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        try:
            async with self._session.post(
                hook.url,
                data=job.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hook.timeout),
                allow_redirects=False,
            ) as answer:
                await answer.content.read(_MAX_ANSWER)
                return answer.status, None
        except asyncio.TimeoutError:
            return None, "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            return None, type(exc).__name__

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the session and send what was emitted before."""
        if self._session is not None:
            return
        self._closed = False
        self._session = aiohttp.ClientSession()
        waiting, self._waiting = self._waiting, []
        for job in waiting:
            self._spawn(job)

    async def wait_idle(self, timeout: float) -> None:
        """Return once every delivery was answered 200 or given up; `TimeoutError` after
        `timeout` seconds."""
        timeout = check_delay("timeout", timeout)
        if self._pending and self._session is None and not self._closed:
            raise RuntimeError("FakeAcquire is not started: its deliveries are waiting")
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._pending} webhook deliveries still pending after {timeout:g} s"
            ) from None

    async def aclose(self) -> None:
        """Cancel every pending delivery and close the session. Idempotent."""
        self._closed = True
        self._waiting.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pending = 0
        self._idle.set()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
