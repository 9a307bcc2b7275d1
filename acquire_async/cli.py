"""The ``acquire-async`` command: bulk joins from a shell, the emulator, and the demo.

Installed with the ``cli`` extra (``pip install 'acquire-async[cli]'``), so the library itself
stays lean. Commands:

- ``join CASE_ID… | --from FILE``: join through ``join_many``; one JSON line per outcome on
  stdout, a progress bar on stderr when it is a terminal, a summary at the end.
- ``serve``: the emulator (``acquire_async.testing.FakeAcquire``) for manual testing.
- ``demo``: the emulator with 1,000 waiting cases and light faults, joined over real HTTP.

Exit status: 0 when every case was joined (or already joined), 1 when some failed, 2 for a
usage or configuration error (a one-line message, no traceback), 130 after Ctrl-C. The API
key is read from ``ACQUIRE_API_KEY`` or ``--api-key-file`` and never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

try:
    import click
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table
except ImportError:  # pragma: no cover - depends on the install
    print(
        "acquire-async: error: this command needs the 'cli' extra: "
        "pip install 'acquire-async[cli]'",
        file=sys.stderr,
    )
    sys.exit(2)

from ._client import AcquireClient
from ._retry import RetryPolicy
from ._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


# --------------------------------------------------------------------------- ids and resume


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


def _skip_done(ids: Iterable[Any], done: set[int], skipped: list[int]) -> Iterator[Any]:
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


# --------------------------------------------------------------------------- the run


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


def _outcome_json(outcome: Any) -> str:
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
                        out.write(_outcome_json(outcome) + "\n")
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
            _print_table(rows, out)


def _print_table(rows: list[Any], out: IO[str]) -> None:
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


async def _until_interrupted(work: Any, tally: Tally) -> None:
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


def _exit_code(tally: Tally) -> int:
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


def _fail(message: str) -> NoReturn:
    click.echo(f"acquire-async: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


# --------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acquire-async")
def main() -> None:
    """Join Acquire chats from the shell, run the emulator, or watch the demo."""


@main.command()
@click.argument("case_ids", nargs=-1)
@click.option(
    "--from", "from_file", type=click.File("r"), help="File of ids, one a line; - = stdin."
)
@click.option("--account", envvar="ACQUIRE_ACCOUNT_ID", help="Account id (env ACQUIRE_ACCOUNT_ID).")
@click.option("--base-url", help="API base URL instead of https://ACCOUNT.acquire.io/api/v1.")
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the API key (default: env ACQUIRE_API_KEY).",
)
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
    help="Deadline per join across its retries, in seconds.",
)
def join(
    case_ids: tuple[str, ...],
    from_file: IO[str] | None,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    concurrency: int,
    no_ask_join: bool,
    method: str,
    output: str,
    resume: Path | None,
    timeout: float | None,
) -> None:
    """Join chats: CASE_ID… or --from FILE. One JSON line per case on stdout."""
    if bool(case_ids) == bool(from_file):
        _fail("give case ids as arguments or --from FILE (one of the two)")
    api_key = _read_key(api_key_file)
    try:
        client = AcquireClient(
            account or None,
            api_key,
            base_url=base_url,
            join_method=method,
            max_connections=max(concurrency, 1),
        )
    except (TypeError, ValueError) as exc:
        _fail(str(exc))
    del api_key
    done: set[int] = set()
    record: IO[str] | None = None
    if resume is not None:
        try:
            done = load_resume(resume)
            record = open_resume(resume)
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot use the resume file {str(resume)!r}: {_reason(exc)}")
    skipped: list[int] = []
    tally = Tally()
    err = Console(stderr=True)

    async def work() -> None:
        if case_ids:
            ids: Iterable[Any] | AsyncIterator[Any]
            ids = _skip_done(parse_ids(case_ids), done, skipped)
            total: int | None = sum(
                1 for item in parse_ids(case_ids) if not (isinstance(item, int) and item in done)
            )
        else:
            assert from_file is not None
            ids = read_in_thread(_skip_done(parse_ids(from_file), done, skipped))
            total = None
        async with client:
            await run_bulk(
                client,
                ids,
                concurrency=concurrency,
                ask_join=not no_ask_join,
                timeout=timeout,
                output=output,
                out=sys.stdout,
                err=err,
                resume=record,
                total=total,
                tally=tally,
            )

    try:
        asyncio.run(_until_interrupted(work(), tally))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        tally.interrupted = True
    finally:
        if record is not None:
            record.close()
    tally.skipped = len(skipped)
    sys.stdout.flush()
    for line in summary_lines(tally, client):
        click.echo(line, err=True)
    sys.exit(_exit_code(tally))


def _read_key(path: Path | None) -> str:
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read the API key file {str(path)!r}: {_reason(exc)}")
        if not key:
            _fail(f"the API key file {str(path)!r} is empty")
        return key
    key = os.environ.get("ACQUIRE_API_KEY", "")
    if not key:
        _fail("no API key: set ACQUIRE_API_KEY or pass --api-key-file")
    return key


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _faults_option(spec: str | None, seed: int) -> Any:
    from .testing import Faults

    if not spec:
        return Faults(seed=seed)
    try:
        options = json.loads(spec)
    except ValueError:
        _fail('--faults takes a JSON object, e.g. \'{"error_rates": {"503": 0.05}}\'')
    if not isinstance(options, dict):
        _fail("--faults takes a JSON object")
    options.setdefault("seed", seed)  # a "seed" in the JSON wins over --seed
    try:
        if isinstance(options.get("error_rates"), dict):
            options["error_rates"] = {int(k): v for k, v in options["error_rates"].items()}
        if isinstance(options.get("latency"), list):
            options["latency"] = tuple(options["latency"])
        return Faults(**options)
    except (TypeError, ValueError) as exc:
        _fail(f"--faults: {exc}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--cases", default=100, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--faults", "faults_spec", help='Faults as JSON: \'{"error_rates": {"503": 0.05}}\'.')
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--already-joined", default=0.0, show_default=True, type=click.FloatRange(0, 1))
def serve(
    host: str, port: int, cases: int, faults_spec: str | None, seed: int, already_joined: float
) -> None:
    """Run the Acquire emulator until Ctrl-C (key: env ACQUIRE_API_KEY or the test key)."""
    from .testing import DEFAULT_API_KEY
    from .testing import serve as run_server

    faults = _faults_option(faults_spec, seed)
    api_key = os.environ.get("ACQUIRE_API_KEY") or DEFAULT_API_KEY
    try:
        run_server(host, port, cases, faults, api_key=api_key, already_joined=already_joined)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@main.command()
@click.option("--cases", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seed", default=2021, show_default=True, type=int)
def demo(cases: int, concurrency: int, seed: int) -> None:
    """Join waiting cases on a local emulator with light faults, over real HTTP."""
    from .testing import FakeAcquire, Faults

    faults = Faults(
        seed=seed,
        latency=(0.001, 0.01),
        error_rates={503: 0.02, 429: 0.003, 500: 0.005},
        retry_after=0.25,
        drop_after_read=0.005,
    )
    err = Console(stderr=True)
    tally = Tally()

    async def work(client_box: list[AcquireClient]) -> None:
        async with FakeAcquire(cases, faults=faults, already_joined=0.05) as fake:
            err.print(
                f"[bold]acquire-async demo[/]: {cases} waiting cases on the emulator at "
                f"{fake.base_url}; faults: 1-10 ms latency, 2% 503, 0.3% 429 (Retry-After "
                "0.25 s), 0.5% 500, 0.5% dropped answers; 5% of cases already joined."
            )
            async with AcquireClient(
                api_key=fake.api_key,
                base_url=fake.base_url,
                retry=RetryPolicy(backoff_base=0.02, backoff_cap=0.5),
            ) as client:
                client_box.append(client)
                tally.started = time.monotonic()
                await run_bulk(
                    client,
                    sorted(fake.cases),
                    concurrency=concurrency,
                    ask_join=True,
                    output="none",
                    out=sys.stdout,
                    err=err,
                    resume=None,
                    total=cases,
                    tally=tally,
                )

    box: list[AcquireClient] = []
    asyncio.run(_until_interrupted(work(box), tally))
    if box:
        for line in summary_lines(tally, box[0]):
            click.echo(line, err=True)
    sys.exit(_exit_code(tally))
