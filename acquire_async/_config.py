"""Value objects that configure the client: `Timeouts`."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Timeouts"]


def check_seconds(label: str, value: object) -> float | None:
    """`value` as a float if it is a finite number of seconds > 0; `None` stays `None`.

    Every duration the client takes (the `Timeouts` fields, a call's `timeout=`) goes
    through here, so they all refuse the same things with the same words.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{label} must be a number of seconds or None, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{label} must be a finite number of seconds > 0 (got {value!r})")
    return float(value)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits of one HTTP attempt, in seconds (`None` disables one).

    Defaults: `connect=10`, `read=None`, `pool=30`, `total=60`: every attempt is
    bounded (by `total`), and the hot path arms no timer it does not need.

    - `connect`: establishing the TCP (and TLS) connection.
    - `read`: the longest silence between two reads of the response. Off by default:
      aiohttp re-arms this timer on every chunk it reads, which cost about 6% of the CPU of
      a join in `benchmarks/`, and `total` bounds every attempt anyway. Set it to notice a
      stalled server sooner. A server that drips one byte at a time resets it forever, so
      only `total` stops that one.
    - `pool`: waiting for a pooled connection *plus* connecting (aiohttp cannot time the
      two separately). The client's own concurrency slot is taken before the attempt's timers
      start, so queueing behind other joins is never reported as a server timeout.
    - `total`: the whole attempt, from sending to the last byte of the body.

    A per-call `timeout=` on `join_chat` is a deadline across *all* attempts and backoff
    sleeps; these limits apply to each attempt inside it.

    Example:
        ```python
        AcquireClient(timeout=Timeouts(connect=2, read=10, total=15))
        AcquireClient(timeout=5)  # a bare number sets ``total`` and keeps the other defaults
        ```
    """

    connect: float | None = 10.0
    read: float | None = None
    pool: float | None = 30.0
    total: float | None = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "pool", "total"):
            check_seconds(f"Timeouts.{name}", getattr(self, name))

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        """`Timeouts` as given, a number as `Timeouts(total=number)`, `None` as defaults."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        return cls(total=check_seconds("Timeouts.total", value))
