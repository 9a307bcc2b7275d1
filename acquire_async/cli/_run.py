"""A run of calls: `join_many` driven to its end (`run_bulk`), or one call per id in
turn (`run_each`); both stopped gracefully by signals and dead keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from acquire_async._bulk import JoinOutcome
from acquire_async._client import AcquireClient
from acquire_async.errors import (
    AcquireError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
)

from ._input import IdSource
from ._output import Tally, outcome_json, print_table, printable

GRACE = 5.0
"""Seconds the joins in flight get to finish after the first Ctrl-C (`--grace`)."""


def account_problem(
    error: BaseException | None, base_url: str, action: str = "join chats"
) -> str | None:
    """Why no call of this run can succeed, when `error` says so; else `None`.

    The key refused (401), or not allowed to do `action` (403), or a 404 that is not
    Acquire's "no such case" (`ERROR_RECORD_NOT_FOUND`): nothing at that URL is the Acquire
    API. Example:

    ```python
    account_problem(AuthenticationError("bad key", status=401), url)
    # 'the API key was refused (HTTP 401): check ACQUIRE_API_KEY or --api-key-file'
    ```
    """
    if isinstance(error, AuthenticationError):
        return (
            f"the API key was refused (HTTP {error.status}): "
            "check ACQUIRE_API_KEY or --api-key-file"
        )
    if isinstance(error, PermissionDeniedError):
        return (
            f"the API key is not allowed to {action} (HTTP {error.status}): "
            "check the key's permissions"
        )
    if (
        isinstance(error, NotFoundError)
        and error.status == 404
        and error.code != "ERROR_RECORD_NOT_FOUND"
    ):
        return (
            f"nothing answers the Acquire API at {printable(base_url)} (HTTP 404): "
            "check --base-url / --account"
        )
    return None


class Stopper:
    """Ends a run in two steps, from a signal or from the run itself.

    `stop` ends the input (no new call starts) and leaves the calls in flight
    `grace` seconds to finish (reported and recorded as usual); `abort` (a second
    Ctrl-C, or the grace period over) cancels them at once. `noun` names a call in the
    notice a signal prints (`"join"`: "finishing the 4 joins in flight").
    """

    def __init__(
        self, source: IdSource, tally: Tally, screen: Console, grace: float, noun: str = "join"
    ) -> None:
        self.source = source
        self.noun = noun
        self.tally = tally
        self.screen = screen
        self.grace = grace
        self.aborted = False
        self._task: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def stop(self) -> None:
        """Start no new join; cancel the joins in flight after the grace period."""
        if self.source.stopped:
            return
        self.source.stop()
        self._timer = asyncio.get_running_loop().call_later(self.grace, self.abort)

    def abort(self) -> None:
        """Cancel the run now (the joins in flight with it)."""
        if self._task is not None and not self._task.done() and not self.aborted:
            self.aborted = True
            self._task.cancel()

    def on_signal(self) -> None:
        """SIGINT/SIGTERM: the first stops the run gracefully, the next aborts it."""
        self.tally.interrupted = True
        if self.source.stopped:
            self.abort()
            return
        in_flight = self.source.sent - self.tally.done
        if in_flight > 0 and self.grace > 0:
            what, them = (
                (f"the {self.noun}", "it")
                if in_flight == 1
                else (f"the {in_flight} {self.noun}s", "them")
            )
            self.screen.print(
                f"interrupted: finishing {what} in flight (at most "
                f"{self.grace:g} s; Ctrl-C again to cancel {them})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        self.stop()

    async def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` with SIGINT and SIGTERM handled; an abort is not an error here."""
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.ensure_future(work)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.on_signal)
        try:
            await task
        except asyncio.CancelledError:
            if not self.aborted:
                raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)


def same_terminal(a: IO[Any], b: IO[Any]) -> bool:
    """`True` when both streams write to the same terminal."""
    try:
        return (
            a.isatty()
            and b.isatty()
            and os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
        )
    except (AttributeError, OSError, ValueError):
        return False


class _Bar:
    """The progress bar: done (skipped ids included) of the total when known, rate, ETA."""

    def __init__(self, screen: Console, tally: Tally, total: Callable[[], int | None]) -> None:
        self.tally = tally
        self.total = total
        self.progress = Progress(
            TextColumn("joining"),
            BarColumn(),
            TextColumn("{task.fields[text]}"),
            console=screen,
            transient=True,
            disable=not screen.is_terminal,
        )
        self.task = self.progress.add_task("join", total=None, text="")
        self._shown = 0.0

    def update(self, force: bool = False) -> None:
        if self.progress.disable:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.1:
            return
        self._shown = now
        tally, total = self.tally, self.total()
        completed = tally.done + tally.skipped
        rate = tally.done / max(now - tally.started, 1e-9)
        parts = [f"{completed:,}" + (f"/{total:,}" if total is not None else "")]
        if tally.skipped:
            parts.append(f"{tally.skipped:,} skipped")
        parts.append(f"{rate:,.0f}/s")
        if total is not None and rate > 0:
            left = max(total - completed, 0) / rate
            parts.append(f"ETA {int(left // 60)}:{int(left % 60):02d}")
        self.progress.update(self.task, completed=completed, total=total, text=" · ".join(parts))


async def run_bulk(
    client: AcquireClient,
    source: IdSource,
    stopper: Stopper,
    *,
    concurrency: int,
    ask_join: bool,
    timeout: float | None = None,
    output: str,
    out: IO[str],
    tally: Tally,
    total: Callable[[], int | None] = lambda: None,
    resume: IO[str] | None = None,
) -> None:
    """Join the ids of `source`; write each outcome, record successes in `resume`.

    An account-wide error (`account_problem`) stops the run like a first Ctrl-C, and
    is kept in `tally.fatal`. Progress goes to `stopper.screen`; when that is the
    terminal `out` writes to as well, the lines are printed through it, above the bar.
    """
    screen = stopper.screen
    through_screen = output == "jsonl" and screen.is_terminal and same_terminal(out, screen.file)
    bar = _Bar(screen, tally, total)
    rows: list[JoinOutcome] = []
    try:
        with bar.progress:
            async with client.join_many(
                source, concurrency=concurrency, ask_join=ask_join, timeout=timeout
            ) as outcomes:
                async for outcome in outcomes:
                    source.answered(outcome.case_id)
                    tally.count(outcome)
                    # Report first, then record: a recorded id has always been shown.
                    if output == "jsonl":
                        if through_screen:
                            screen.out(outcome_json(outcome), highlight=False)
                        else:
                            out.write(outcome_json(outcome) + "\n")
                            out.flush()
                    elif output == "table":
                        rows.append(outcome)
                    if resume is not None and outcome.error is None:
                        resume.write(f"{outcome.case_id}\n")
                        resume.flush()
                    if tally.fatal is None and outcome.error is not None:
                        tally.fatal = account_problem(outcome.error, client.base_url)
                        if tally.fatal is not None:
                            stopper.stop()
                    bar.update()
            bar.update(force=True)
    except asyncio.CancelledError:
        if stopper.aborted:
            tally.cancelled = max(source.sent - tally.done, 0)
        raise
    finally:
        if output == "table":  # also after Ctrl-C: what finished is reported
            print_table(rows, out)
    if source.error is not None and tally.fatal is None:
        tally.fatal = f"cannot read the ids: {_reason(source.error)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return printable(str(exc)) or type(exc).__name__


async def run_each(
    client: AcquireClient,
    source: IdSource,
    stopper: Stopper,
    call: Callable[[int], Awaitable[Any]],
    line: Callable[[int, Any, BaseException | None], dict[str, Any]],
    *,
    action: str,
    out: IO[str],
    tally: Tally,
) -> None:
    """Await `call(case_id)` for each id of `source`, one at a time, in order, and write
    `line(case_id, result, error)` as a JSON line for each.

    The stop rules of `run_bulk`: an account-wide error (`account_problem`, with
    `action` in its 403 message) stops the run and is kept in `tally.fatal`; a first
    Ctrl-C lets the call in flight finish. A call that `Stopper.abort` cancels is
    reported too, with the `CancelledError` as its error: it may or may not have happened.
    Example:
        ```python
        await run_each(client, source, stopper, client.reject_chat_response, reject_line,
                       action="reject chats", out=sys.stdout, tally=tally)
        ```
    """
    async for case_id in source:
        result: Any = None
        error: BaseException | None = None
        try:
            result = await call(case_id)
        except AcquireError as exc:
            error = exc
        except asyncio.CancelledError as exc:
            if stopper.aborted:  # ours: report the call it cut short, then let it through
                tally.cancelled += 1
                _write_line(out, line(case_id, None, exc))
            raise
        source.answered(case_id)
        tally.count_call(error)
        _write_line(out, line(case_id, result, error))
        if error is not None and tally.fatal is None:
            tally.fatal = account_problem(error, client.base_url, action)
            if tally.fatal is not None:
                stopper.stop()


def _write_line(out: IO[str], fields: dict[str, Any]) -> None:
    # ASCII JSON: every control character, bidi control and non-ASCII letter is escaped.
    out.write(json.dumps(fields, default=str) + "\n")
    out.flush()
