"""The click commands: ``join``, ``serve`` and ``demo``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from rich.console import Console

from acquire_async._client import AcquireClient
from acquire_async._retry import RetryPolicy
from acquire_async._version import __version__

from ._input import load_resume, open_resume, parse_ids, read_in_thread, skip_done
from ._output import Tally, summary_lines
from ._run import run_bulk, until_interrupted

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
            ids = skip_done(parse_ids(case_ids), done, skipped)
            total: int | None = sum(
                1 for item in parse_ids(case_ids) if not (isinstance(item, int) and item in done)
            )
        else:
            assert from_file is not None
            ids = read_in_thread(skip_done(parse_ids(from_file), done, skipped))
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
        asyncio.run(until_interrupted(work(), tally))
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
    from acquire_async.testing import Faults

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
    from acquire_async.testing import DEFAULT_API_KEY
    from acquire_async.testing import serve as run_server

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
    from acquire_async.testing import FakeAcquire, Faults

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
    asyncio.run(until_interrupted(work(box), tally))
    if box:
        for line in summary_lines(tally, box[0]):
            click.echo(line, err=True)
    sys.exit(_exit_code(tally))
