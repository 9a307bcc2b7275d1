"""Case ids for `acquire-async join`: lines read as bytes, the stoppable source, `--resume`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

# At most 100 digits: int() refuses a string of thousands, and no id is that long anyway.
_INTEGER = re.compile(r"-?[0-9]{1,100}", re.ASCII)
_BOM = b"\xef\xbb\xbf"
MAX_LINE = 4096
"""Bytes in a line, at most: a longer line holds no id; it is cut (its text shown cut short)."""
_SHOWN = 64  # bytes of an over-long line kept, to show which line it was
PROBE_WAIT = 1.0
"""Seconds the other ids wait for the first id's answer before they start anyway."""


# --------------------------------------------------------------------------- lines and ids


def _line_text(raw: bytes, *, cut: bool) -> str:
    # Each line is decoded on its own: bytes that are not UTF-8 become U+FFFD in that line
    # only (which then holds no valid id), and the lines after it read as usual.
    if cut:
        return raw[:_SHOWN].decode("utf-8", "replace") + "\u2026"
    return raw.decode("utf-8", "replace")


def decode_lines(fd: int) -> Iterator[str]:
    """The lines read from file descriptor `fd`, as text for `parse_ids`; never raises
    on the bytes.

    Each line is decoded as UTF-8 on its own, an undecodable byte becoming U+FFFD; a UTF-8
    BOM at the very start is dropped; a line of `MAX_LINE` bytes or more is cut short
    (memory stays bounded whatever the input). `os.read` is used, not a buffered file: a
    daemon thread blocked in it holds no lock that the interpreter's exit would wait for.
    Example:
        ```python
        list(decode_lines(fd))  # b"\\xef\\xbb\\xbf1\\n1\\xff2\\n" gives ['1', '1\\ufffd2']
        ```
    """
    pending = b""  # the start of a line whose end has not been read yet
    cutting = False  # the line being read was cut: the rest of it is skipped
    first = True

    def text(raw: bytes, cut: bool) -> str:
        nonlocal first
        if first:
            raw = raw.removeprefix(_BOM)
            first = False
        return _line_text(raw, cut=cut)

    while chunk := os.read(fd, 1 << 16):
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            if cutting:
                cutting = False
                continue
            line, pending = pending + piece, b""
            yield text(line, len(line) >= MAX_LINE)
        if not cutting:
            pending += rest
            if len(pending) >= MAX_LINE:
                yield text(pending, True)
                pending, cutting = b"", True
    if pending and not cutting:
        yield text(pending, False)


def argument_lines(arguments: Iterable[str]) -> Iterator[str]:
    """Command-line ids as text: bytes that were not UTF-8 become U+FFFD, as in a file.

    (Python hands them over as lone surrogates, which no terminal or JSON parser accepts.)
    """
    for argument in arguments:
        yield os.fsencode(argument).decode("utf-8", "replace")


def parse_ids(lines: Iterable[str]) -> Iterator[Any]:
    """Case ids from text lines: one per line; blank lines and `#` comments skipped.

    A line that is not an integer is passed on as the text it holds, so `join_many`
    reports it as an invalid id (an outcome with an error) instead of stopping the run.
    Example: `list(parse_ids(["1000", "# note", "12x"]))` is `[1000, "12x"]`.
    """
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        # ASCII digits only: int() would also take "1_000", "+5" and non-ASCII digits.
        yield int(text) if _INTEGER.fullmatch(text) else text


def _holds_id(text: str) -> bool:
    return bool(text.split("#", 1)[0].strip())


def count_ids(fd: int) -> Callable[[], int | None] | None:
    """Start counting the ids left in file `fd` when it is a regular file; else `None`.

    Returns a function that gives the count once a daemon thread has read the file through
    (`None` until then), so a long file does not delay the start. The file is read with
    `os.pread` from the current offset: the reader's position is not moved.
    """
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        start = os.lseek(fd, 0, os.SEEK_CUR)
    except (AttributeError, OSError, ValueError):
        return None
    result: list[int] = []

    def count() -> None:
        offset, tail, n = start, b"", 0
        with contextlib.suppress(OSError):
            while chunk := os.pread(fd, 1 << 20, offset):
                lines = (tail + chunk).split(b"\n")
                if offset == start:  # a BOM at the start is dropped, as by the reader
                    lines[0] = lines[0].removeprefix(_BOM)
                offset += len(chunk)
                tail = lines.pop()
                n += sum(_holds_id(_line_text(raw, cut=len(raw) >= MAX_LINE)) for raw in lines)
            if tail:
                n += _holds_id(_line_text(tail, cut=len(tail) >= MAX_LINE))
            result.append(n)

    threading.Thread(target=count, name="acquire-async-count", daemon=True).start()
    return lambda: result[0] if result else None


class Skips(Protocol):
    """Where `skip_done` counts the ids it skips."""

    skipped: int


def skip_done(ids: Iterable[Any], done: set[int], tally: Skips) -> Iterator[Any]:
    """`ids` without those in `done` (recorded by `--resume`), counted in `tally`."""
    for item in ids:
        if isinstance(item, int) and item in done:
            tally.skipped += 1  # one writer (the reader thread); readers only look
            continue
        yield item


# --------------------------------------------------------------------------- the source


_EOF = object()
_NO_PROBE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class IdSource:
    """The ids of one run, as the async iterable `join_many` reads; stoppable at once.

    - `stop` ends it now, even while it waits for input that has not come (a pipe on
      stdin kept open): `join_many` then finishes the joins in flight and ends.
    - The first id goes out alone: the next ones wait until `answered` reports its
      outcome (or `PROBE_WAIT` seconds), so a wrong key or URL costs one request.
    - `threaded`: the items are read by a daemon thread, so a blocking source (stdin)
      never blocks the event loop; `asyncio.run` does not wait for that thread at exit.
    - `error`: the exception reading the items failed with (the source then ended).

    Example:
        ```python
        source = IdSource(parse_ids(decode_lines(sys.stdin.fileno())), threaded=True)
        async for outcome in client.join_many(source):
            source.answered(outcome.case_id)
        ```
    """

    def __init__(
        self,
        items: Iterable[Any],
        *,
        threaded: bool,
        buffer: int = 1024,
        probe_wait: float = PROBE_WAIT,
    ) -> None:
        self.sent = 0
        """Items handed to `join_many` so far."""
        self.error: BaseException | None = None
        self._items = items
        self._threaded = threaded
        self._buffer = buffer
        self._probe_wait = probe_wait
        self._stopped = False
        self._queue: asyncio.Queue[Any] | None = None
        self._probe: object = _NO_PROBE
        self._probe_answered = False
        self._gate: asyncio.Future[None] | None = None

    @property
    def stopped(self) -> bool:
        """`True` once `stop` was called."""
        return self._stopped

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._run()

    def stop(self) -> None:
        """End the source now: no item is handed over after this call."""
        self._stopped = True
        if self._queue is not None:
            # Wakes a reader waiting on an empty queue; a full one is read without waiting,
            # and the flag is checked after each item.
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_EOF)
        self._open_gate()

    def answered(self, case_id: Any) -> None:
        """Note an outcome: the first id's opens the way for the others."""
        if not self._probe_answered and case_id == self._probe:
            self._open_gate()

    def _open_gate(self) -> None:
        self._probe_answered = True
        if self._gate is not None and not self._gate.done():
            self._gate.set_result(None)

    async def _run(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        take = self._read_in_thread(loop) if self._threaded else self._read_here(iter(self._items))
        while not self._stopped:
            item = await take()
            if item is _EOF or self._stopped:
                return
            probe = self._probe is _NO_PROBE and isinstance(item, int)
            if probe:
                self._probe = item  # before the yield: its outcome may come at once
            self.sent += 1
            yield item
            if probe and not self._probe_answered and not self._stopped:
                self._gate = loop.create_future()
                timer = loop.call_later(self._probe_wait, self._open_gate)
                try:
                    await self._gate
                finally:
                    timer.cancel()

    def _read_here(self, items: Iterator[Any]) -> Callable[[], Awaitable[Any]]:
        async def take() -> Any:
            try:
                return next(items)
            except StopIteration:
                return _EOF

        return take

    def _read_in_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[Any]]:
        queue = self._queue = asyncio.Queue(maxsize=self._buffer)

        def put(item: Any) -> None:
            # Blocks this thread (never the loop) while the queue is full: backpressure.
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        def pump() -> None:
            try:
                for item in self._items:
                    if self._stopped:
                        return  # read no further once stopped
                    put(item)
                put(_EOF)
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the loop is gone or going: the run ended before the input did
            except BaseException as exc:  # the input failed: hand the error to the loop
                with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):
                    put(_Failure(exc))

        threading.Thread(target=pump, name="acquire-async-input", daemon=True).start()

        async def take() -> Any:
            item = await queue.get()
            if isinstance(item, _Failure):
                self.error = item.error
                return _EOF
            return item

        return take


# --------------------------------------------------------------------------- --resume


def open_resume(path: Path) -> IO[str]:
    """Open a resume file for appending, so that the next record starts on its own line."""
    handle = path.open("a+", encoding="utf-8")
    if handle.tell() > 0:
        handle.seek(handle.tell() - 1)
        last = handle.read(1)
        handle.seek(0, os.SEEK_END)
        if last != "\n":
            handle.write("\n")
    return handle


def load_resume(path: Path) -> set[int]:
    """The ids a resume file records as done (missing file: none)."""
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {item for item in parse_ids(lines) if isinstance(item, int)}
