"""What ``acquire-async join`` prints: JSON lines, the table, the progress bar, the summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from acquire_async._client import AcquireClient


@dataclass
class Tally:
    """What a bulk run did, for the summary."""

    joined: int = 0
    already_joined: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False

    @property
    def done(self) -> int:
        return self.joined + self.already_joined + sum(self.failed.values())


def outcome_json(outcome: Any) -> str:
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


def print_table(rows: list[Any], out: IO[str]) -> None:
    table = Table("case", "result", "status", "attempts", "ms", "error")
    for o in rows:
        result = "already joined" if o.already_joined else "joined" if o.ok else "failed"
        table.add_row(
            str(o.case_id),
            result,
            str(o.case.status) if o.case is not None else "",
            str(o.attempts),
            f"{o.elapsed * 1000:.1f}",
            f"{type(o.error).__name__}: {o.error}" if o.error is not None else "",
        )
    Console(file=out, width=200).print(table)


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
        lines.append(
            f"interrupted: {tally.done} ids finished and were reported; ids in flight were "
            "cancelled and the rest not started (rerun with --resume to continue)"
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"
