"""The faults the emulator can inject, and the one random stream that decides them.

`Faults` is the configuration (a frozen value, every fault off by default);
`FaultInjector` is its running state inside one `FakeAcquire`:
the seeded `random.Random`, the script of forced faults and the rate-limit window.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

__all__ = [
    "FAULT_NAMES",
    "Decision",
    "FaultInjector",
    "FaultName",
    "Faults",
    "ScriptItem",
    "check_script_item",
]

FaultName = Literal[
    "drop_before_read",
    "drop_after_read",
    "truncate",
    "malformed",
    "error_envelope_200",
    "slow_drip",
]
"""The names of the non-status faults, as used in a script and in `RecordedRequest.fault`."""

FAULT_NAMES: tuple[FaultName, ...] = get_args(FaultName)

ScriptItem: TypeAlias = FaultName | int | None
"""One forced fault: a `FaultName`, an HTTP status (400-599) or `None` (no fault)."""


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1] (got {value!r})")
    return float(value)


def _status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an injected status must be an int, not {type(value).__name__}")
    if not 400 <= value <= 599:
        raise ValueError(f"an injected status must be a 4xx or 5xx code (got {value})")
    return value


def check_script_item(item: object) -> ScriptItem:
    """Return `item` if it is a valid script entry, else raise `TypeError`/`ValueError`."""
    if item is None:
        return None
    if isinstance(item, str):
        for name in FAULT_NAMES:
            if item == name:
                return name
        raise ValueError(f"unknown fault {item!r}; expected one of {', '.join(FAULT_NAMES)}")
    return _status(item)


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Every fault is off by default.

    Probabilities are per request; at most one fault applies to a request, so they must sum
    to at most 1. All random choices come from one `random.Random(seed)`: the same seed and
    the same order of requests give the same faults and latencies (`seed=None` seeds from
    the OS).

    Attributes:
        seed: seed of the random stream.
        latency: seconds to wait before answering each request: fixed, or a `(low, high)`
            range drawn uniformly.
        error_rates: HTTP status → probability, e.g. `{503: 0.05, 500: 0.01}`. Answered
            with Acquire's error envelope (`ERROR_SERVER_ERROR` for 5xx); no state change.
        rate_limit: requests per second, counted over a sliding one-second window; a request
            above it gets 429 with `Retry-After: <retry_after>` and an error envelope.
        retry_after: the `Retry-After` value of a 429, in seconds. RFC 9110 allows whole
            seconds only; a fraction is this emulator's extension, for fast demos and tests
            (the SDK accepts it).
        drop_before_read: abort the connection before reading the request: no state change.
        drop_after_read: read the request, *apply the join*, then abort without answering:
            the ambiguous failure (a retry gets `CHAT_ALREADY_JOINED`).
        truncate: answer with a `Content-Length` larger than the body, then close (the
            join is applied).
        malformed: answer 200 with a body that is not JSON (the join is applied).
        error_envelope_200: answer 200 with `{"error": {"code": "ERROR_SERVER_ERROR", …}}`;
            no state change.
        slow_drip: send the (correct) answer `drip_bytes` at a time, `drip_interval`
            seconds apart.
        sequence: faults forced on the first requests, in order, before any random one (see
            `FakeAcquire.script`).

    Example:
        ```python
        Faults(seed=7, latency=(0.001, 0.01), error_rates={503: 0.05}, drop_after_read=0.02)
        Faults(sequence=["drop_after_read", 503, None])  # exactly these, then nothing
        ```
    """

    seed: int | None = None
    latency: float | tuple[float, float] = 0.0
    error_rates: Mapping[int, float] = field(default_factory=dict, hash=False)
    rate_limit: int | None = None
    retry_after: float = 1
    drop_before_read: float = 0.0
    drop_after_read: float = 0.0
    truncate: float = 0.0
    malformed: float = 0.0
    error_envelope_200: float = 0.0
    slow_drip: float = 0.0
    drip_interval: float = 0.01
    drip_bytes: int = 64
    sequence: Sequence[ScriptItem] = ()

    def __post_init__(self) -> None:
        low, high = self.latency_range
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
            raise ValueError(f"latency must be >= 0, as a number or (low, high): {self.latency!r}")
        rates = {
            _status(status): _probability(f"error_rates[{status}]", p)
            for status, p in dict(self.error_rates).items()
        }
        object.__setattr__(self, "error_rates", rates)
        total = sum(rates.values())
        for name in FAULT_NAMES:
            total += _probability(name, getattr(self, name))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities sum to {total:g}; at most 1 fault per request")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool)
            or not isinstance(self.rate_limit, int)
            or self.rate_limit < 1
        ):
            raise ValueError(f"rate_limit must be a positive int or None (got {self.rate_limit!r})")
        if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, (int, float)):
            raise TypeError("retry_after must be a number of seconds")
        if not (math.isfinite(self.retry_after) and self.retry_after >= 0):
            raise ValueError("retry_after must be a finite number >= 0")
        if not (math.isfinite(self.drip_interval) and self.drip_interval >= 0):
            raise ValueError("drip_interval must be >= 0")
        if isinstance(self.drip_bytes, bool) or not isinstance(self.drip_bytes, int):
            raise TypeError("drip_bytes must be an int")
        if self.drip_bytes < 1:
            raise ValueError("drip_bytes must be >= 1")
        if isinstance(self.sequence, (str, bytes)):
            raise TypeError("sequence must be a sequence of faults, not a string")
        object.__setattr__(self, "sequence", tuple(check_script_item(i) for i in self.sequence))

    @property
    def latency_range(self) -> tuple[float, float]:
        """`latency` as a `(low, high)` pair (equal ends for a fixed latency)."""
        if isinstance(self.latency, tuple):
            low, high = self.latency
            return float(low), float(high)
        return float(self.latency), float(self.latency)


@dataclass(frozen=True)
class Decision:
    """The fault chosen for one request: its label (as recorded) and, for a status, the code."""

    fault: str | None = None
    status: int | None = None

    @classmethod
    def of(cls, item: ScriptItem) -> Decision:
        """The decision for one script entry."""
        if item is None:
            return _NO_FAULT
        if isinstance(item, int):
            return cls(f"http_{item}", item)
        return cls(item)


_NO_FAULT = Decision()
_RATE_LIMITED = Decision("rate_limit", 429)


class FaultInjector:
    """The running state of a `Faults`: one seeded RNG, the script, the rate window.

    Not thread-safe; it lives on the emulator's event loop. Each admitted request makes
    exactly one `decide` call (one random draw unless scripted) and, when `latency` is
    a range, one `latency` draw, in arrival order, so the sequence depends only on the
    seed and the order of requests. Rate limiting depends on the clock, so a rate-limited
    request draws nothing and consumes no script entry.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._script: deque[ScriptItem] = deque(faults.sequence)
        self._window: deque[float] = deque()
        table: list[tuple[Decision, float]] = [
            (Decision(f"http_{status}", status), p)
            for status, p in sorted(faults.error_rates.items())
        ]
        table += [(Decision(name), float(getattr(faults, name))) for name in FAULT_NAMES]
        self._table = [(decision, p) for decision, p in table if p > 0.0]

    @property
    def scripted(self) -> int:
        """How many forced faults are still waiting."""
        return len(self._script)

    def push(self, items: Iterable[object]) -> None:
        """Force these faults on the next requests, after any still waiting."""
        checked = [check_script_item(item) for item in items]
        self._script.extend(checked)

    def admit(self, now: float) -> Decision | None:
        """`None` if a request arriving at `now` (monotonic seconds) is within the rate
        limit (and count it), else the rate-limit decision."""
        limit = self.faults.rate_limit
        if limit is None:
            return None
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= limit:
            return _RATE_LIMITED
        self._window.append(now)
        return None

    def decide(self) -> Decision:
        """The fault for the next admitted request: the next script entry, else a draw."""
        if self._script:
            return Decision.of(self._script.popleft())
        roll = self._rng.random()
        for decision, p in self._table:
            if roll < p:
                return decision
            roll -= p
        return _NO_FAULT

    def latency(self) -> float:
        """Seconds to wait before answering the next admitted request."""
        low, high = self.faults.latency_range
        return low if low == high else self._rng.uniform(low, high)
