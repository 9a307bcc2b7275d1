"""`acquire-async serve` (the emulator in the foreground) and `acquire-async demo`
(`demo bot`, the webhook loop, is in `_bot`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from typing import TYPE_CHECKING

import click
from rich.console import Console

from acquire_async._client import AcquireClient
from acquire_async._retry import RetryPolicy

from ._common import exit_status, fail
from ._input import IdSource
from ._output import Tally, summary_lines
from ._run import Stopper, run_bulk

if TYPE_CHECKING:
    from acquire_async.testing import FakeAcquire, Faults


def faults_option(spec: str | None, seed: int) -> Faults:
    from acquire_async.testing import Faults

    if not spec:
        return Faults(seed=seed)
    try:
        options = json.loads(spec)
    except ValueError:
        fail('--faults takes a JSON object, e.g. \'{"error_rates": {"503": 0.05}}\'')
    if not isinstance(options, dict):
        fail("--faults takes a JSON object")
    options.setdefault("seed", seed)  # a "seed" in the JSON wins over --seed
    seed_value = options["seed"]
    if seed_value is not None and (isinstance(seed_value, bool) or not isinstance(seed_value, int)):
        fail(f"--faults: seed must be an integer or null, not {json.dumps(seed_value)}")
    latency = options.get("latency")
    if isinstance(latency, list):
        if len(latency) != 2:
            fail("--faults: latency must be a number or a [low, high] pair")
        options["latency"] = tuple(latency)
    try:
        if isinstance(options.get("error_rates"), dict):
            options["error_rates"] = {int(k): v for k, v in options["error_rates"].items()}
        return Faults(**options)
    except (TypeError, ValueError) as exc:
        fail(f"--faults: {exc}")


def banner(fake: FakeAcquire, default_key: bool) -> list[str]:
    """What `serve` prints once listening: the emulator's own description, with the key to
    use and a `join` command to paste. A key from `ACQUIRE_API_KEY` is never shown."""
    from acquire_async.testing._serve import describe

    example = " ".join(str(i) for i in sorted(fake.cases)[:3]) or "CASE_ID"
    command = f"acquire-async join --base-url {shlex.quote(fake.base_url)} {example}"
    if default_key:
        key = f"  api key: {fake.api_key} (the emulator's test key, not a secret)"
        command = f"ACQUIRE_API_KEY={shlex.quote(fake.api_key)} {command}"
        where = "Join from another shell:"
    else:
        key = "  api key: the key in ACQUIRE_API_KEY (not shown)"
        where = "Join from another shell, with the same key in ACQUIRE_API_KEY:"
    *lines, last = describe(fake, default_key=default_key)  # last: "Press Ctrl-C to stop."
    lines = [key if line.startswith("  api key:") else line for line in lines]
    return [*lines, where, f"  {command}", last]


async def _serve(fake: FakeAcquire, default_key: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    async with fake:
        for line in banner(fake, default_key):
            print(line, flush=True)
        await stop.wait()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--cases", default=100, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--faults", "faults_spec", help='Faults as JSON: \'{"error_rates": {"503": 0.05}}\'.')
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--already-joined", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--webhook",
    "webhook_url",
    metavar="URL",
    help="Also deliver webhooks (case:status, user:case-invite) to this URL.",
)
@click.option(
    "--webhook-secret-env",
    metavar="NAME",
    help="Sign the deliveries with the secret in this environment variable (else unsigned).",
)
@click.option("--invite", is_flag=True, help="With --webhook: invite the agent to every open case.")
def serve(
    host: str,
    port: int,
    cases: int,
    faults_spec: str | None,
    seed: int,
    already_joined: float,
    webhook_url: str | None,
    webhook_secret_env: str | None,
    invite: bool,
) -> None:
    """Run the Acquire emulator until Ctrl-C (key: env ACQUIRE_API_KEY or the test key)."""
    from acquire_async.testing import DEFAULT_API_KEY, FakeAcquire
    from acquire_async.testing._serve import announce_webhook

    faults = faults_option(faults_spec, seed)
    api_key = os.environ.get("ACQUIRE_API_KEY") or DEFAULT_API_KEY
    try:
        fake = FakeAcquire(
            cases,
            api_key=api_key,
            faults=faults,
            host=host,
            port=port,
            already_joined=already_joined,
        )
    except (TypeError, ValueError) as exc:
        fail(f"--faults: {exc}")
    if webhook_url is not None:
        secret = None
        if webhook_secret_env is not None:
            secret = os.environ.get(webhook_secret_env)
            if not secret:
                fail(f"--webhook-secret-env: {webhook_secret_env} is not set or empty")
        try:  # before start: the deliveries wait for it; the secret is never printed
            announce_webhook(fake, webhook_url, secret=secret, invite=invite)
        except (TypeError, ValueError) as exc:
            fail(f"--webhook: {exc}")
    elif webhook_secret_env is not None or invite:
        fail("--webhook-secret-env and --invite need --webhook")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(fake, api_key == DEFAULT_API_KEY))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@click.group(invoke_without_command=True)
@click.option("--cases", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seed", default=2021, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, cases: int, concurrency: int, seed: int) -> None:
    """Join waiting cases on a local emulator with light faults, over real HTTP.

    `demo bot` shows the webhook loop instead: a bot joins and greets the cases it is
    invited to.
    """
    if ctx.invoked_subcommand is not None:
        return
    from acquire_async.testing import FakeAcquire, Faults

    faults = Faults(
        seed=seed,
        latency=(0.001, 0.01),
        error_rates={503: 0.02, 429: 0.003, 500: 0.005},
        retry_after=0.25,
        drop_after_read=0.005,
    )
    screen = Console(stderr=True)
    tally = Tally()
    fake = FakeAcquire(cases, faults=faults, already_joined=0.05)
    source = IdSource(sorted(fake.cases), threaded=False)
    stopper = Stopper(source, tally, screen, grace=5.0)
    box: list[AcquireClient] = []

    async def work() -> None:
        async with fake:
            screen.print(
                f"[bold]acquire-async demo[/]: {cases} waiting cases on the emulator at "
                f"{fake.base_url}; faults: 1-10 ms latency, 2% 503, 0.3% 429 (Retry-After "
                "0.25 s), 0.5% 500, 0.5% dropped answers; 5% of cases already joined.",
                soft_wrap=True,
            )
            async with AcquireClient(
                api_key=fake.api_key,
                base_url=fake.base_url,
                retry=RetryPolicy(backoff_base=0.02, backoff_cap=0.5),
            ) as client:
                box.append(client)
                tally.started = time.monotonic()
                await run_bulk(
                    client,
                    source,
                    stopper,
                    concurrency=concurrency,
                    ask_join=True,
                    output="none",
                    out=sys.stdout,
                    tally=tally,
                    total=lambda: cases,
                )

    try:
        asyncio.run(stopper.run(work()))
    except KeyboardInterrupt:
        tally.interrupted = True
    if box:
        for line in summary_lines(tally, box[0]):
            click.echo(line, err=True)
    sys.exit(exit_status(tally))
