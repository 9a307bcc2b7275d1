"""The ``join_many`` engine: a lazy feed, ``concurrency`` workers, one outcome per item.

``concurrency`` worker tasks pull ids one at a time from the caller's (async) iterable, join
each, and put the outcome on a queue of at most ``concurrency`` entries that the consumer
reads. So the ids are read only as fast as joins finish and the consumer keeps up: memory is
O(concurrency) whatever the input length, and no task is created per id.

Closing the stream (leaving ``async with``, ``aclose()``, cancelling the consumer) cancels the
workers and waits for them, so every connection they held is back in the pool when it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from .errors import AcquireError
from .models import Case

__all__ = ["InvalidCaseIdError", "JoinOutcome", "JoinStream"]


class InvalidCaseIdError(AcquireError, ValueError):
    """A ``join_many`` item that is not a positive 64-bit int; it was sent nowhere."""


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """What became of one ``join_many`` item.

    - ``case_id``: the item exactly as it was given (even an invalid one).
    - ``case``: the joined :class:`Case` (``None`` on failure, and when already joined, since
      Acquire then sends no case).
    - ``error``: the :class:`AcquireError` that ended the join, or ``None``.
    - ``ok``: joined, or already joined. ``already_joined``: ``CHAT_ALREADY_JOINED`` came back,
      on the first attempt or after an ambiguous failure was retried.
    - ``attempts``: HTTP attempts made (0 for an invalid item); ``elapsed``: seconds.

    Example::

        async for outcome in client.join_many(ids):
            if outcome.ok:
                done.append(outcome.case_id)
            else:
                log.warning("case %s: %s", outcome.case_id, outcome.error)
    """

    case_id: Any
    case: Case | None
    error: AcquireError | None
    already_joined: bool
    attempts: int
    elapsed: float

    @property
    def ok(self) -> bool:
        """``True`` when the agent is in the chat (joined now or already)."""
        return self.error is None

    @classmethod
    def invalid(cls, item: Any, reason: str) -> JoinOutcome:
        """The outcome of an item that is not a valid case id."""
        return cls(item, None, InvalidCaseIdError(reason, attempts=0), False, 0, 0.0)


_END: Final = object()

RunOne = Callable[[Any, bool, "float | None"], Awaitable[JoinOutcome]]


class _Crash:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class JoinStream:
    """The async iterator ``join_many`` returns; also an async context manager.

    Iterate it for outcomes in completion order. Leave it with ``async with`` (or call
    :meth:`aclose`) to stop early: joins still in flight are cancelled and awaited before the
    block ends. Without ``async with``, breaking out of ``async for`` leaves that cleanup to
    the garbage collector, some time later.
    """

    __slots__ = ("_agen",)

    def __init__(
        self,
        run_one: RunOne,
        source: Iterable[Any] | AsyncIterable[Any],
        concurrency: int,
        ask_join: bool,
        timeout: float | None,
    ) -> None:
        if not isinstance(source, (Iterable, AsyncIterable)) or isinstance(source, (str, bytes)):
            raise TypeError(f"case_ids must be an iterable of ints, not {type(source).__name__}")
        self._agen = _run(run_one, source, concurrency, ask_join, timeout)

    def __aiter__(self) -> JoinStream:
        return self

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
    """Hands the caller's items to many workers, one at a time, until the source ends."""

    __slots__ = ("_async", "_done", "_lock", "_sync", "error")

    def __init__(self, source: Iterable[Any] | AsyncIterable[Any]) -> None:
        self.error: Exception | None = None  # the source's own exception, re-raised at the end
        self._done = False
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        if isinstance(source, AsyncIterable):
            self._async = source.__aiter__()
        else:
            self._sync = iter(source)
        # An async generator refuses two concurrent __anext__ calls; workers take turns.
        self._lock = asyncio.Lock()

    async def next(self) -> Any:
        """The next item, or ``_END`` once the source is exhausted or has failed."""
        if self._sync is not None:
            return self._take(self._sync)
        async with self._lock:
            return await self._take_async()

    def _take(self, iterator: Iterator[Any]) -> Any:
        if self._done:
            return _END
        try:
            return next(iterator)
        except StopIteration:
            self._done = True
        except Exception as exc:  # the caller's iterator failed: finish the rest, then raise it
            self._fail(exc)
        return _END

    async def _take_async(self) -> Any:
        if self._done or self._async is None:
            return _END
        try:
            return await self._async.__anext__()
        except StopAsyncIteration:
            self._done = True
        except Exception as exc:
            self._fail(exc)
        return _END

    def _fail(self, exc: Exception) -> None:
        self._done = True
        self.error = exc


async def _run(
    run_one: RunOne,
    source: Iterable[Any] | AsyncIterable[Any],
    concurrency: int,
    ask_join: bool,
    timeout: float | None,
) -> AsyncGenerator[JoinOutcome, None]:
    feed = _Feed(source)
    results: asyncio.Queue[JoinOutcome | _Crash | object] = asyncio.Queue(maxsize=concurrency)

    async def worker() -> None:
        try:
            while (item := await feed.next()) is not _END:
                await results.put(await run_one(item, ask_join, timeout))
        except Exception as exc:  # a bug or a hook's exception: surface it, don't lose it
            await results.put(_Crash(exc))
        else:
            await results.put(_END)

    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    running = len(workers)
    try:
        while running:
            result = await results.get()
            if isinstance(result, JoinOutcome):
                yield result
            elif isinstance(result, _Crash):
                raise result.error
            else:
                running -= 1
        if feed.error is not None:
            raise feed.error
    finally:
        for task in workers:
            task.cancel()
        # Wait for them: their connections go back to the pool before we return.
        await asyncio.gather(*workers, return_exceptions=True)
