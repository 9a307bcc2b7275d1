"""What `acquire-async join` prints: JSON lines, the table, the summary; safe terminal text."""

from __future__ import annotations

import errno
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from acquire_async._bulk import JoinOutcome
from acquire_async._client import AcquireClient


@dataclass
class Tally:
    """What a bulk run did, for the summary and the exit status."""

    joined: int = 0
    already_joined: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False
    cancelled: int = 0
    """Ids in flight when the run was cut short (a second Ctrl-C, the grace period over)."""
    fatal: str | None = None
    """Why the run stopped early with status 2 (the key refused, the URL wrong…)."""
    resume: bool = False
    """`--resume` is in use: the summary may suggest a rerun with it."""

    succeeded: int = 0
    """Calls of another command (reject, close, message) that succeeded."""

    @property
    def done(self) -> int:
        """Outcomes so far."""
        return self.joined + self.already_joined + self.succeeded + sum(self.failed.values())

    def count(self, outcome: JoinOutcome) -> None:
        """Add one outcome."""
        if outcome.already_joined:
            self.already_joined += 1
        elif outcome.error is None:
            self.joined += 1
        else:
            self.failed[type(outcome.error).__name__] += 1

    def count_call(self, error: BaseException | None) -> None:
        """Add the outcome of one call of another command: a success, or its error."""
        if error is None:
            self.succeeded += 1
        else:
            self.failed[type(error).__name__] += 1


# C0 and C1 controls, DEL, line and paragraph separators, zero-width and bidi controls, the
# BOM, and lone surrogates: what could move the cursor, rewrite the screen, reorder a line
# or fail to encode.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` safe for a terminal: controls and escape sequences shown as `\\x1b`…

    Example: `printable("\\x1b[31mred")` is `"\\\\x1b[31mred"` (shown as `\\x1b[31mred`).
    """
    return _UNSAFE.sub(_escape, text)


class PipeConsole(Console):
    """A rich `Console` that lets a closed pipe raise `BrokenPipeError`, for the
    command to end quietly (rich's own handling exits with status 1 on the spot)."""

    def on_broken_pipe(self) -> None:
        """Raise `BrokenPipeError`: the caller decides."""
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


def outcome_json(outcome: JoinOutcome) -> str:
    """One outcome as a JSON line (ASCII only: every control character is escaped)."""
    case = outcome.case
    error = outcome.error
    return json.dumps(
        {
            "case_id": outcome.case_id,
            "ok": outcome.ok,
            "already_joined": outcome.already_joined,
            "status": case.status if case is not None else None,
            "attempts": outcome.attempts,
            "elapsed_ms": round(outcome.elapsed * 1000, 3),
            "error": type(error).__name__ if error is not None else None,
            "message": str(error) if error is not None else None,
        },
        default=str,
    )


def print_table(rows: Sequence[JoinOutcome], out: IO[str]) -> None:
    """The outcomes as a table on `out`, as wide as its terminal (or `COLUMNS`).

    Every cell is a `Text` (no markup is read) of printable text, so `[/]` or an escape
    sequence from the server or the input is shown as is. Written in pieces: CPython drops
    the rest of one large write that a closing pipe cut short, without an error.
    """
    console = PipeConsole(file=out)
    table = Table("case", "result", "status", "attempts", "ms", "error")
    for o in rows:
        result = "already joined" if o.already_joined else "joined" if o.ok else "failed"
        error = f"{type(o.error).__name__}: {o.error}" if o.error is not None else ""
        cells = (
            str(o.case_id),
            result,
            str(o.case.status) if o.case is not None else "",
            str(o.attempts),
            f"{o.elapsed * 1000:.1f}",
            error,
        )
        table.add_row(*(Text(printable(cell)) for cell in cells))
    with console.capture() as captured:
        console.print(table)
    text = captured.get()
    for start in range(0, len(text), _PIECE):
        out.write(text[start : start + _PIECE])
        out.flush()


_PIECE = 16_384


def summary_lines(tally: Tally, client: AcquireClient) -> list[str]:
    """The closing summary: counts, retries, throughput and latency percentiles."""
    elapsed = max(time.monotonic() - tally.started, 1e-9)
    stats = client.stats.as_dict()
    latency = stats["latency_ms"]
    failed = sum(tally.failed.values())
    by_class = ", ".join(f"{name} {count}" for name, count in sorted(tally.failed.items()))
    lines = [
        f"joined {tally.joined}, already joined {tally.already_joined}, failed {failed}"
        + (f" ({by_class})" if by_class else ""),
        f"requests {stats['requests']}, retries {stats['retries']}, 429s {stats['rate_limited']}",
        f"{tally.done} outcomes in {elapsed:.2f}s: {tally.done / elapsed:,.0f} joins/s; "
        f"latency p50 {_ms(latency['p50'])}, p95 {_ms(latency['p95'])}, "
        f"p99 {_ms(latency['p99'])}",
    ]
    if tally.skipped:
        lines.append(f"skipped {tally.skipped} ids already recorded as done (--resume)")
    if tally.interrupted:
        if tally.cancelled:
            in_flight = (
                f"{tally.cancelled} in flight were cancelled (each may or may not have "
                "happened; a rerun reports those as already joined)"
            )
        else:
            in_flight = "none was left in flight"
        lines.append(
            f"interrupted: {tally.done} ids finished and were reported; {in_flight}; "
            "the rest were not started"
            + (" (rerun with --resume to continue)" if tally.resume else "")
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"
