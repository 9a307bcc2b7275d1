"""Benchmark 3: latency-bound efficiency, when the server takes 20 ms to answer each join.

With ``C`` joins in flight and a server latency ``L``, no client can beat ``C / L`` joins per
second (100 / 0.020 s = 5,000/s). A client that keeps every slot busy gets close to it; one
that leaves gaps between a response and the next request (or queues work behind its own CPU
cost) falls short. Reported: achieved joins/s and the efficiency, achieved ÷ ``C / L``, for
ours and raw aiohttp on both event loops. Same machinery as :mod:`benchmarks.throughput`.

A third contender measures the ceiling: a bare ``asyncio.Protocol`` client with no HTTP
library and no decoding (:class:`~benchmarks._clients.BareProtocol`). What it misses of
``C / L`` is lost to the server's timers, the kernel and the event loop, not to client CPU,
so no client can do better here; the notes give each client's share of that ceiling.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from ._clients import BareProtocol, OursJoinMany, RawAiohttp
from ._common import Config, loop_variants
from ._report import Section, Target
from ._server import serve
from .throughput import measure_network

__all__ = ["run"]


def run(config: Config, log: Callable[[str], None]) -> Section:
    """Run the latency benchmark and return its section."""
    joins, concurrency, delay = (
        config.latency_joins,
        config.latency_concurrency,
        config.latency_delay,
    )
    ideal = concurrency / delay
    with serve(delay=delay) as server:
        rows = measure_network(
            [OursJoinMany, RawAiohttp, BareProtocol],
            config,
            server,
            joins=joins,
            concurrency=concurrency,
            log=lambda line: log(f"latency: {line}"),
        )
    for row in rows:
        row.ratio = None if row.median is None else row.median / ideal
    section = Section(
        key="latency",
        title="Latency-bound efficiency",
        description=(
            f"joins/s, {joins:,} joins at concurrency {concurrency} against a server that "
            f"answers after {delay * 1000:g} ms; ideal C/L = {ideal:,.0f} joins/s"
        ),
        params={
            "joins": joins,
            "concurrency": concurrency,
            "server_delay_s": delay,
            "ideal_joins_per_s": ideal,
            "warmup_joins": config.warmup_joins,
            "repeats": config.repeats,
        },
        rows=rows,
        ratio_label="÷ ideal C/L",
        notes=["The ratio column is the efficiency: achieved joins/s ÷ (C / L)."],
    )
    section.notes += _explain(section, concurrency, delay)
    for loop_name in loop_variants():
        # The ceiling's own line shows whether the target can be met on this machine at all.
        for name in (OursJoinMany.name, RawAiohttp.name, BareProtocol.name):
            found = section.row(name, loop_name)
            section.targets.append(
                Target.at_least(
                    f"{name} efficiency on {loop_name}", found.ratio if found else None, 0.97, ""
                )
            )
    return section


def _explain(section: Section, concurrency: int, delay: float) -> list[str]:
    """Notes that put the efficiencies in context: ours vs raw aiohttp, and the CPU ceiling."""
    notes = []
    for loop_name in loop_variants():
        ours = section.row(OursJoinMany.name, loop_name)
        floor = section.row(RawAiohttp.name, loop_name)
        ceiling = section.row(BareProtocol.name, loop_name)
        if ours and floor and ours.ratio is not None and floor.ratio:
            notes.append(
                f"On {loop_name}, ours reaches {ours.ratio / floor.ratio:.2f}x the efficiency "
                "of raw aiohttp."
            )
        if ours and ceiling and ours.ratio is not None and ceiling.ratio:
            notes.append(
                f"On {loop_name}, the bare-protocol ceiling is {ceiling.ratio:.3f} of C/L: that "
                "much is all the server, kernel and loop leave to any client. Ours reaches "
                f"{ours.ratio / ceiling.ratio:.2f} of that ceiling"
                + (
                    f", raw aiohttp {floor.ratio / ceiling.ratio:.2f}."
                    if floor and floor.ratio is not None
                    else "."
                )
            )
    floor = section.row(RawAiohttp.name, "asyncio")
    cpu = floor.extra.get("client CPU µs/join") if floor else None
    ceiling = section.row(BareProtocol.name, "asyncio")
    bare_cpu = ceiling.extra.get("client CPU µs/join") if ceiling else None
    if cpu:
        per_join = statistics.median(cpu) / 1e6
        lockstep = delay / (delay + concurrency * per_join / 2)
        needed = 2 * delay * (1 / 0.97 - 1) / concurrency * 1e6
        notes.append(
            f"Why no client reaches 0.97 here: each join costs the client about "
            f"{per_join * 1e6:.0f} µs of CPU (raw aiohttp), so one round of {concurrency} "
            f"answers needs {concurrency * per_join * 1000:.1f} ms of CPU against "
            f"L = {delay * 1000:g} ms, and answers that arrive together wait behind each other "
            "before their next join goes out. Fully in lock-step that gives "
            f"L / (L + C*t/2) = {lockstep:.2f}; rounds drift apart, so measured values are "
            f"higher, but 0.97 would need roughly {needed:.0f} µs of CPU per join"
            + (
                f" (the bare protocol spends {statistics.median(bare_cpu):.0f} µs, and still "
                "falls short: the rest is the server's timers and the machine's wake-ups)."
                if bare_cpu
                else "."
            )
        )
    return notes
