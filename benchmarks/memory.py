"""Benchmark 4: peak memory while joining 200,000 ids from a generator.

Why lazy matters: ``join_many`` reads its ids as slots free up, so at most ``concurrency``
joins (and tasks) exist at once and each outcome can be dropped once seen. The naive way,
``asyncio.gather`` over a task per id behind a semaphore, creates every task up front and keeps
every result until the end.

Each contender runs in a fresh process (``python -m benchmarks.memory --child NAME …``) on
asyncio's default loop against one shared local server. The child imports everything, opens its
client and makes ``warmup_joins`` joins, then takes its baseline: the current RSS, after
resetting the kernel's peak-RSS mark (``/proc/self/clear_refs``; elsewhere it falls back to
``ru_maxrss``). After the timed joins, growth = peak RSS - baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._clients import CONTENDERS, OursGather, OursJoinMany, RawAiohttp, RawAiohttpGather
from ._common import REPO_ROOT, Config
from ._report import Row, Section, Target
from ._server import serve

__all__ = ["run"]

MB = 1024 * 1024
TARGET_MB = 25
CONTENDER_ORDER = (OursJoinMany, OursGather, RawAiohttp, RawAiohttpGather)


# --------------------------------------------------------------------------- the child side


def _status_kb(field: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``, or ``None``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; ``False`` if not Linux."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _ids(first: int, count: int) -> Iterator[int]:
    """The ids to join, made one at a time: nothing is materialised up front."""
    for offset in range(count):
        yield first + offset


def child(name: str, base_url: str, joins: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """Run one contender in this (fresh) process and measure its peak RSS growth."""
    contender_class = CONTENDERS[name]

    async def main() -> dict[str, Any]:
        async with contender_class(base_url, concurrency) as contender:
            await contender.run(_ids(1, warmup))
            gc.collect()
            precise = _reset_peak()
            baseline = (_status_kb("VmRSS") or 0) * 1024 if precise else _ru_maxrss_bytes()
            start = time.perf_counter()
            tally = await contender.run(_ids(1_000_000, joins))
            seconds = time.perf_counter() - start
            peak = (_status_kb("VmHWM") or 0) * 1024 if precise else _ru_maxrss_bytes()
        return {
            "growth_mb": (peak - baseline) / MB,
            "baseline_mb": baseline / MB,
            "peak_mb": peak / MB,
            "joins_per_s": joins / seconds,
            "ok": tally.ok,
            "failed": tally.failed,
            "method": "VmHWM after clear_refs" if precise else "ru_maxrss",
        }

    return asyncio.run(main())


# --------------------------------------------------------------------------- the parent side


def _spawn(name: str, base_url: str, config: Config) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        name,
        "--base-url",
        base_url,
        "--joins",
        str(config.memory_joins),
        "--concurrency",
        str(config.memory_concurrency),
        "--warmup",
        str(config.warmup_joins),
    ]
    # Generous: the slowest contender makes a few thousand joins/s.
    timeout = 120 + config.memory_joins / 500
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(tail[0])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the memory benchmark (one fresh process per contender) and return its section."""
    rows = [Row(cls.name, "asyncio", "MB", note=cls.unavailable()) for cls in CONTENDER_ORDER]
    methods: set[str] = set()
    with serve() as server:
        for row in rows:
            if row.note is not None:
                continue
            try:
                result = _spawn(row.contender, server.base_url(), config)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                row.error = f"error: {type(exc).__name__}: {exc}"
                log(f"memory: {row.contender}: {row.error}")
                continue
            row.samples.append(result["growth_mb"])
            row.add_extra("baseline MB", result["baseline_mb"])
            row.add_extra("joins/s", result["joins_per_s"])
            if result["failed"]:
                row.add_extra("failed joins", result["failed"])
            methods.add(result["method"])
            log(f"memory: {row.contender}: +{result['growth_mb']:.1f} MB")
    section = Section(
        key="memory",
        title="Memory",
        description=(
            f"peak RSS growth in MB while joining {config.memory_joins:,} ids from a generator "
            f"at concurrency {config.memory_concurrency}, one fresh process per contender"
        ),
        params={
            "joins": config.memory_joins,
            "concurrency": config.memory_concurrency,
            "warmup_joins": config.warmup_joins,
            "repeats": 1,
            "method": ", ".join(sorted(methods)) or "-",
        },
        rows=rows,
        notes=[
            "gather rows create one task per id up front and keep every result until the end; "
            "join_many and raw aiohttp (lazy) keep at most `concurrency` joins in flight.",
            "Peak RSS is deterministic enough that one run per contender is reported.",
        ],
        lower_is_better=True,
    )
    ours = section.row(OursJoinMany.name, "asyncio")
    section.targets.append(
        Target.at_most("ours: join_many growth", ours.median if ours else None, TARGET_MB, " MB")
    )
    return section


def main(argv: list[str] | None = None) -> None:
    """Entry point of a child process: print one JSON line with its measurements."""
    parser = argparse.ArgumentParser(description="One memory-benchmark contender (internal).")
    parser.add_argument("--child", required=True, choices=sorted(CONTENDERS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--joins", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args(argv)
    result = child(args.child, args.base_url, args.joins, args.concurrency, args.warmup)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
