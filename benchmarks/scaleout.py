"""Benchmark 5: scaling out over processes, and the cost of sharing the rate limit in Redis.

Four measures in one run, against the fast benchmark server (:mod:`benchmarks._server`) and a
private ``redis-server`` on a free port (no persistence: this measures the SDK and the queue,
not the disk):

1. **Aggregate joins/s with 1 and 2 OS processes**, each with one ``AcquireClient`` doing
   ``join_many`` over its share of the ids: with ``LocalThrottle`` (no limit) and with
   ``RedisThrottle`` (no limit, and a limit far above what the processes can do). The child
   processes (``python -m benchmarks.scaleout --child``) stay up for the whole section; for each
   sample they open a fresh client, make their warm-up joins, wait at a barrier and start
   together. joins/s = all joins / (last end - first start).
2. **The worker fleet end to end**: ``run_workers(processes=N)`` in its own session, warmed up
   with a first batch; then ids are enqueued and timed from the first ``enqueue`` to the moment
   ``JoinQueue.wait`` sees nothing pending, so the queue's own cost is in the figure.
3. **Rate-limit accuracy**: 2 processes share ``RedisThrottle(rate_limit=R)``; every request's
   send time is taken in the client's ``on_request`` hook with ``time.monotonic()`` (one clock
   for every process of the machine); the report gives the busiest and the mean 1-s window
   against R, and the run's length against N / R.
4. **CPU per join**: the client processes' CPU time (``time.process_time()`` around the timed
   joins) and ``redis-server``'s (``INFO cpu``), per join; the throttle's Redis round trips per
   join (``RedisThrottle.round_trips``) and how many joins missed its fast path; and the client
   CPU of one round trip on its own (``max_lease=1``: every ``acquire`` is a refill).

Without ``redis-server``, the ``redis`` package or ``acquire_async.contrib.redis``, the rows
that need them are skipped with a note; the ``LocalThrottle`` rows always run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from ._clients import API_KEY
from ._common import REPO_ROOT, Config, run_on_loop
from ._report import Row, Section, Target, ratio
from ._server import Server, serve

__all__ = ["main", "run", "window_counts"]

FIRST_ID = 1_000_000  # timed joins use ids from here; warm-up ids start at 1
HIGH_LIMIT = 1_000_000.0  # requests/s: far above what two processes can do on any machine
MAX_PROCESSES = 2
REPLY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Sizes:
    """The section's own sizes (the shared :class:`Config` gives concurrency, warm-up, repeats).

    Half the throughput section's joins per sample: there are six process samples per repeat.
    """

    joins: int  # per process sample, over all its processes
    fleet_ids: int  # ids per timed fleet batch
    fleet_warmup: int  # ids of the untimed first batch (processes started, connections open)
    fleet_repeats: int
    accuracy_joins: int  # N: R x the run's length
    accuracy_samples: int
    refills: int  # round trips of the refill sample
    fleet_chunk: int = 100
    fleet_concurrency: int = 64
    accuracy_rate: float = 1000.0  # R, requests/s, well below capacity
    window: float = 1.0

    @classmethod
    def of(cls, config: Config) -> Sizes:
        """Full sizes, or tiny ones for ``--smoke`` (the accuracy run still spans a window)."""
        if config.smoke:
            return cls(config.throughput_joins, 400, 100, 1, 1_200, 1, 100)
        return cls(
            config.throughput_joins // 2, 10_000, 2_000, min(config.repeats, 3), 5_000, 2, 2_000
        )


@dataclass(frozen=True)
class Kind:
    """A throttle to measure: ``local`` (``LocalThrottle``) or ``redis`` (``RedisThrottle``)."""

    name: str
    throttle: str
    rate_limit: float | None


LOCAL = Kind("LocalThrottle, no limit", "local", None)
REDIS_OPEN = Kind("RedisThrottle, no limit", "redis", None)
REDIS_HIGH = Kind(f"RedisThrottle, limit {HIGH_LIMIT:,.0f}/s", "redis", HIGH_LIMIT)
KINDS = (LOCAL, REDIS_OPEN, REDIS_HIGH)
FLEET = "worker fleet: run_workers + JoinQueue"
REFILL = "RedisThrottle refill, client side"


def _variant(processes: int) -> str:
    return "1 process" if processes == 1 else f"{processes} processes"


# --------------------------------------------------------------------------- the child side


def _make_throttle(command: dict[str, Any]) -> Any:
    """The sample's throttle, counting the calls that missed the fast path (``waits``).

    The engine calls ``acquire()`` only when ``try_acquire()`` said no: that coroutine, its
    place in the queue and its wake-up are the slow path. The subclasses add one frame to it
    and nothing to the fast path, the same for both kinds.
    """
    if command["throttle"] != "redis":
        from acquire_async import LocalThrottle

        class CountingLocal(LocalThrottle):
            waits = 0

            async def acquire(self) -> None:
                self.waits += 1
                await super().acquire()

        return CountingLocal(command["rate_limit"])
    from acquire_async.contrib.redis import RedisThrottle

    class CountingRedis(RedisThrottle):
        waits = 0

        async def acquire(self) -> None:
            self.waits += 1
            await super().acquire()

    return CountingRedis(command["redis_url"], rate_limit=command["rate_limit"], key=command["key"])


def _system_seconds() -> float:
    """This process's CPU seconds in the kernel: the share of its CPU time spent in syscalls
    (``epoll_wait`` once per event-loop iteration, socket reads and writes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


async def _child_run(command: dict[str, Any], stdin: IO[str]) -> dict[str, Any]:
    """One sample in a child: open, warm up, report ready, wait for ``go``, join, report."""
    from acquire_async import AcquireClient

    throttle = _make_throttle(command)
    times: list[float] = []
    hook = None
    if command["record"]:
        clock = time.monotonic
        append = times.append

        def hook(event: object) -> None:
            append(clock())

    concurrency = command["concurrency"]
    try:
        async with AcquireClient(
            api_key=API_KEY,
            base_url=command["base_url"],
            max_concurrency=concurrency,
            on_request=hook,
            throttle=throttle,
        ) as client:

            async def join(ids: range) -> tuple[int, int]:
                ok = failed = 0
                async with client.join_many(ids, concurrency=concurrency) as outcomes:
                    async for outcome in outcomes:
                        if outcome.ok:
                            ok += 1
                        else:
                            failed += 1
                return ok, failed

            await join(range(1, command["warmup"] + 1))
            times.clear()
            gc.collect()
            print(json.dumps({"ready": True}), flush=True)
            if json.loads(stdin.readline() or "{}").get("go") is not True:
                raise RuntimeError("the parent did not say go")
            trips_before = getattr(throttle, "round_trips", 0)
            waits_before = throttle.waits
            cpu_before = time.process_time()
            sys_before = _system_seconds()
            started = time.monotonic()
            ok, failed = await join(range(command["first"], command["first"] + command["count"]))
            ended = time.monotonic()
            cpu = time.process_time() - cpu_before
            system = _system_seconds() - sys_before
            trips = getattr(throttle, "round_trips", 0) - trips_before
            waits = throttle.waits - waits_before
    finally:
        if hasattr(throttle, "aclose"):
            await throttle.aclose()
    return {
        "started": started,
        "ended": ended,
        "cpu": cpu,
        "system": system,
        "ok": ok,
        "failed": failed,
        "round_trips": trips if command["throttle"] == "redis" else None,
        "waits": waits,
        "times": times,
    }


def child_main() -> None:
    """The child's loop: one JSON command a line on stdin, one JSON answer a line on stdout."""
    stdin = sys.stdin
    while True:
        line = stdin.readline()
        if not line:
            return  # the parent is gone
        command = json.loads(line)
        if command.get("quit"):
            return
        try:
            answer = run_on_loop(asyncio.new_event_loop, partial(_child_run, command, stdin))
        except Exception as exc:  # reported to the parent, which marks the row
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


# --------------------------------------------------------------------------- the parent side


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class Child:
    """A child process spoken to in JSON lines; its stderr goes to a file for error reports."""

    def __init__(self, directory: Path, index: int) -> None:
        self.errors = directory / f"child{index}.err"
        with self.errors.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.scaleout", "--child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd=REPO_ROOT,
                env=_child_env(),
            )
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The next JSON line, or ``RuntimeError`` (with the child's stderr) if none comes."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                tail = self.errors.read_text(errors="replace").strip().splitlines()[-1:]
                why = "no answer in time" if not ready else "it exited"
                raise RuntimeError(f"a child process failed ({why}): {' '.join(tail)}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.send({"quit": True})
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Children:
    """The pool of child processes; a sample that fails replaces them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.spawned = 0
        self.live: list[Child] = []

    def take(self, count: int) -> list[Child]:
        while len(self.live) < count:
            self.live.append(Child(self.directory, self.spawned))
            self.spawned += 1
        return self.live[:count]

    def reset(self) -> None:
        for child in self.live:
            child.stop()
        self.live = []


def _cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux only, else ``None``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _session_cpu(session: int) -> float | None:
    """CPU seconds of every live process in session ``session`` (a fleet and its workers)."""
    total, found = 0.0, False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            found = True
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if found else None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# --------------------------------------------------------------------------- redis-server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """A private ``redis-server`` on a free loopback port, in a temp dir, no persistence."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                str(directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(directory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_ready(self, directory: Path) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (directory / "redis.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"redis-server exited at start: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def cpu_seconds(self) -> float | None:
        """redis-server's CPU seconds so far: ``INFO cpu`` (µs; ``/proc`` counts 10-ms ticks)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"INFO cpu\r\n")
                reply = b""
                while b"\r\n" not in reply or len(reply) < _bulk_size(reply):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except (OSError, ValueError):
            return _cpu_of(self.process.pid)
        fields = dict(
            line.split(":", 1)
            for line in reply.decode("ascii", "replace").splitlines()
            if ":" in line
        )
        try:
            return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])
        except (KeyError, ValueError):
            return _cpu_of(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _bulk_size(reply: bytes) -> int:
    """The whole length of a RESP bulk string whose header (``$N\\r\\n``) is in ``reply``."""
    head, _, _ = reply.partition(b"\r\n")
    return len(head) + 2 + int(head[1:]) + 2


def _redis_missing() -> str | None:
    """Why the Redis rows cannot run here (a skip note), or ``None``."""
    if _redis_binary() is None:
        return "skipped: redis-server not found (Debian/Ubuntu: apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "skipped: the redis extra is not installed (pip install 'acquire-async[redis]')"
    try:
        from acquire_async.contrib.redis import RedisThrottle  # noqa: F401
    except ImportError as exc:
        return f"skipped: acquire_async.contrib.redis does not import ({exc})"
    return None


def _fleet_missing() -> str | None:
    try:
        import acquire_async.worker  # noqa: F401
    except ImportError as exc:
        return f"skipped: acquire_async.worker does not import ({exc})"
    return None


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found is None and os.path.exists("/usr/bin/redis-server"):
        found = "/usr/bin/redis-server"
    return found


# --------------------------------------------------------------------------- 1 and 4: processes


@dataclass
class Sample:
    """One timed run of 1 or 2 child processes."""

    joins: int
    failed: int
    seconds: float
    client_cpu: float
    client_system: float  # the kernel's part of client_cpu
    server_cpu: float | None
    redis_cpu: float | None
    round_trips: int | None
    waits: int  # acquire() calls: joins that missed the throttle's fast path
    times: list[float]

    @property
    def rate(self) -> float:
        return self.joins / self.seconds


def _sample(
    children: list[Child],
    kind: Kind,
    *,
    server: Server,
    redis: RedisProcess | None,
    joins: int,
    concurrency: int,
    warmup: int,
    record: bool = False,
) -> Sample:
    """Run ``joins`` joins split over ``children``, started together after a barrier."""
    key = f"bench-{uuid.uuid4().hex[:12]}"  # a fresh rate schedule for every sample
    share, extra = divmod(joins, len(children))
    first = FIRST_ID
    for index, child in enumerate(children):
        count = share + (1 if index < extra else 0)
        child.send(
            {
                "throttle": kind.throttle,
                "rate_limit": kind.rate_limit,
                "redis_url": redis.url if redis is not None else None,
                "key": key,
                "base_url": server.base_url(),
                "concurrency": concurrency,
                "warmup": warmup,
                "first": first,
                "count": count,
                "record": record,
            }
        )
        first += count
    for child in children:
        child.receive()  # ready: warmed up, waiting at the barrier
    server_before = server.cpu_seconds()
    redis_before = redis.cpu_seconds() if redis is not None else None
    for child in children:
        child.send({"go": True})
    answers = [child.receive() for child in children]
    server_cpu = _delta(server_before, server.cpu_seconds())
    redis_cpu = _delta(redis_before, redis.cpu_seconds() if redis is not None else None)
    trips = [a["round_trips"] for a in answers]
    return Sample(
        joins=sum(a["ok"] + a["failed"] for a in answers),
        failed=sum(a["failed"] for a in answers),
        seconds=max(a["ended"] for a in answers) - min(a["started"] for a in answers),
        client_cpu=sum(a["cpu"] for a in answers),
        client_system=sum(a["system"] for a in answers),
        server_cpu=server_cpu,
        redis_cpu=redis_cpu,
        round_trips=None if None in trips else sum(trips),
        waits=sum(a["waits"] for a in answers),
        times=sorted(t for a in answers for t in a["times"]),
    )


def _measure_processes(
    config: Config,
    sizes: Sizes,
    server: Server,
    redis: RedisProcess | None,
    children: Children,
    rows: dict[tuple[str, int], Row],
    log: Callable[[str], None],
) -> None:
    joins, concurrency = sizes.joins, config.throughput_concurrency
    jobs = [key for key, row in rows.items() if row.note is None]
    for repeat in range(config.repeats):
        shift = repeat % max(1, len(jobs))
        for name, processes in jobs[shift:] + jobs[:shift]:
            row = rows[name, processes]
            if row.error:
                continue
            kind = next(k for k in KINDS if k.name == name)
            try:
                sample = _sample(
                    children.take(processes),
                    kind,
                    server=server,
                    redis=redis,
                    joins=joins,
                    concurrency=concurrency,
                    warmup=config.warmup_joins,
                )
            except (RuntimeError, OSError, ValueError) as exc:
                row.error = f"error: {type(exc).__name__}: {exc}"
                log(f"  {name}, {row.variant}: {row.error}")
                children.reset()
                continue
            row.samples.append(sample.rate)
            row.add_extra("client CPU µs/join", 1e6 * sample.client_cpu / sample.joins)
            row.add_extra("client CPU %", 100 * sample.client_cpu / sample.seconds / processes)
            row.add_extra("of which kernel µs/join", 1e6 * sample.client_system / sample.joins)
            if sample.server_cpu is not None:
                row.add_extra("server CPU %", 100 * sample.server_cpu / sample.seconds)
            if sample.redis_cpu is not None and kind.throttle == "redis":
                row.add_extra("redis CPU µs/join", 1e6 * sample.redis_cpu / sample.joins)
            if sample.round_trips is not None:
                row.add_extra("round trips/join", sample.round_trips / sample.joins)
            row.add_extra("acquire() waits/join", sample.waits / sample.joins)
            if sample.failed:
                row.add_extra("failed joins", sample.failed)
            log(f"  {name}, {row.variant}: {sample.rate:,.0f} joins/s")
        log(f"repeat {repeat + 1}/{config.repeats} done")


# --------------------------------------------------------------------------- 2: the fleet

_FLEET_PROGRAM = (
    "import sys\n"
    "from acquire_async.worker import WorkerSettings, run_workers\n"
    "sys.exit(run_workers(WorkerSettings.from_env(), processes=int(sys.argv[1]),"
    " log_level='WARNING'))\n"
)


@contextlib.contextmanager
def _fleet(processes: int, settings: Any, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``run_workers(processes=…)`` in its own session; SIGTERM to the session after."""
    env = {**_child_env(), **settings.to_env(), "ACQUIRE_API_KEY": API_KEY}
    with (directory / f"fleet{processes}.log").open("wb") as log:
        fleet = subprocess.Popen(
            [sys.executable, "-c", _FLEET_PROGRAM, str(processes)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield fleet
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fleet.pid, signal.SIGTERM)
        try:
            fleet.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(fleet.pid, signal.SIGKILL)
            fleet.wait(timeout=10)


def _measure_fleet(
    processes: int,
    sizes: Sizes,
    server: Server,
    redis: RedisProcess,
    row: Row,
    directory: Path,
    log: Callable[[str], None],
) -> None:
    from acquire_async.worker import JoinQueue, WorkerSettings

    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    settings = WorkerSettings(
        redis_url=redis.url,
        namespace=namespace,
        base_url=server.base_url(),
        concurrency=sizes.fleet_concurrency,
    )
    timeout = 60 + sizes.fleet_ids / 500

    async def batches(fleet: subprocess.Popen[bytes]) -> None:
        async with JoinQueue(redis.url, namespace=namespace) as queue:
            await queue.enqueue(range(1, sizes.fleet_warmup + 1), chunk=sizes.fleet_chunk)
            await queue.wait(poll=0.05, timeout=timeout)
            first = FIRST_ID
            for repeat in range(sizes.fleet_repeats):
                ids = range(first, first + sizes.fleet_ids)
                first += sizes.fleet_ids
                fleet_before = _session_cpu(fleet.pid)
                redis_before = redis.cpu_seconds()
                cpu_before = time.process_time()
                started = time.perf_counter()
                await queue.enqueue(ids, chunk=sizes.fleet_chunk)
                counts = await queue.wait(poll=0.02, timeout=timeout)
                seconds = time.perf_counter() - started
                producer = time.process_time() - cpu_before
                fleet_cpu = _delta(fleet_before, _session_cpu(fleet.pid))
                redis_cpu = _delta(redis_before, redis.cpu_seconds())
                joins = len(ids)
                row.samples.append(joins / seconds)
                if fleet_cpu is not None:
                    row.add_extra("client CPU µs/join", 1e6 * fleet_cpu / joins)
                if redis_cpu is not None:
                    row.add_extra("redis CPU µs/join", 1e6 * redis_cpu / joins)
                row.add_extra("producer CPU µs/join", 1e6 * producer / joins)
                if counts.dead:
                    row.add_extra("failed joins", counts.dead)
                log(f"  {FLEET}, {row.variant}: {joins / seconds:,.0f} joins/s")
                log(f"repeat {repeat + 1}/{sizes.fleet_repeats} done")

    try:
        with _fleet(processes, settings, directory) as fleet:
            asyncio.run(batches(fleet))
    except (RuntimeError, OSError, TimeoutError) as exc:
        tail = (directory / f"fleet{processes}.log").read_text(errors="replace")
        last = tail.strip().splitlines()[-1:] or [""]
        row.error = f"error: {type(exc).__name__}: {exc} {last[0]}".strip()
        log(f"  {FLEET}, {row.variant}: {row.error}")


# --------------------------------------------------------------------------- 3: accuracy


def window_counts(times: list[float], window: float = 1.0, step: float = 0.01) -> tuple[int, float]:
    """The busiest and the mean number of ``times`` in a ``window``-long span within the run.

    ``times`` is sorted. The busiest window starts at an event (no other start can hold more);
    the mean is over starts every ``step`` seconds. Both consider only windows that lie inside
    the run (from the first time to the last).

    >>> window_counts([0.0, 0.5, 1.0, 1.5, 2.0])
    (2, 2.0)
    """
    if len(times) < 2 or times[-1] - times[0] < window:
        raise ValueError("the run is shorter than one window")
    last = times[-1] - window
    busiest = 0
    for index, start in enumerate(times):
        if start > last:
            break
        busiest = max(busiest, bisect.bisect_left(times, start + window) - index)
    counts = []
    start = times[0]
    while start <= last:
        counts.append(bisect.bisect_left(times, start + window) - bisect.bisect_left(times, start))
        start += step
    return busiest, statistics.fmean(counts)


def _measure_accuracy(
    config: Config,
    sizes: Sizes,
    server: Server,
    redis: RedisProcess,
    children: Children,
    row: Row,
    log: Callable[[str], None],
) -> None:
    rate = sizes.accuracy_rate
    kind = Kind(row.contender, "redis", rate)
    for _ in range(sizes.accuracy_samples):
        try:
            sample = _sample(
                children.take(MAX_PROCESSES),
                kind,
                server=server,
                redis=redis,
                joins=sizes.accuracy_joins,
                concurrency=config.throughput_concurrency,
                warmup=min(config.warmup_joins, 32),  # warm-up joins are throttled too
                record=True,
            )
            busiest, mean = window_counts(sample.times, sizes.window)
        except (RuntimeError, OSError, ValueError) as exc:
            row.error = f"error: {type(exc).__name__}: {exc}"
            log(f"  {row.contender}: {row.error}")
            children.reset()
            return
        span = sample.times[-1] - sample.times[0]
        ideal = (len(sample.times) - 1) / rate  # N requests are N - 1 intervals of 1/R
        row.samples.append(busiest / sizes.window)
        row.add_extra("mean 1-s window", mean / sizes.window)
        row.add_extra("busiest ÷ R", busiest / sizes.window / rate)
        row.add_extra("mean ÷ R", mean / sizes.window / rate)
        row.add_extra("run time ÷ N/R", span / ideal)
        row.add_extra("client CPU µs/join", 1e6 * sample.client_cpu / sample.joins)
        if sample.redis_cpu is not None:
            row.add_extra("redis CPU µs/join", 1e6 * sample.redis_cpu / sample.joins)
        if sample.round_trips is not None:
            row.add_extra("round trips/join", sample.round_trips / sample.joins)
        if sample.failed:
            row.add_extra("failed joins", sample.failed)
        log(
            f"  {row.contender}: busiest 1-s window {busiest}, mean {mean:.0f}, "
            f"run {span:.2f} s vs N/R {ideal:.2f} s"
        )


# --------------------------------------------------------------------------- 4: a round trip


def _measure_refill(
    sizes: Sizes, redis: RedisProcess, row: Row, log: Callable[[str], None]
) -> None:
    """The CPU one refill costs, in this process and in redis-server.

    With ``max_lease=1`` every ``acquire`` is one refill: one round trip, the Lua script, the
    task that runs it and the waiter it wakes. Multiplied by a row's round trips per join, this
    is the throttle's share of a join's CPU, which is too small to tell apart in the client's
    CPU per join on a noisy machine.
    """
    from acquire_async.contrib.redis import RedisThrottle

    async def refills() -> tuple[float, float | None, int]:
        throttle = RedisThrottle(
            redis.url, rate_limit=HIGH_LIMIT, key=f"bench-{uuid.uuid4().hex[:12]}", max_lease=1
        )
        try:
            for _ in range(50):  # connection open, script loaded
                await throttle.acquire()
            gc.collect()
            trips = throttle.round_trips
            redis_before = redis.cpu_seconds()
            cpu_before = time.process_time()
            for _ in range(sizes.refills):
                await throttle.acquire()
            cpu = time.process_time() - cpu_before
            redis_cpu = _delta(redis_before, redis.cpu_seconds())
            return cpu, redis_cpu, throttle.round_trips - trips
        finally:
            await throttle.aclose()

    for _ in range(3):
        try:
            cpu, redis_cpu, trips = run_on_loop(asyncio.new_event_loop, refills)
        except (RuntimeError, OSError) as exc:
            row.error = f"error: {type(exc).__name__}: {exc}"
            log(f"  {row.contender}: {row.error}")
            return
        row.samples.append(1e6 * cpu / trips)
        if redis_cpu is not None:
            row.add_extra("redis CPU µs/round trip", 1e6 * redis_cpu / trips)
        log(f"  {row.contender}: {1e6 * cpu / trips:.0f} µs of CPU a round trip")


# --------------------------------------------------------------------------- the section


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the scale-out benchmark and return its section."""
    sizes = Sizes.of(config)
    say = lambda line: log(f"scaleout: {line}")  # noqa: E731
    redis_note = _redis_missing()
    fleet_note = redis_note or _fleet_missing()
    rows: dict[tuple[str, int], Row] = {}
    for kind in KINDS:
        for processes in (1, MAX_PROCESSES):
            note = redis_note if kind.throttle == "redis" else None
            rows[kind.name, processes] = Row(kind.name, _variant(processes), "joins/s", note=note)
    fleet_rows = {p: Row(FLEET, _variant(p), "joins/s", note=fleet_note) for p in (1, 2)}
    limited = f"RedisThrottle, limit {sizes.accuracy_rate:,.0f}/s"
    accuracy = Row(limited, _variant(MAX_PROCESSES), "req/s, busiest 1-s window", note=redis_note)
    refill = Row(REFILL, "1 process", "µs CPU/round trip", note=redis_note)
    load_before = _load()

    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp, serve() as server:
        directory = Path(tmp)
        redis: RedisProcess | None = None
        if redis_note is None:
            binary = _redis_binary()
            assert binary is not None
            try:
                redis = RedisProcess(binary, directory)
            except RuntimeError as exc:
                for row in [*rows.values(), *fleet_rows.values(), accuracy, refill]:
                    if row.note is None and row.contender != LOCAL.name:
                        row.error = f"error: {exc}"
        children = Children(directory)
        try:
            live = {k: r for k, r in rows.items() if not r.error}
            _measure_processes(config, sizes, server, redis, children, live, say)
            if redis is not None and accuracy.note is None:
                _measure_accuracy(config, sizes, server, redis, children, accuracy, say)
            children.reset()  # their CPU is not the fleet's
            if redis is not None:
                _measure_refill(sizes, redis, refill, say)
                for processes, row in fleet_rows.items():
                    if row.note is None:
                        _measure_fleet(processes, sizes, server, redis, row, directory, say)
        finally:
            children.reset()
            if redis is not None:
                redis.stop()

    section = Section(
        key="scaleout",
        title="Scaling out",
        description=(
            f"joins/s of 1 and {MAX_PROCESSES} OS processes, {sizes.joins:,} joins in all at "
            f"concurrency {config.throughput_concurrency} per process, against a local server "
            "that answers at once; a worker fleet draining a queue; a shared rate limit"
        ),
        params={
            "joins": sizes.joins,
            "concurrency": config.throughput_concurrency,
            "warmup_joins": config.warmup_joins,
            "repeats": config.repeats,
            "fleet_ids": sizes.fleet_ids,
            "fleet_repeats": sizes.fleet_repeats,
            "fleet_chunk": sizes.fleet_chunk,
            "fleet_concurrency": sizes.fleet_concurrency,
            "rate_limit": sizes.accuracy_rate,
            "rate_limited_joins": sizes.accuracy_joins,
            "load_average_before": load_before,
            "load_average_after": _load(),
        },
        rows=[*rows.values(), *fleet_rows.values(), accuracy, refill],
        ratio_label="vs LocalThrottle",
        notes=[
            f"The ratio compares a row with {LOCAL.name} at the same number of processes.",
            f"usable cores: {_usable_cores()}; the client processes share them with the "
            "benchmark server and redis-server (and whatever else runs: see the load average "
            "in the parameters), so 2 processes cannot reach 2x here.",
            "client CPU µs/join: CPU time of the client processes (for the fleet: every "
            "process of run_workers) over the timed joins; of which kernel: its system time "
            "(an epoll_wait per event-loop iteration, socket I/O); client CPU %: per process, "
            "of one core; redis CPU µs/join: redis-server's (INFO cpu).",
            "The fleet is timed from the first enqueue to nothing pending (polled every "
            f"20 ms), ids in chunks of {sizes.fleet_chunk}, concurrency "
            f"{sizes.fleet_concurrency} per process; producer CPU is this process's.",
            f"The rate-limited row: {sizes.accuracy_joins:,} joins over 2 processes at "
            f"R = {sizes.accuracy_rate:,.0f}/s, burst 1, send times from on_request; "
            "samples are the busiest 1-s window.",
            "acquire() waits/join: joins that missed the throttle's fast path (try_acquire) "
            "and awaited acquire(): a coroutine, a place in its queue and a wake-up each.",
            f"{REFILL}: RedisThrottle(max_lease=1), so every acquire is one refill.",
        ],
    )
    section.notes += _throttle_share(rows, refill)
    _targets(section, rows, fleet_rows, accuracy)
    return section


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "-"


def _throttle_share(rows: dict[tuple[str, int], Row], refill: Row) -> list[str]:
    """Notes: each RedisThrottle row's round trips per join times the CPU of one round trip."""
    if refill.median is None:
        return []
    notes = []
    for kind in (REDIS_OPEN, REDIS_HIGH):
        row = rows[kind.name, 1]
        trips = row.extra.get("round trips/join")
        if trips:
            per_join = statistics.median(trips) * refill.median
            notes.append(
                f"{kind.name}, 1 process: {statistics.median(trips):.4f} round trips a join x "
                f"{refill.median:.0f} µs a round trip = {per_join:.1f} µs of client CPU a join "
                "for the shared throttle."
            )
    return notes


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def _targets(
    section: Section,
    rows: dict[tuple[str, int], Row],
    fleet_rows: dict[int, Row],
    accuracy: Row,
) -> None:
    for (_, processes), row in rows.items():
        local = rows[LOCAL.name, processes]
        row.ratio = ratio(row.median, local.median)
    for processes, row in fleet_rows.items():
        row.ratio = ratio(row.median, rows[LOCAL.name, processes].median)
    for kind in (LOCAL, REDIS_HIGH):
        one, two = rows[kind.name, 1], rows[kind.name, MAX_PROCESSES]
        section.targets.append(
            Target.at_least(
                f"{kind.name}: {MAX_PROCESSES} processes / 1", ratio(two.median, one.median), 1.6
            )
        )
    one, two = fleet_rows[1], fleet_rows[MAX_PROCESSES]
    section.targets.append(
        Target.at_least(f"{FLEET}: 2 processes / 1", ratio(two.median, one.median), 1.6)
    )
    for processes in (1, MAX_PROCESSES):
        section.targets.append(
            Target.at_least(
                f"{REDIS_HIGH.name} / LocalThrottle, {_variant(processes)}",
                rows[REDIS_HIGH.name, processes].ratio,
                0.85,
            )
        )
    busiest = accuracy.extra.get("busiest ÷ R")
    mean = accuracy.extra.get("mean ÷ R")
    span = accuracy.extra.get("run time ÷ N/R")
    section.targets += [
        Target.at_most(
            f"{accuracy.contender}: busiest 1-s window ÷ R (worst sample)",
            max(busiest) if busiest else None,
            1.05,
        ),
        Target.at_least(
            f"{accuracy.contender}: mean 1-s window ÷ R (worst sample)",
            min(mean) if mean else None,
            0.95,
        ),
        Target.at_most(
            f"{accuracy.contender}: run time ÷ N/R (worst sample)",
            max(span) if span else None,
            1.05,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Entry point of a child process (``--child``): see :func:`child_main`."""
    parser = argparse.ArgumentParser(description="A scale-out benchmark child (internal).")
    parser.add_argument("--child", action="store_true", required=True)
    parser.parse_args(argv)
    child_main()


if __name__ == "__main__":
    main()
