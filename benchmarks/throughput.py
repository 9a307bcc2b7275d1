"""Benchmark 2: joins per second against a fast local server, the client being the bottleneck.

The server (:mod:`benchmarks._server`) runs in its own process and answers every join at once
with the canned payload; its CPU use is reported next to each sample to show it had room to
spare. Contenders (:mod:`benchmarks._clients`): ours (``AcquireClient.join_many``), a raw
aiohttp loop (the floor for any aiohttp-based client) and httpx, each on asyncio's own event
loop and on uvloop. Every sample is a fresh loop and a fresh client that first makes
``warmup_joins`` untimed joins (connections open, caches warm), then the timed ones.

:func:`measure_network` is shared with :mod:`benchmarks.latency`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._clients import Contender, HttpxWorkers, OursJoinMany, RawAiohttp, Tally
from ._common import Config, LoopFactory, loop_variants, run_on_loop
from ._report import Row, Section, Target, ratio
from ._server import Server, serve

__all__ = ["measure_network", "run"]

FIRST_ID = 1_000_000  # timed joins use ids from here; warm-up ids start at 1
# httpx is an order of magnitude slower at this concurrency (its pool scans every connection
# for every request), so it makes this share of the joins per sample to keep the run short.
HTTPX_SHARE = 0.1


@dataclass
class Sample:
    """One timed run of one contender."""

    tally: Tally
    seconds: float
    client_cpu: float  # CPU seconds of this process during the run
    server_cpu: float | None  # CPU seconds of the server process during the run

    @property
    def rate(self) -> float:
        """Completed joins per second (failed ones included: they cost the same round trip)."""
        return (self.tally.ok + self.tally.failed) / self.seconds


def _time_one(
    contender_class: type[Contender],
    loop_factory: LoopFactory,
    server: Server,
    *,
    joins: int,
    concurrency: int,
    warmup: int,
) -> Sample:
    async def main() -> Sample:
        async with contender_class(server.base_url(), concurrency) as contender:
            await contender.run(range(1, warmup + 1))
            gc.collect()
            server_before = server.cpu_seconds()
            cpu_before = time.process_time()
            start = time.perf_counter()
            tally = await contender.run(range(FIRST_ID, FIRST_ID + joins))
            seconds = time.perf_counter() - start
            client_cpu = time.process_time() - cpu_before
            server_after = server.cpu_seconds()
        server_cpu = None
        if server_before is not None and server_after is not None:
            server_cpu = server_after - server_before
        return Sample(tally, seconds, client_cpu, server_cpu)

    return run_on_loop(loop_factory, main)


def measure_network(
    contenders: Sequence[type[Contender]],
    config: Config,
    server: Server,
    *,
    joins: int,
    concurrency: int,
    log: Callable[[str], None],
    shares: dict[str, float] | None = None,
) -> list[Row]:
    """Time every contender on every event loop, ``config.repeats`` times, alternating.

    Returns one row per (contender, loop) with joins/s samples and, as extras, the client's and
    the server's CPU use (% of one core), the client's CPU time per join and any failed joins.
    ``shares`` scales the number of joins of the named contenders (see ``HTTPX_SHARE``).
    """
    rows: list[Row] = []
    jobs: list[tuple[Row, type[Contender], LoopFactory, int]] = []
    for contender_class in contenders:
        note = contender_class.unavailable()
        own_joins = max(1, round(joins * (shares or {}).get(contender_class.name, 1.0)))
        for loop_name, factory in loop_variants().items():
            row = Row(contender_class.name, loop_name, "joins/s", note=note)
            rows.append(row)
            if note is None and factory is None:
                row.note = f"skipped: {loop_name} is not installed"
            elif note is None and factory is not None:
                if own_joins != joins:
                    row.note = f"{own_joins:,} joins per sample"
                jobs.append((row, contender_class, factory, own_joins))

    for repeat in range(config.repeats):
        shift = repeat % max(1, len(jobs))
        for row, contender_class, factory, own_joins in jobs[shift:] + jobs[:shift]:
            if row.error:
                continue
            try:
                sample = _time_one(
                    contender_class,
                    factory,
                    server,
                    joins=own_joins,
                    concurrency=concurrency,
                    warmup=config.warmup_joins,
                )
            except Exception as exc:  # one broken contender must not hide the others
                row.error = f"error: {type(exc).__name__}: {exc}"
                log(f"  {row.contender} on {row.variant}: {row.error}")
                continue
            row.samples.append(sample.rate)
            row.add_extra("client CPU %", 100 * sample.client_cpu / sample.seconds)
            row.add_extra("client CPU µs/join", 1e6 * sample.client_cpu / own_joins)
            if sample.server_cpu is not None:
                row.add_extra("server CPU %", 100 * sample.server_cpu / sample.seconds)
            if sample.tally.failed:
                row.add_extra("failed joins", sample.tally.failed)
            log(f"  {row.contender} on {row.variant}: {sample.rate:,.0f} joins/s")
        log(f"repeat {repeat + 1}/{config.repeats} done")
    return rows


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the throughput benchmark and return its section."""
    joins, concurrency = config.throughput_joins, config.throughput_concurrency
    with serve() as server:
        rows = measure_network(
            [OursJoinMany, RawAiohttp, HttpxWorkers],
            config,
            server,
            joins=joins,
            concurrency=concurrency,
            log=lambda line: log(f"throughput: {line}"),
            shares={HttpxWorkers.name: HTTPX_SHARE},
        )
    section = Section(
        key="throughput",
        title="Throughput",
        description=(
            f"joins/s, {joins:,} joins at concurrency {concurrency} against a local server in "
            "another process that answers at once"
        ),
        params={
            "joins": joins,
            "concurrency": concurrency,
            "warmup_joins": config.warmup_joins,
            "repeats": config.repeats,
        },
        rows=rows,
        ratio_label="vs raw aiohttp",
        notes=[
            "The ratio compares each row with raw aiohttp on the same event loop.",
            "client CPU % near 100 and a low server CPU % mean the client is the bottleneck; "
            "client CPU µs/join is the cost of one join in this process.",
            f"httpx makes {HTTPX_SHARE:.0%} of the joins per sample: its connection pool "
            "scans every connection for every request, so it is far slower at this concurrency.",
        ],
    )
    for row in rows:
        floor = section.row(RawAiohttp.name, row.variant)
        row.ratio = ratio(row.median, floor.median if floor else None)
    for loop_name in loop_variants():
        ours = section.row(OursJoinMany.name, loop_name)
        section.targets.append(
            Target.at_least(
                f"ours / raw aiohttp on {loop_name}", ours.ratio if ours else None, 0.95
            )
        )
    return section
