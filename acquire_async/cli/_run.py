"""A bulk run: ``join_many`` driven to its end, Ctrl-C and SIGTERM handled."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterable, Iterable
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from acquire_async._client import AcquireClient

from ._output import Tally, outcome_json, print_table


async def run_bulk(
    client: AcquireClient,
    ids: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int,
    ask_join: bool,
    timeout: float | None = None,
    output: str,
    out: IO[str],
    err: Console,
    resume: IO[str] | None,
    total: int | None,
    tally: Tally,
) -> None:
    """Join ``ids``, write each outcome, record successes in ``resume``; Ctrl-C stops it."""
    rows: list[Any] = []
    progress = Progress(
        TextColumn("joining"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task_id = progress.add_task("join", total=total, rate="")
    try:
        with progress:
            async with client.join_many(
                ids, concurrency=concurrency, ask_join=ask_join, timeout=timeout
            ) as outcomes:
                async for outcome in outcomes:
                    if outcome.already_joined:
                        tally.already_joined += 1
                    elif outcome.ok:
                        tally.joined += 1
                    else:
                        tally.failed[type(outcome.error).__name__] += 1
                    # Report first, then record: a recorded id has always been shown.
                    if output == "jsonl":
                        out.write(outcome_json(outcome) + "\n")
                        out.flush()
                    else:
                        rows.append(outcome)
                    if resume is not None and outcome.ok:
                        resume.write(f"{outcome.case_id}\n")
                        resume.flush()
                    rate = tally.done / max(time.monotonic() - tally.started, 1e-9)
                    progress.update(task_id, advance=1, rate=f"{rate:,.0f}/s")
    finally:
        if output == "table":  # also after Ctrl-C: what finished is reported
            print_table(rows, out)


async def until_interrupted(work: Any, tally: Tally) -> None:
    """Run ``work``; on SIGINT/SIGTERM cancel it (its cleanup runs) and note the interruption."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)

    def stop() -> None:
        tally.interrupted = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not tally.interrupted:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
