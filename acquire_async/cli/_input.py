"""Case ids for ``acquire-async join``: parsing, the reader thread, the ``--resume`` file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def parse_ids(lines: Iterable[str]) -> Iterator[Any]:
    """Case ids from text lines: one per line; blank lines and ``#`` comments skipped.

    A line that is not an integer is passed on as the text it holds, so ``join_many``
    reports it as an invalid id (an outcome with an error) instead of stopping the run.
    """
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        # ASCII digits only: int() would also take "1_000", "+5" and non-ASCII digits.
        yield int(text) if _INTEGER.fullmatch(text) else text


def skip_done(ids: Iterable[Any], done: set[int], skipped: list[int]) -> Iterator[Any]:
    for item in ids:
        if isinstance(item, int) and item in done:
            skipped.append(item)
            continue
        yield item


_EOF = object()


async def read_in_thread(items: Iterable[Any], buffer: int = 1024) -> AsyncIterator[Any]:
    """Yield ``items`` read by a daemon thread, so a blocking source (a pipe on stdin that
    stays open) never blocks the event loop: joins go on and Ctrl-C is heard meanwhile.

    A daemon thread, not ``asyncio.to_thread``: ``asyncio.run`` waits for its executor's
    threads at shutdown, and would hang on a ``readline`` that never returns.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=buffer)

    def pump() -> None:
        def put(item: Any) -> None:
            # Blocks this thread (never the loop) while the queue is full: backpressure.
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        try:
            for item in items:
                put(item)
            put(_EOF)
        except RuntimeError:  # the loop is gone: the run ended before the input did
            return
        except BaseException as exc:  # the input failed: hand the error to the loop
            with contextlib.suppress(RuntimeError):
                put(_Failure(exc))

    threading.Thread(target=pump, name="acquire-async-input", daemon=True).start()
    while (item := await queue.get()) is not _EOF:
        if isinstance(item, _Failure):
            raise item.error
        yield item


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


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
