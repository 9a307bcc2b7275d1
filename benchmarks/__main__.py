"""``python -m benchmarks``: run the benchmarks, print the Markdown report, write the files.

Usage (from the repository root)::

    python -m benchmarks                       # everything, 5 repeats (a few minutes)
    python -m benchmarks --smoke               # tiny sizes, 1 repeat: proves it runs (< 30 s)
    python -m benchmarks --only decode,memory  # a subset
    python -m benchmarks --only scaleout       # processes, RedisThrottle, the worker fleet
    python -m benchmarks --only webhooks       # verify + parse of a signed webhook delivery
    python -m benchmarks --only bot            # the bot's receiver: time to answer, deliveries/s
    python -m benchmarks --repeats 9 --output-dir /tmp/bench

Progress goes to stderr; the report to stdout and ``<output-dir>/latest.md`` and
``latest.json``. Exits 1 when a contender crashed (a skipped one, e.g. a missing optional
library, is fine); a missed target does not change the exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import bot, decode, latency, memory, scaleout, throughput, webhooks
from ._common import REPO_ROOT, Config
from ._report import Section, environment, to_markdown, write

SECTIONS: dict[str, Callable[[Config, Callable[[str], None]], Section]] = {
    "decode": decode.run,
    "throughput": throughput.run,
    "latency": latency.run,
    "memory": memory.run,
    "scaleout": scaleout.run,
    "webhooks": webhooks.run,
    "bot": bot.run,
}
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results"


def _selection(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        given = ", ".join(unknown) or "(none)"
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {given}; choose from {', '.join(SECTIONS)}"
        )
    return [name for name in SECTIONS if name in names]  # always in the canonical order


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark acquire_async against raw aiohttp, httpx, orjson and pydantic.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes and one repeat (CI: proves it runs)"
    )
    parser.add_argument(
        "--only",
        type=_selection,
        default=list(SECTIONS),
        metavar="SECTIONS",
        help=f"comma-separated subset of: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="samples per contender (ignored with --smoke)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where latest.md and latest.json go (default: {DEFAULT_OUTPUT})",
    )
    return parser


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; return the process exit code."""
    args = _parser().parse_args(argv)
    if args.repeats < 1:
        _parser().error("--repeats must be >= 1")
    config = Config.tiny() if args.smoke else Config.full(repeats=args.repeats)
    meta = environment()
    meta["mode"] = "smoke" if config.smoke else "full"
    started = time.perf_counter()
    sections: list[Section] = []
    for name in args.only:
        _log(f"== {name}")
        section_started = time.perf_counter()
        section = SECTIONS[name](config, _log)
        section.seconds = time.perf_counter() - section_started
        sections.append(section)
    meta["seconds"] = time.perf_counter() - started
    print(to_markdown(meta, sections))
    markdown, data = write(args.output_dir, meta, sections)
    _log(f"wrote {markdown} and {data} in {meta['seconds']:.1f} s")
    errors = [error for section in sections for error in section.errors]
    for error in errors:
        _log(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
