"""The auto-join policy: which events make the bot join, and the join and greeting themselves.

A join that fails for a passing reason (`acquire_async._retry.is_transient`: a
connection error or timeout, 408/429/500/502/503/504, a garbled answer, the throttle's Redis
unreachable) is tried again by the bot itself for up to `retry_for` seconds from its first
try, after a jittered exponential backoff (`backoff` seconds doubling up to
`backoff_cap`; a server's `Retry-After` lengthens it, never shortens it). The client's own
retries happen inside each try; the bot's exist because the 200 is already out, so Acquire
will not deliver again, and because the client's retry budget runs dry in a storm. A bound in
time, not in tries: with a count, an event is lost with the probability p^tries in a storm
(2% at p = 0.45 and 5 tries), and every accepted event of a short outage is lost once the
workers have spent their tries. The worker waits through the backoff: that is the
backpressure (the backlog fills, the receiver answers 503, Acquire keeps the rest).

A greeting must never be posted twice, so it is tried again only when the server provably
did not act on it (`acquire_async._retry.did_not_act`: nothing sent, or 408/429/503).

The join and greeting of one case run one at a time (a per-case lock, dropped when free): an
invite and a `pending` status for the same case do not race; the second waits, then sees
`AlreadyJoinedError` and greets nobody. A waiter that gets the lock after the holder gave up
on a passing failure tries once, without a retry cycle of its own: N events for a case whose
join keeps failing must not hold the workers N times `retry_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from acquire_async._retry import did_not_act, is_transient
from acquire_async.errors import AlreadyJoinedError, APIError

if TYPE_CHECKING:
    from acquire_async._client import AcquireClient
    from acquire_async.webhooks import WebhookEvent

    from ._bot import BotStats

__all__ = ["DEFAULT_AUTO_JOIN", "JoinRule", "Policy", "parse_policy"]

log = logging.getLogger("acquire_async.bot")

DEFAULT_AUTO_JOIN = ("user:case-invite",)
"""The policy of `Bot(...)` unless given another: join the case of an invite (shape
ASSUMED). Joining every pending case as well (`"case:status=pending"`) makes the bot take
every waiting chat of the account: a choice to make on purpose, not a default.
`auto_join=()` turns it off."""

_NAME_LIMIT = 120
T = TypeVar("T")


def short(text: str, limit: int = _NAME_LIMIT) -> str:
    """`text` cut to `limit` characters (event names and messages come from outside)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class JoinRule:
    """One entry of the auto-join policy: `"event"` or `"event=status"`.

    Example:
        ```python
        JoinRule.parse("case:status=pending")  # JoinRule(event='case:status', status='pending')
        ```
    """

    event: str
    status: str | None = None

    @classmethod
    def parse(cls, text: object) -> JoinRule:
        """The rule written as `text`; `TypeError`/`ValueError` naming `auto_join`."""
        if not isinstance(text, str):
            raise TypeError(f"auto_join entries must be str, not {type(text).__name__}")
        event, sep, status = text.partition("=")
        if not event or any(char.isspace() for char in text) or not text.isprintable():
            raise ValueError(
                f"auto_join entries must be 'event' or 'event=status' without spaces (got {text!r})"
            )
        if sep and (not status or "=" in status):
            raise ValueError(f"auto_join entry {text!r} has an empty or second '=' status")
        return cls(event, status if sep else None)

    def matches(self, event: WebhookEvent) -> bool:
        """Whether `event` triggers this rule (exact, case-sensitive names)."""
        return event.event == self.event and (self.status is None or event.status == self.status)

    def __str__(self) -> str:
        return self.event if self.status is None else f"{self.event}={self.status}"


def parse_policy(auto_join: object) -> tuple[JoinRule, ...]:
    """The rules of `auto_join` (duplicates dropped); `TypeError`/`ValueError` naming it."""
    if isinstance(auto_join, (str, bytes)) or not isinstance(auto_join, Iterable):
        raise TypeError(
            "auto_join must be a tuple or list of 'event' or 'event=status' strings, "
            f"not {type(auto_join).__name__}"
        )
    rules: list[JoinRule] = []
    for text in auto_join:
        rule = JoinRule.parse(text)
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)


class Recorder(Protocol):
    """How the policy reports: the bot's `_record`."""

    def __call__(self, kind: str, event: WebhookEvent | None, **details: Any) -> None: ...


@dataclass
class _Slot:
    lock: asyncio.Lock
    users: int = 0
    gave_up: bool = False  # the last holder's join gave up on a passing failure


class Policy:
    """Runs the auto-join policy for one event at a time per case (see the module docstring).

    Example:
        ```python
        policy = Policy(parse_policy(["user:case-invite"]), "Hello!", stats=stats, record=rec)
        if policy.matches(event) and not await policy.run(client, event):
            ...  # the join gave up on a passing failure: forget the delivery
        ```
    """

    def __init__(
        self,
        rules: tuple[JoinRule, ...],
        greeting: str | None,
        *,
        stats: BotStats,
        record: Recorder,
        retry_for: float = 600.0,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.rules = rules
        self._greeting = greeting
        self._stats = stats
        self._record = record
        self._retry_for = retry_for
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._random = random.Random()
        self._cases: dict[int, _Slot] = {}

    @property
    def locked_cases(self) -> int:
        """Cases whose join or greeting is running or waiting right now."""
        return len(self._cases)

    def matches(self, event: WebhookEvent) -> bool:
        """Whether `event` triggers a join."""
        return any(rule.matches(event) for rule in self.rules)

    async def run(self, client: AcquireClient, event: WebhookEvent) -> bool:
        """Join the event's case (then greet). `False` only when the join gave up on a
        passing failure: the caller then forgets the delivery, so that a redelivery runs again
        (a permanent failure would fail the same way: its redeliveries stay duplicates)."""
        case_id = event.case_id
        if case_id is None:
            self._stats.skipped += 1
            self._record("skipped", event, reason="no case id")
            return True
        async with self._hold(case_id) as slot:
            # After a holder that gave up, one try: the case's failure is not news.
            retry_for = 0.0 if slot.gave_up else self._retry_for
            done, gave_up = await self._join_and_greet(client, event, case_id, retry_for)
            slot.gave_up = gave_up
            return done

    @contextlib.asynccontextmanager
    async def _hold(self, case_id: int) -> AsyncIterator[_Slot]:
        slot = self._cases.get(case_id)
        if slot is None:
            slot = self._cases[case_id] = _Slot(asyncio.Lock())
        slot.users += 1
        try:
            async with slot.lock:
                yield slot
        finally:
            slot.users -= 1
            if not slot.users:
                del self._cases[case_id]

    async def _join_and_greet(
        self, client: AcquireClient, event: WebhookEvent, case_id: int, retry_for: float
    ) -> tuple[bool, bool]:
        """`(done, gave_up)`: `done` is False only when the join gave up on a passing
        failure (`gave_up` then True)."""

        async def join() -> int | None:
            try:
                await client.join_chat(case_id)
            except AlreadyJoinedError as exc:
                return exc.attempts
            return None

        ok, already, passing = await self._try("join", event, join, is_transient, retry_for)
        if not ok:
            self._stats.join_failed += 1
            return not passing, passing
        if already is not None:
            # Already in the chat: a success, but not a join that happened now, so no greeting
            # (with attempts > 1 it may be our own lost answer: never twice beats always once).
            self._stats.already_joined += 1
            self._record("already_joined", event, attempts=already)
            return True, False
        self._stats.joined += 1
        self._record("joined", event)
        greeting = self._greeting
        if greeting is None:
            return True, False

        async def greet() -> None:
            await client.add_message(case_id, greeting)

        ok, _, _ = await self._try("greet", event, greet, did_not_act, self._retry_for)
        if ok:
            self._stats.greeted += 1
            self._record("greeted", event)
        else:
            self._stats.greet_failed += 1
        return True, False

    async def _try(
        self,
        action: str,
        event: WebhookEvent,
        call: Callable[[], Awaitable[T]],
        again: Callable[[BaseException], bool],
        retry_for: float,
    ) -> tuple[bool, T | None, bool]:
        """`(True, result, False)`, or once failed for good (recorded) `(False, None,
        passing)`: `passing` when the last failure was one `again` would have retried
        (the time ran out), not a permanent one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        tries = 0
        while True:
            tries += 1
            try:
                return True, await call(), False
            except Exception as exc:
                passing = again(exc)
                delay = self._delay(tries, exc) if passing else 0.0
                if not passing or loop.time() + delay > deadline:
                    self._failed(action, event, exc, tries)
                    return False, None, passing
                self._stats.retried += 1
                self._record(
                    "retrying",
                    event,
                    action=action,
                    tries=tries,
                    delay=round(delay, 3),
                    **_details(exc),
                )
            await asyncio.sleep(delay)

    def _delay(self, tries: int, exc: BaseException) -> float:
        # Half fixed, half jitter: spread a storm's retries without ever retrying at once.
        ceiling = min(self._backoff_cap, self._backoff * 2.0 ** min(tries - 1, 62))
        delay = ceiling / 2 + self._random.uniform(0, ceiling / 2)
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and math.isfinite(retry_after):
            # A lower bound, never a replacement: "Retry-After: 0" (or a date in the past)
            # from a proxy must not turn the backoff into a tight loop.
            delay = max(delay, float(retry_after))
        return min(delay, self._backoff_cap)

    def _failed(self, action: str, event: WebhookEvent, exc: Exception, tries: int) -> None:
        details = _details(exc)
        log.warning(
            "bot: %s failed on event %r, case %s after %d tr%s: %s",
            action,
            short(event.event),
            event.case_id,
            tries,
            "y" if tries == 1 else "ies",
            details["message"],
        )
        self._record("failed", event, action=action, final=True, tries=tries, **details)


def _details(exc: BaseException) -> dict[str, Any]:
    details: dict[str, Any] = {"error": type(exc).__name__, "message": short(str(exc))}
    if isinstance(exc, APIError):
        # APIError's text never holds the API key (errors.py): safe to log and record.
        details["request_sent"] = exc.request_sent
        details["attempts"] = exc.attempts
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            details["http_status"] = status
    return details
