"""`acquire-async bot`: receive Acquire's webhooks and join (and greet) the chats they announce.

The receiver is `acquire_async.bot.Bot` on `aiohttp.web`: it answers each delivery as
soon as its signature and body check out and does the work afterwards. Every thing it does is
one JSON line on stdout (the bot's records); the banner and the summary go to stderr. SIGINT or
SIGTERM stops it gracefully: no new deliveries, the work in hand finished (or dropped after
`--shutdown-grace` seconds, and counted), the client closed; exit status 0.

The webhook secret is read from the environment variable `--secret-env` names, never from the
command line (where `ps` would show it), and is never printed. A bot without a secret accepts
unsigned deliveries only when asked to with `--no-verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from aiohttp import web
from yarl import URL

from acquire_async._client import AcquireClient
from acquire_async._secrets import Secret

from ._account import account_options, make_client
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, Command, fail
from ._operations import text_option

if TYPE_CHECKING:
    from acquire_async.bot import Bot

DEFAULT_SECRET_ENV = "ACQUIRE_WEBHOOK_SECRET"


def read_secret(secret_env: str, no_verify: bool) -> Secret[str] | None:
    """The webhook secret from the environment variable `secret_env`, held out of sight;
    `None` only with `--no-verify`. A one-line error (exit 2) otherwise, before anything
    listens."""
    if no_verify:
        return None
    secret = Secret(os.environ.get(secret_env, ""))
    if not secret.reveal():
        fail(
            f"no webhook secret: set {secret_env} (the HMAC key of the Acquire webhook), "
            "or pass --no-verify to accept unsigned deliveries"
        )
    if secret.reveal() != secret.reveal().strip():
        # Used as is, as Acquire would: but a stray newline from a file is the usual cause
        # of every delivery failing with 401, so say so.
        click.echo(
            f"acquire-async bot: warning: {secret_env} has leading or trailing whitespace; "
            "it is used as is",
            err=True,
        )
    return secret


def json_lines(
    out: Any = None, on_closed: Callable[[], None] | None = None
) -> Callable[[dict[str, Any]], None]:
    """A record sink that prints each record as one JSON line, flushed (a pipe sees it now).
    When the reader is gone (`bot | head -1`) it calls `on_closed` once and prints no more.
    """
    closed = False

    def emit(record: dict[str, Any]) -> None:
        nonlocal closed
        if closed:
            return
        stream = out or sys.stdout
        try:
            stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
            stream.flush()
        except BrokenPipeError:
            closed = True
            if on_closed is not None:
                on_closed()

    return emit


async def serve_bot(
    bot: Bot,
    *,
    host: str,
    port: int,
    path: str,
    shutdown_grace: float,
    ready: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    """Serve `bot` on `host:port` until `stop` is set, then close it: deliveries get 503
    while the work in hand finishes, for up to `shutdown_grace` seconds. `ready` gets the
    URL once the socket listens."""
    # A sender stalled mid-body must not hold the exit for aiohttp's default 60 s: the bot
    # already answered or dropped everything it accepted when the runner is cleaned up.
    runner = web.AppRunner(bot.app(path=path), handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        ready(str(URL.build(scheme="http", host=host, port=bound, path=path)))
        await stop.wait()
        await bot.aclose(timeout=shutdown_grace)  # before the app's cleanup closes it sooner
    finally:
        await runner.cleanup()


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--path", default="/", show_default=True, help="URL path of the webhook.")
@click.option(
    "--secret-env",
    default=DEFAULT_SECRET_ENV,
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the webhook's HMAC secret.",
)
@click.option("--no-verify", is_flag=True, help="Accept unsigned deliveries (no secret).")
@click.option(
    "--join-on",
    multiple=True,
    metavar="EVENT[=STATUS]",
    help="Join the case of this event, or of this event with this status (repeatable; "
    "default: user:case-invite).",
)
@click.option("--no-join", is_flag=True, help="Join nothing: only log what arrives.")
@click.option("--greet", metavar="TEXT", help="Message to post after each new join.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--backlog", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--shutdown-grace", default=30.0, show_default=True, type=click.FloatRange(0, 3600))
@account_options
def bot(
    host: str,
    port: int,
    path: str,
    secret_env: str,
    no_verify: bool,
    join_on: tuple[str, ...],
    no_join: bool,
    greet: str | None,
    concurrency: int,
    backlog: int,
    shutdown_grace: float,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
) -> None:
    """Receive Acquire's webhooks; join (and greet) the chats they announce. JSON lines out."""
    from acquire_async.bot import DEFAULT_AUTO_JOIN, Bot, JoinRule

    if no_join and join_on:
        fail("--no-join and --join-on do not go together")
    if not path.startswith("/"):
        fail(f"--path must start with '/': {path!r}")
    auto_join = () if no_join else (join_on or DEFAULT_AUTO_JOIN)
    for rule in auto_join:
        try:
            JoinRule.parse(rule)
        except ValueError as exc:
            words = str(exc).replace("auto_join entries", "--join-on")
            fail(words.replace("auto_join", "--join-on"))
    greeting = text_option("--greet", greet)
    secret = read_secret(secret_env, no_verify)
    # aiohttp answers malformed HTTP (bad chunk framing…) itself and logs each one at ERROR
    # with a traceback: anyone who can reach the port could fill stderr with them. The bot's
    # own handler catches everything, so nothing of ours is hidden by this.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    client = make_client(account, base_url, api_key_file)
    pipe_closed = False

    async def run() -> dict[str, int]:
        nonlocal pipe_closed
        stop = asyncio.Event()

        def closed() -> None:
            nonlocal pipe_closed
            pipe_closed = True
            stop.set()  # nobody reads what the bot does any more: stop it

        async with client:
            bot = Bot(
                client,
                secret.reveal() if secret is not None else None,
                auto_join=auto_join,
                greeting=greeting,
                concurrency=concurrency,
                backlog=backlog,
                on_record=json_lines(on_closed=closed),
            )

            def on_signal() -> None:
                if not stop.is_set():
                    stop.set()
                    return
                # A second Ctrl-C: do not wait out --shutdown-grace.
                click.echo(
                    f"acquire-async bot: forced stop; {bot.queued + bot.running} accepted "
                    "event(s) not finished",
                    err=True,
                )
                sys.stdout.flush()
                os._exit(EXIT_INTERRUPTED)

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, on_signal)

            def ready(url: str) -> None:
                joins = ", ".join(auto_join) or "nothing"
                checks = "signatures checked" if secret is not None else "signatures NOT checked"
                click.echo(
                    f"acquire-async bot: listening on {url}; joining on {joins}; {checks}",
                    err=True,
                )

            await serve_bot(
                bot,
                host=host,
                port=port,
                path=path,
                shutdown_grace=shutdown_grace,
                ready=ready,
                stop=stop,
            )
            return bot.stats.as_dict()

    try:
        stats = asyncio.run(run())
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    if pipe_closed:
        raise BrokenPipeError  # the group's handler: quiet, exit status 141
    shown = ", ".join(f"{name} {count}" for name, count in stats.items() if count)
    click.echo(f"acquire-async bot: stopped; {shown or 'nothing received'}", err=True)
    if stats["dropped"]:
        click.echo(
            f"acquire-async bot: {stats['dropped']} accepted event(s) were not finished "
            "within --shutdown-grace",
            err=True,
        )
        sys.exit(EXIT_FAILED)


GREETING = "Hi! I'm the demo bot. How can I help?"


@click.command("bot", cls=Command)
@click.option("--cases", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=2021, show_default=True, type=int)
@click.option("--records", is_flag=True, help="Print the bot's records as JSON lines on stdout.")
def demo_bot(cases: int, seed: int, records: bool) -> None:
    """A bot on the emulator: cases arrive, signed invites are delivered (some twice, some
    late), the bot joins and greets each case once; a summary at the end."""
    from acquire_async._retry import RetryPolicy
    from acquire_async.bot import Bot
    from acquire_async.testing import FakeAcquire, Faults, WebhookFaults

    secret = secrets.token_hex(16)
    api_faults = Faults(seed=seed, latency=(0.001, 0.01), error_rates={503: 0.02})
    hook_faults = WebhookFaults(duplicate=0.1, reorder=0.1, seed=seed)
    stats: dict[str, int] = {}
    report: dict[str, Any] = {}

    async def work() -> None:
        async with (
            FakeAcquire(0, faults=api_faults) as fake,
            AcquireClient(
                api_key=fake.api_key,
                base_url=fake.base_url,
                retry=RetryPolicy(backoff_base=0.02, backoff_cap=0.5),
            ) as client,
        ):
            bot = Bot(
                client,
                secret,
                auto_join=("user:case-invite",),
                greeting=GREETING,
                on_record=json_lines() if records else None,
            )
            runner = web.AppRunner(bot.app(path="/acquire"), handle_signals=False)
            await runner.setup()
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                url = f"http://127.0.0.1:{runner.addresses[0][1]}/acquire"
                click.echo(
                    f"acquire-async demo bot: a bot listening on {url}; {cases} cases arrive "
                    "on the emulator, each with a signed user:case-invite (10% delivered "
                    "twice, 10% late); the API answers 2% 503.",
                    err=True,
                )
                fake.add_webhook(
                    url,
                    secret=secret,
                    events=("user:case-invite", "case:status"),
                    faults=hook_faults,
                )
                started = time.monotonic()
                ids = []
                for number in range(cases):
                    ids.append(fake.add_case()["id"])
                    fake.invite(ids[-1])
                    if number % 50 == 49:
                        await asyncio.sleep(0.01)  # cases arrive over time, not all at once
                # A join changes the case's status, which is delivered too: settle when a
                # whole round of waiting brought the bot nothing new.
                seen = -1
                while seen != bot.stats.deliveries:
                    seen = bot.stats.deliveries
                    await fake.webhooks_idle(timeout=120)
                    while bot.queued or bot.running:  # noqa: ASYNC110 (no event to await)
                        await asyncio.sleep(0.01)
                await bot.aclose(timeout=60)
                report["seconds"] = time.monotonic() - started
            finally:
                await runner.cleanup()
            stats.update(bot.stats.as_dict())
            report["joined"] = sum(1 for i in ids if fake.is_joined(i))
            report["greeted_once"] = sum(1 for i in ids if len(fake.messages(i)) == 1)
            report["greeted_twice"] = sum(1 for i in ids if len(fake.messages(i)) > 1)
            report["deliveries"] = len(fake.deliveries)

    try:
        asyncio.run(work())
    except KeyboardInterrupt:
        sys.exit(130)
    click.echo(
        f"{cases} cases: {report['joined']} joined, {report['greeted_once']} greeted once, "
        f"{report['greeted_twice']} greeted twice, in {report['seconds']:.1f} s",
        err=True,
    )
    click.echo(
        f"webhooks: {report['deliveries']} delivery attempts; the bot accepted "
        f"{stats['accepted']}, answered {stats['duplicates']} duplicates without running them "
        f"again, joined {stats['joined']} (already joined {stats['already_joined']}), "
        f"greeted {stats['greeted']}; failures: {stats['join_failed']} joins, "
        f"{stats['greet_failed']} greetings",
        err=True,
    )
    ok = report["joined"] == cases and report["greeted_once"] == cases
    sys.exit(0 if ok else 1)
