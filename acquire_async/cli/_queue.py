"""`acquire-async enqueue`, `worker`, `results`, `queue` and `dead`: the queue
workers of `acquire_async.worker` from the shell.

They need the `redis` extra as well as `cli`; without it each prints a one-line hint
(exit 2). Every one takes `--redis URL` (env `ACQUIRE_REDIS_URL`) and `--namespace`.
The URL's password is a secret: messages name the Redis by `host:port` only, and any text
that could quote the URL (a library's error) has the password masked before it is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from acquire_async._checks import validate_case_id

from ._account import account_options, make_client, read_key
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Command, fail, reason
from ._input import argument_lines, count_ids, decode_lines, parse_ids
from ._output import PipeConsole

if TYPE_CHECKING:
    from acquire_async.worker import JoinQueue, QueueCounts, Result
    from acquire_async.worker._store import Status

__all__ = [
    "EXTRA_HINT",
    "LineReader",
    "dead",
    "enqueue",
    "queue",
    "redis_where",
    "results",
    "worker",
]

EXTRA_HINT = "pip install 'acquire-async[cli,redis]'"
"""What to install for these commands (`click` and `rich`; `redis` and `taskiq`)."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

STATUSES = ("queued", "joined", "already_joined", "dead")

# The library's parameter names, as the command's user knows them.
_FLAGS = {
    "redis_url": "--redis",
    "namespace": "--namespace",
    "account_id": "--account",
    "base_url": "--base-url",
    "concurrency": "--concurrency",
    "rate_limit": "--rate-limit",
    "burst": "--burst",
    "max_generations": "--max-generations",
    "idle_timeout": "--idle-timeout",
    "chunks_per_process": "--chunks-per-process",
    "shutdown_grace": "--shutdown-grace",
    "processes": "--processes",
    "chunk": "--chunk",
}


# --------------------------------------------------------------------------- options


def redis_options(command: F) -> F:
    """Add `--redis` (env `ACQUIRE_REDIS_URL`) and `--namespace` to a command.

    Example:
        ```python
        @click.command(cls=Command)
        @redis_options
        def results(redis_url, namespace): ...
        ```
    """
    command = click.option(
        "--namespace",
        default="acquire",
        show_default=True,
        help="Prefix of the queue's Redis keys (one queue per namespace).",
    )(command)
    return click.option(
        "--redis",
        "redis_url",
        envvar="ACQUIRE_REDIS_URL",
        metavar="URL",
        help="The queue's Redis: redis://[:PASSWORD@]HOST:PORT/DB (env ACQUIRE_REDIS_URL; "
        "prefer the env for a password).",
    )(command)


class SettingOption(click.Option):
    """A `worker` option for a `WorkerSettings` field (the
    option's name): `--help` shows the library's default, read when the help is shown, so
    the two never disagree and the `redis` extra is imported only then.

    Example:
        ```text
        @click.option("--burst", cls=SettingOption, type=click.IntRange(1, 1000))
        ```
    """

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        default = _setting_default(self.name or "")
        if record is None or default is None:
            return record
        return record[0], f"{record[1]}  [default: {default}]"


def _setting_default(name: str) -> str | None:
    try:
        import msgspec

        from acquire_async.worker import WorkerSettings
    except ImportError:
        return None
    for field in msgspec.structs.fields(WorkerSettings):
        if field.name == name and field.default is not msgspec.NODEFAULT:
            return "none" if field.default is None else f"{field.default:g}"
    return None


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


_FLAG_NAMES = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b")


def _in_flags(message: str) -> str:
    """A library message worded with the flags: `"burst must be >= 1"` gives
    `"--burst must be >= 1"`."""
    return _FLAG_NAMES.sub(lambda match: _FLAGS[match[1]], message)


# --------------------------------------------------------------------------- Redis


def _need_extra() -> None:
    # Only the missing libraries are the extra's fault: any other ImportError is a bug and
    # keeps its traceback.
    try:
        import redis  # noqa: F401
        import taskiq  # noqa: F401
        import taskiq_redis  # noqa: F401
    except ImportError:
        fail(f"this command needs the 'redis' extra: {EXTRA_HINT}")


def redis_where(url: str) -> str:
    """Where `url` points, for messages: `host:port` (or a socket's path), never the
    credentials.

    Example: `redis_where("redis://:hunter2@db.internal/0")` is `"db.internal:6379"`.
    """
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "?"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
        # redis-py also takes the password in the query (the only way for a unix:// socket).
        in_query = [v for k, v in parse_qsl(parts.query) if k.strip().lower() == "password"]
    except ValueError:
        password, in_query = None, []
    if password is None:  # an unparsable authority: mask all of it
        authority = url.partition("://")[2].partition("/")[0]
        password = authority.rpartition("@")[0] or None
    found = [p for p in (password, *in_query) if p]
    if not found:
        return []
    quoted = [part for p in found for part in (p, unquote(p), quote(p, safe=""))]
    return sorted({*quoted, url}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def redis_problem(exc: BaseException, url: str) -> str:
    """A one-line message for a Redis error, naming `host:port`, the password masked."""
    from redis.exceptions import AuthenticationError, ResponseError

    where = redis_where(url)
    detail = _scrub(str(exc) or type(exc).__name__, url)
    if isinstance(exc, AuthenticationError):
        if not _secrets(url):
            return (
                f"Redis at {where} requires a password: give it in the URL "
                f"(redis://:PASSWORD@{where}/0) ({detail})"
            )
        return f"Redis at {where} refused the credentials: {detail}"
    if isinstance(exc, ResponseError):
        return f"Redis at {where} answered an error: {detail}"
    return f"cannot reach Redis at {where}: {detail} (check --redis or ACQUIRE_REDIS_URL)"


def need_url(redis_url: str | None) -> str:
    """The `--redis` URL, or a one-line error when there is none."""
    _need_extra()
    if not redis_url:
        fail("no Redis: pass --redis URL or set ACQUIRE_REDIS_URL")
    return redis_url


def open_queue(redis_url: str | None, namespace: str) -> tuple[JoinQueue, str]:
    """A `JoinQueue` for the options (no I/O yet), and its URL; a bad option is a one-line
    error naming its flag."""
    url = need_url(redis_url)
    from acquire_async.worker import JoinQueue

    try:
        return JoinQueue(url, namespace=namespace), url
    except (TypeError, ValueError) as exc:
        fail(_scrub(_in_flags(str(exc)), url))


def run_redis(url: str, work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`; a Redis error ends the command with one line (exit 2)."""
    from redis.exceptions import RedisError

    try:
        return asyncio.run(work)
    except BrokenPipeError:
        raise
    except (RedisError, OSError) as exc:
        fail(redis_problem(exc, url))


# --------------------------------------------------------------------------- output


def result_json(result: Result) -> str:
    """One result as a JSON line (ASCII only, like every line of this CLI).

    Example: `{"case_id":1684,"status":"joined","generation":0,"attempts":1,...}`.
    """
    import msgspec

    raw = msgspec.json.encode(result)
    if raw.isascii():
        return raw.decode()
    # Non-ASCII text (an invalid line, a server's message) is escaped: bidi controls and
    # C1 characters must not reach a terminal.
    return json.dumps(msgspec.to_builtins(result), separators=(",", ":"))


def counts_json(counts: QueueCounts) -> str:
    """The counts as one JSON line, with their `total`."""
    return json.dumps(
        {
            "queued": counts.queued,
            "joined": counts.joined,
            "already_joined": counts.already_joined,
            "dead": counts.dead,
            "total": counts.total,
        }
    )


class _Bar:
    """A transient progress line on `screen` when it is a terminal; nothing otherwise."""

    def __init__(self, screen: Console, label: str) -> None:
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            TextColumn("{task.fields[text]}"),
            console=screen,
            transient=True,
            disable=not screen.is_terminal,
        )
        self.task = self.progress.add_task(label, total=None, text="")
        self.started = time.monotonic()
        self._shown = 0.0

    def show(self, completed: int, total: int | None, text: str, *, force: bool = False) -> None:
        if self.progress.disable:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.1:
            return
        self._shown = now
        self.progress.update(self.task, completed=completed, total=total, text=text)


def _rate(done: int, since: float) -> float:
    return done / max(time.monotonic() - since, 1e-9)


# --------------------------------------------------------------------------- enqueue


class LineReader:
    """Items of a blocking iterable (the lines of stdin), read by a daemon thread and taken
    by the event loop in batches.

    The thread appends to a buffer under a lock and wakes the loop only when the buffer was
    empty, so an id costs no hop between the threads (one per id would cost more than the
    enqueueing itself); it waits while `limit` items wait (backpressure). `stop`
    ends the batches at once, even while the thread waits for input that has not come: what
    was read before is still handed over. `error`: the exception the input failed with.

    Example:
        ```python
        reader = LineReader(parse_ids(decode_lines(fd)), limit=10_000)
        async for batch in reader.batches():
            ...
        ```
    """

    def __init__(self, items: Iterable[Any], *, limit: int) -> None:
        self.error: BaseException | None = None
        self._items = items
        self._limit = limit
        self._buffer: deque[Any] = deque()
        self._lock = threading.Condition()
        self._ended = False
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Hand over what was read, then end (call it on the loop's thread)."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._wake.set()

    async def batches(self) -> AsyncIterator[list[Any]]:
        """The items read so far, each time some are there, until the input or `stop`
        ends them."""
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, name="acquire-async-input", daemon=True).start()
        while True:
            with self._lock:
                batch = list(self._buffer)
                self._buffer.clear()
                ended = self._ended or self._stopped
                self._wake.clear()
                self._lock.notify_all()
            if batch:
                yield batch
            elif ended:
                return
            else:
                await self._wake.wait()

    def _pump(self) -> None:
        try:
            for item in self._items:
                with self._lock:
                    while len(self._buffer) >= self._limit and not self._stopped:
                        self._lock.wait()
                    if self._stopped:
                        return
                    self._buffer.append(item)
                    first = len(self._buffer) == 1
                if first:
                    self._notify()
        except BaseException as exc:  # the input failed: the loop reports it
            self.error = exc
        finally:
            with self._lock:
                self._ended = True
            self._notify()

    def _notify(self) -> None:
        if self._loop is not None:
            # The loop is closed once the command is over; the thread may outlive it.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)


class _Invalid:
    """Counts the items that are not case ids (the queue records them dead at once)."""

    def __init__(self) -> None:
        self.count = 0

    def check(self, item: Any) -> Any:
        try:
            validate_case_id(item)
        except (TypeError, ValueError):
            self.count += 1
        return item


async def _each(batches: AsyncIterable[list[Any]], invalid: _Invalid) -> AsyncIterator[Any]:
    async for batch in batches:
        for item in batch:
            yield invalid.check(item)


@click.command(cls=Command)
@click.argument("case_ids", nargs=-1)
@click.option(
    "--from",
    "from_file",
    type=click.File("rb"),
    help="File of ids, one a line (UTF-8); - = stdin.",
)
@click.option(
    "--chunk",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Ids per chunk (one stream entry, one task).",
)
@redis_options
def enqueue(
    case_ids: tuple[str, ...],
    from_file: IO[bytes] | None,
    chunk: int,
    redis_url: str | None,
    namespace: str,
) -> None:
    """Put case ids on the queue: CASE_ID… or --from FILE. Prints {"enqueued": N}."""
    if bool(case_ids) == (from_file is not None):
        fail("give case ids as arguments or --from FILE (one of the two)")
    join_queue, url = open_queue(redis_url, namespace)
    screen = PipeConsole(stderr=True)
    invalid = _Invalid()
    total: Callable[[], int | None] = lambda: None  # noqa: E731
    reader: LineReader | None = None
    if from_file is None:
        ids = [invalid.check(item) for item in parse_ids(argument_lines(case_ids))]
        total = lambda: len(ids)  # noqa: E731
    else:
        # Read by a thread: a pipe that stays open never blocks the loop or Ctrl-C.
        fd = from_file.fileno()
        reader = LineReader(parse_ids(decode_lines(fd)), limit=max(10 * chunk, 10_000))
        if screen.is_terminal:
            total = count_ids(fd) or total
    bar = _Bar(screen, "enqueueing")
    taken = 0
    interrupted = aborted = False

    def progress(n: int) -> None:
        nonlocal taken
        taken = n
        known = total()
        text = f"{n:,}" + (f"/{known:,}" if known is not None else "")
        bar.show(n, known, f"{text} · {_rate(n, bar.started):,.0f}/s")

    async def work() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal() -> None:
            # The first stops the input: the ids read so far are still put on the queue, so
            # the count printed is exact. The second cancels.
            nonlocal interrupted, aborted
            if interrupted and task is not None:
                aborted = True
                task.cancel()
            interrupted = True
            if reader is not None:
                reader.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
        try:
            async with join_queue:
                with bar.progress:
                    source = ids if reader is None else _each(reader.batches(), invalid)
                    return await join_queue.enqueue(source, chunk=chunk, on_progress=progress)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    try:
        taken = run_redis(url, work())
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = aborted = True
    click.echo(json.dumps({"enqueued": taken}))
    if invalid.count:
        were = "invalid id was" if invalid.count == 1 else "invalid ids were"
        click.echo(
            f"{invalid.count:,} {were} recorded dead at once (acquire-async dead lists them)",
            err=True,
        )
    if reader is not None and reader.error is not None:
        fail(f"cannot read the ids: {reason(reader.error)}")
    if interrupted:
        if aborted:
            what = f"{taken:,} ids were enqueued; the chunk in hand may or may not have been"
        else:
            what = f"the {taken:,} ids read were enqueued; the rest of the input was not read"
        click.echo(f"interrupted: {what}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK)


# --------------------------------------------------------------------------- results, dead


def _print_results(url: str, join_queue: JoinQueue, status: str | None, dead_only: bool) -> None:
    async def work() -> None:
        async with join_queue:
            stream = (
                join_queue.dead()
                if dead_only
                else join_queue.results(status=cast("Status | None", status))
            )
            async for result in stream:
                sys.stdout.write(result_json(result) + "\n")
        sys.stdout.flush()

    run_redis(url, work())


@click.command(cls=Command)
@click.option("--status", type=click.Choice(STATUSES), help="Only the ids in this status.")
@redis_options
def results(status: str | None, redis_url: str | None, namespace: str) -> None:
    """Every id's latest result, as JSON Lines on stdout."""
    join_queue, url = open_queue(redis_url, namespace)
    _print_results(url, join_queue, status, dead_only=False)


@click.command(cls=Command)
@click.option("--requeue", is_flag=True, help="Put the dead ids back on the queue instead.")
@redis_options
def dead(requeue: bool, redis_url: str | None, namespace: str) -> None:
    """List the dead letters as JSON Lines, or --requeue them (prints {"requeued": N})."""
    join_queue, url = open_queue(redis_url, namespace)
    if not requeue:
        _print_results(url, join_queue, None, dead_only=True)
        return

    async def work() -> int:
        async with join_queue:
            return await join_queue.requeue_dead()

    click.echo(json.dumps({"requeued": run_redis(url, work())}))


# --------------------------------------------------------------------------- queue


@click.command(cls=Command)
@click.option("--wait", is_flag=True, help="Wait until no id is pending (a progress bar).")
@click.option(
    "--poll",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 3600, min_open=True),
    callback=_finite,
    help="Seconds between two looks at the counts, with --wait.",
)
@redis_options
def queue(wait: bool, poll: float, redis_url: str | None, namespace: str) -> None:
    """The queue's counts as one JSON line; exit 1 when some ids are dead."""
    join_queue, url = open_queue(redis_url, namespace)
    screen = PipeConsole(stderr=True)
    bar = _Bar(screen, "joining")
    first: list[int] = []  # done at the first look, for the rate
    last: list[QueueCounts] = []

    def progress(counts: QueueCounts) -> None:
        last[:] = [counts]
        if not first:
            first.append(counts.done)
        rate = _rate(counts.done - first[0], bar.started)
        parts = [f"{counts.done:,}/{counts.total:,}", f"{counts.dead:,} dead", f"{rate:,.0f}/s"]
        if rate > 0:
            left = counts.pending / rate
            parts.append(f"ETA {int(left // 60)}:{int(left % 60):02d}")
        bar.show(counts.done, counts.total, " · ".join(parts))

    async def work() -> QueueCounts:
        async with join_queue:
            if not wait:
                return await join_queue.counts()
            with bar.progress:
                return await join_queue.wait(poll=poll, on_progress=progress)

    try:
        counts = run_redis(url, work())
    except KeyboardInterrupt:
        if last:
            click.echo(counts_json(last[0]))
        sys.exit(EXIT_INTERRUPTED)
    click.echo(counts_json(counts))
    sys.exit(EXIT_FAILED if counts.dead else EXIT_OK)


# --------------------------------------------------------------------------- worker


@click.command(cls=Command)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Worker processes on this machine.",
)
@click.option(
    "--concurrency",
    cls=SettingOption,
    type=click.IntRange(1, 10_000),
    help="Joins in flight per process.",
)
@click.option(
    "--rate-limit",
    cls=SettingOption,
    type=click.FloatRange(0, 1e9, min_open=True),
    callback=_finite,
    help="Requests per second for the whole account, shared by every worker.",
)
@click.option(
    "--burst",
    cls=SettingOption,
    type=click.IntRange(1, 1_000_000),
    help="Requests that may go back to back under --rate-limit.",
)
@click.option(
    "--max-generations",
    cls=SettingOption,
    type=click.IntRange(1, 1000),
    help="Trips through the queue for a transient failure before it is dead.",
)
@click.option(
    "--idle-timeout",
    cls=SettingOption,
    type=click.FloatRange(0, 7 * 86_400, min_open=True),
    callback=_finite,
    help="Seconds before a killed worker's chunk is redone by another.",
)
@click.option(
    "--chunks-per-process",
    cls=SettingOption,
    type=click.IntRange(1, 1000),
    help="Chunks a process works on at once.",
)
@click.option(
    "--shutdown-grace",
    cls=SettingOption,
    type=click.FloatRange(0, 86_400, min_open=True),
    callback=_finite,
    help="On SIGTERM, seconds a chunk in hand may take before it goes back to the queue.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@account_options
@redis_options
def worker(
    processes: int,
    concurrency: int | None,
    rate_limit: float | None,
    burst: int | None,
    max_generations: int | None,
    idle_timeout: float | None,
    chunks_per_process: int | None,
    shutdown_grace: float | None,
    log_level: str,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    redis_url: str | None,
    namespace: str,
) -> None:
    """Run worker processes that join the queued ids, until SIGTERM or Ctrl-C."""
    url = need_url(redis_url)
    from acquire_async.worker import WorkerSettings, run_workers

    # The account options are checked as `join` checks them (no request is made); the key
    # reaches the worker processes through their environment, never an argument.
    make_client(account, base_url, api_key_file)
    key = read_key(api_key_file)
    given: dict[str, Any] = {
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "burst": burst,
        "max_generations": max_generations,
        "idle_timeout": idle_timeout,
        "chunks_per_process": chunks_per_process,
        "shutdown_grace": shutdown_grace,
    }
    try:
        settings = WorkerSettings(
            redis_url=url,
            namespace=namespace,
            account_id=account or None,
            base_url=base_url,
            **{name: value for name, value in given.items() if value is not None},
        )
    except (TypeError, ValueError) as exc:
        fail(_scrub(_in_flags(str(exc)), url))
    run_redis(url, _ping(url))
    os.environ["ACQUIRE_API_KEY"] = key
    sys.stdout.flush()
    sys.exit(run_workers(settings, processes=processes, log_level=log_level))


async def _ping(url: str) -> None:
    # Fail at once on a wrong URL or password; once running, workers wait Redis out.
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()
