"""The `join_many` engine: a lazy feed, at most `concurrency` joins, one outcome per item.

The consumer's own `async for` drives everything: each step starts joins (one task each)
for the next ids while fewer than `concurrency` are in flight or waiting to be read, then
hands over the next finished outcome. So ids are read only as fast as joins finish and the
consumer keeps up, memory is O(concurrency) whatever the input length, and at most
`concurrency` tasks exist at any time. (A pool of long-lived worker tasks measured ~3 µs a
join slower over real sockets, and needs a lock to share an async source.)

Closing the stream (leaving `async with`, `aclose()`, cancelling the consumer) cancels the
joins in flight and waits for them, so every connection they held is back in the pool when it
returns. A join that raises something other than an `AcquireError` (a hook's exception, a
bug) stops the stream at once: no new join starts, the others in flight are cancelled there
and then, and the first such exception is raised with any later ones in `__acquire_later__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import UserString, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, Final, Protocol

import msgspec

from ._checks import validate_case_id
from .errors import AcquireError, AlreadyJoinedError, APIConnectionError, InvalidCaseIdError
from .models import Case

__all__ = ["JoinOutcome", "JoinStream"]


# A frozen msgspec Struct rather than a frozen dataclass: one is built per join, and a
# Struct is built about 9x faster (frozen dataclasses set each field through
# object.__setattr__).
class JoinOutcome(msgspec.Struct, frozen=True):
    """What became of one `join_many` item.

    - `case_id`: the item exactly as it was given (even an invalid one).
    - `case`: the joined `Case` (`None` on failure, and when already joined, since
      Acquire then sends no case).
    - `error`: the `AcquireError` that ended the join, or `None`.
    - `ok`: joined, or already joined. `already_joined`: `CHAT_ALREADY_JOINED` came back,
      on the first attempt or after an ambiguous failure was retried.
    - `attempts`: HTTP attempts made (0 for an invalid item); `elapsed`: seconds.

    Example:
        ```python
        async for outcome in client.join_many(ids):
            if outcome.ok:
                done.append(outcome.case_id)
            else:
                log.warning("case %s: %s", outcome.case_id, outcome.error)
        ```
    """

    case_id: Any
    case: Case | None
    error: AcquireError | None
    already_joined: bool
    attempts: int
    elapsed: float

    @property
    def ok(self) -> bool:
        """`True` when the agent is in the chat (joined now or already)."""
        return self.error is None

    @classmethod
    def invalid(cls, item: Any, reason: str) -> JoinOutcome:
        """The outcome of an item that is not a valid case id."""
        return cls(item, None, InvalidCaseIdError(reason, attempts=0), False, 0, 0.0)


_END: Final = object()
# Text and bytes are iterables, but never a list of ids: a bytearray or memoryview iterates as
# small ints (bytearray(b"\xe8\x03") would join cases 232 and 3), a str or UserString as
# characters. Refused whole, like a str.
_TEXT: Final = (str, bytes, bytearray, memoryview, UserString)


class _Joined(Protocol):
    # What the client's join returns: the bulk engine reads only these two fields.
    @property
    def data(self) -> Case: ...
    @property
    def attempts(self) -> int: ...


Join = Callable[[int, bool, "float | None"], Coroutine[Any, Any, _Joined]]


class JoinStream:
    """The async iterator `join_many` returns; also an async context manager.

    Iterate it for outcomes in completion order. Leave it with `async with` (or call
    `aclose`) to stop early: joins still in flight are cancelled and awaited before the
    block ends. Without `async with`, breaking out of `async for` leaves that cleanup to
    the garbage collector, some time later.

    An exception that is not an `AcquireError` (from a hook, say) ends the stream: the
    joins in flight are cancelled at once and the `async for` raises the first one; any
    that came after it are in its `__acquire_later__` tuple:

    ```python
    try:
        async with client.join_many(ids) as outcomes:
            async for outcome in outcomes:
                record(outcome)
    except Exception as exc:
        for other in getattr(exc, "__acquire_later__", ()):
            log.error("also: %r", other)
        raise
    ```
    """

    __slots__ = ("_agen",)

    def __init__(
        self,
        join: Join,
        source: Iterable[Any] | AsyncIterable[Any],
        concurrency: int,
        ask_join: bool,
        timeout: float | None,
    ) -> None:
        if not isinstance(source, (Iterable, AsyncIterable)) or isinstance(source, _TEXT):
            raise TypeError(f"case_ids must be an iterable of ints, not {type(source).__name__}")
        self._agen = _run(join, source, concurrency, ask_join, timeout)

    def __aiter__(self) -> AsyncIterator[JoinOutcome]:
        # The generator itself: ``async for`` then skips this wrapper's __anext__ hop.
        return self._agen

    async def __anext__(self) -> JoinOutcome:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel the joins in flight and wait until they have let go of everything."""
        await self._agen.aclose()

    async def __aenter__(self) -> JoinStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Feed:
    """The caller's items, one at a time, until the source is exhausted or fails."""

    __slots__ = ("_async", "_done", "_sync", "error")

    def __init__(self, source: Iterable[Any] | AsyncIterable[Any]) -> None:
        self.error: Exception | None = None  # the source's own exception, re-raised at the end
        self._done = False
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        if isinstance(source, AsyncIterable):
            self._async = source.__aiter__()
        else:
            self._sync = iter(source)

    @property
    def done(self) -> bool:
        """`True` once the source is exhausted or has failed."""
        return self._done

    @property
    def sync(self) -> bool:
        """`True` for a plain iterable: `take` needs no `await`."""
        return self._sync is not None

    async def next(self) -> Any:
        """The next item of an async source, or `_END`."""
        if self._done or self._async is None:
            return _END
        try:
            return await self._async.__anext__()
        except StopAsyncIteration:
            self._done = True
        except Exception as exc:  # the caller's iterator failed: finish the rest, then raise it
            self.fail(exc)
        return _END

    def take(self) -> Any:
        """The next item of a plain iterable, or `_END`."""
        if self._done or self._sync is None:
            return _END
        try:
            return next(self._sync)
        except StopIteration:
            self._done = True
        except Exception as exc:
            self.fail(exc)
        return _END

    def fail(self, exc: Exception) -> None:
        """Stop reading: the source failed with `exc` (re-raised at the end)."""
        self._done = True
        self.error = exc


def _cancelled() -> AcquireError:
    return APIConnectionError(
        "the join was cancelled from outside join_many; it may or may not have happened",
        request_sent=True,
        attempts=0,
    )


def _outcome(task: asyncio.Task[Any], item: Any, started: float) -> JoinOutcome | BaseException:
    """The outcome of a finished join task, or the exception that is not an outcome."""
    elapsed = time.monotonic() - started
    if task.cancelled():
        # Cancelled from outside the stream (the stream's own cancellations happen only
        # when it closes, and are never read): still this item's one outcome.
        return JoinOutcome(item, None, _cancelled(), False, 0, elapsed)
    error = task.exception()
    if error is None:
        response = task.result()
        return JoinOutcome(item, response.data, None, False, response.attempts, elapsed)
    if isinstance(error, AlreadyJoinedError):
        return JoinOutcome(item, None, None, True, error.attempts, elapsed)
    if isinstance(error, AcquireError):
        return JoinOutcome(item, None, error, False, error.attempts, elapsed)
    return error  # a bug, or a hook's exception


def _with_later(error: BaseException, later: list[BaseException]) -> BaseException:
    """`error` with the exceptions that came after it attached, so none is lost.

    They go in `error.__acquire_later__` (a tuple, empty when there were none; this works
    on every Python), and on 3.11+ also in a note, so a logged traceback shows them.
    """
    with contextlib.suppress(Exception):  # an exception class that refuses new attributes
        error.__acquire_later__ = tuple(later)  # type: ignore[attr-defined]
    if later and hasattr(error, "add_note"):
        shown = "; ".join(f"{type(exc).__name__}: {exc}"[:200] for exc in later[:3])
        more = f" (and {len(later) - 3} more)" if len(later) > 3 else ""
        error.add_note(
            f"join_many: {len(later)} later error(s) in other joins, in "
            f"__acquire_later__: {shown}{more}"
        )
    return error


async def _run(
    join: Join,
    source: Iterable[Any] | AsyncIterable[Any],
    concurrency: int,
    ask_join: bool,
    timeout: float | None,
) -> AsyncGenerator[JoinOutcome, None]:
    feed = _Feed(source)
    loop = asyncio.get_running_loop()
    # Each task runs the client's join coroutine itself (no wrapper coroutine: one frame
    # less to resume at every network event); its outcome is built when it finishes.
    in_flight: dict[asyncio.Task[Any], tuple[Any, float]] = {}  # task -> (item, start)
    finished: deque[JoinOutcome] = deque()
    crash: list[BaseException] = []  # the first exception that is not an outcome
    later: list[BaseException] = []  # any that came after it, attached to it when raised
    wakeup: list[asyncio.Future[None] | None] = [None]

    def wake(_: object = None) -> None:
        waiter = wakeup[0]
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_done(task: asyncio.Task[Any]) -> None:
        item, started = in_flight.pop(task)
        if crash and task.cancelled():
            wake()  # cancelled because of the crash: it has no outcome
            return
        result = _outcome(task, item, started)
        if isinstance(result, JoinOutcome):
            finished.append(result)  # it finished before its cancellation could land
        elif not crash:
            # Not an AcquireError: a bug, or a hook's exception. Recorded at once, so no new
            # join starts, and every join under way is cancelled now, not at the consumer's
            # next step: a slow consumer must not let them run on (and retry) meanwhile.
            crash.append(result)
            for other in in_flight:
                other.cancel()
        elif result is not crash[0]:
            later.append(result)
        wake()

    def start(item: Any) -> None:
        try:
            case_id = validate_case_id(item)
        except (TypeError, ValueError) as exc:  # reported, sent nowhere
            finished.append(JoinOutcome.invalid(item, str(exc)))
            return
        # The checked plain int is joined; the outcome keeps the item as it was given.
        task: asyncio.Task[_Joined] = loop.create_task(join(case_id, ask_join, timeout))
        in_flight[task] = (item, time.monotonic())
        task.add_done_callback(on_done)

    # An async source is read by one long-lived task of its own, one item per request, so
    # that a source waiting for its next item (a queue of cases, empty for now) never holds
    # back finished outcomes, and the source runs in a single task and context throughout
    # (its own asyncio.timeout and context variables work as they would in a plain loop).
    reader: asyncio.Task[None] | None = None
    wanted = asyncio.Event()
    arrived: deque[Any] = deque()
    asked = False

    async def read() -> None:
        while True:
            await wanted.wait()
            wanted.clear()
            item = await feed.next()
            arrived.append(item)
            wake()
            if item is _END:
                return

    try:
        while True:
            if not crash:
                room = concurrency - len(in_flight) - len(finished)
                if feed.sync:
                    while room > 0 and not feed.done:
                        item = feed.take()
                        if item is not _END:
                            start(item)
                            room -= 1
                else:
                    while arrived:
                        item = arrived.popleft()
                        asked = False
                        if item is not _END:
                            start(item)
                            room -= 1
                    if reader is None:
                        reader = loop.create_task(read())
                        reader.add_done_callback(wake)
                    elif reader.done() and not feed.done:
                        # The reader was cancelled from outside the stream: the source
                        # can no longer be read. A source failure, not the consumer's.
                        feed.fail(RuntimeError("the task reading case_ids was cancelled"))
                    if room > 0 and not asked and not feed.done:
                        asked = True
                        wanted.set()
            if finished:
                yield finished.popleft()
            elif in_flight or (asked and not crash and not feed.done):
                waiter = wakeup[0] = loop.create_future()
                try:
                    await waiter
                finally:
                    wakeup[0] = None
            else:
                break
        if crash:
            if feed.error is not None:
                later.append(feed.error)
            raise _with_later(crash[0], later)
        if feed.error is not None:
            raise feed.error
    finally:
        pending: list[asyncio.Future[Any]] = list(in_flight)
        if reader is not None:
            pending.append(reader)
        for future in pending:
            future.cancel()
        # Wait for them: their connections go back to the pool before we return.
        await asyncio.gather(*pending, return_exceptions=True)
