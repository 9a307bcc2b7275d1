"""`acquire-async join`: bulk joins through `join_many`."""

from __future__ import annotations

import asyncio
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click
from rich.console import Console

from ._account import account_options, make_client
from ._common import exit_status, fail, reason
from ._input import (
    IdSource,
    argument_lines,
    count_ids,
    decode_lines,
    load_resume,
    open_resume,
    parse_ids,
    skip_done,
)
from ._output import PipeConsole, Tally, summary_lines
from ._run import GRACE, Stopper, run_bulk, same_terminal


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


def screen_console() -> Console:
    """Where the progress bar and notices go: stderr, or stdout when both are the same
    terminal (then the JSON lines are printed through it, above the bar, never across it)."""
    if same_terminal(sys.stdout, sys.stderr):
        return PipeConsole(file=sys.stdout)
    return PipeConsole(stderr=True)


@click.command()
@click.argument("case_ids", nargs=-1)
@click.option(
    "--from",
    "from_file",
    type=click.File("rb"),
    help="File of ids, one a line (UTF-8); - = stdin.",
)
@account_options
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--no-ask-join", is_flag=True, help="Send askJoin: false.")
@click.option("--method", type=click.Choice(["POST", "GET"]), default="POST", show_default=True)
@click.option("--output", type=click.Choice(["jsonl", "table"]), default="jsonl", show_default=True)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record joined ids here and skip the ones already recorded.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 86_400, min_open=True),
    default=None,
    callback=_finite,
    help="Deadline per join across its retries, in seconds.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 3_600),
    default=GRACE,
    show_default=True,
    callback=_finite,
    help="After Ctrl-C, seconds the joins in flight get to finish.",
)
def join(
    case_ids: tuple[str, ...],
    from_file: IO[bytes] | None,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    concurrency: int,
    no_ask_join: bool,
    method: str,
    output: str,
    resume: Path | None,
    timeout: float | None,
    grace: float,
) -> None:
    """Join chats: CASE_ID… or --from FILE. One JSON line per case on stdout."""
    if bool(case_ids) == (from_file is not None):
        fail("give case ids as arguments or --from FILE (one of the two)")
    client = make_client(
        account, base_url, api_key_file, join_method=method, max_connections=concurrency
    )
    done: set[int] = set()
    record: IO[str] | None = None
    if resume is not None:
        try:
            done = load_resume(resume)
            record = open_resume(resume)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot use the resume file {str(resume)!r}: {reason(exc)}")
    tally = Tally(resume=resume is not None)
    screen = screen_console()
    count: Callable[[], int | None] | None = None  # the ids in the input, for the progress
    if from_file is None:
        ids = list(parse_ids(argument_lines(case_ids)))
        source = IdSource(skip_done(ids, done, tally), threaded=False)
        count = functools.partial(len, ids)
    else:
        # Read by a thread: a pipe that stays open never blocks the joins or Ctrl-C.
        fd = from_file.fileno()
        source = IdSource(skip_done(parse_ids(decode_lines(fd)), done, tally), threaded=True)
        if screen.is_terminal:
            count = count_ids(fd)
    stopper = Stopper(source, tally, screen, grace)

    async def work() -> None:
        async with client:
            await run_bulk(
                client,
                source,
                stopper,
                concurrency=concurrency,
                ask_join=not no_ask_join,
                timeout=timeout,
                output=output,
                out=sys.stdout,
                tally=tally,
                total=count or (lambda: None),
                resume=record,
            )

    try:
        asyncio.run(stopper.run(work()))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        tally.interrupted = True
    finally:
        if record is not None:
            record.close()
    sys.stdout.flush()
    for line in summary_lines(tally, client):
        click.echo(line, err=True)
    if tally.fatal is not None:
        click.echo(f"acquire-async: error: {tally.fatal}", err=True)
    sys.exit(exit_status(tally))
