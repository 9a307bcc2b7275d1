"""Counters, latency percentiles and hook events of a client."""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

__all__ = ["ClientStats", "RequestEvent", "ResponseEvent", "RetryEvent"]

LATENCY_WINDOW = 10_000


class ClientStats:
    """Live counters of one client (`client.stats`). Read them; the client writes them.

    - `requests`: HTTP attempts sent; `responses`: attempts that got a status back.
    - `replayed`: requests sent again at once because the pooled connection they went out
      on had been closed by the server (not attempts, not retries: the server never saw them).
    - `retries`: attempts that were retries; `rate_limited`: `429` answers.
    - `succeeded`: successful calls by operation (`{"join_chat": 980, "add_message": 3}`);
      `joined` is `succeeded["join_chat"]`.
    - `already_joined`/`failed`: calls that ended that way (any operation).
    - `errors`: failed attempts by error class name (`{"InternalServerError": 3}`).
    - `latencies`: seconds per attempt that got a response, for the last 10,000 attempts;
      `percentile` reads them.

    Example:
        ```python
        print(client.stats.as_dict())
        p99 = client.stats.percentile(99)
        ```
    """

    __slots__ = (
        "already_joined",
        "errors",
        "failed",
        "latencies",
        "rate_limited",
        "replayed",
        "requests",
        "responses",
        "retries",
        "succeeded",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.responses = 0
        self.replayed = 0
        self.retries = 0
        self.rate_limited = 0
        self.succeeded: Counter[str] = Counter()
        self.already_joined = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def note_replay(self) -> None:
        """Count one replay (the transport's `on_replay`)."""
        self.replayed += 1

    @property
    def joined(self) -> int:
        """Joins that succeeded (`succeeded["join_chat"]`)."""
        return self.succeeded["join_chat"]

    def percentile(self, q: float) -> float | None:
        """The `q`-th percentile (0-100, nearest rank) of recent latencies, in seconds."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100 (got {q})")
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot, with p50/p95/p99 latencies in milliseconds."""

        def ms(q: float) -> float | None:
            value = self.percentile(q)
            return None if value is None else round(value * 1000, 3)

        return {
            "requests": self.requests,
            "responses": self.responses,
            "replayed": self.replayed,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "joined": self.joined,
            "succeeded": dict(self.succeeded),
            "already_joined": self.already_joined,
            "failed": self.failed,
            "errors": dict(self.errors),
            "latency_ms": {"p50": ms(50), "p95": ms(95), "p99": ms(99)},
        }

    def __repr__(self) -> str:
        return (
            f"ClientStats(requests={self.requests}, replayed={self.replayed}, "
            f"retries={self.retries}, "
            f"rate_limited={self.rate_limited}, errors={dict(self.errors)})"
        )


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """Passed to `on_request` before an attempt is sent.

    `operation` names what the call does (`"join_chat"`, `"add_message"`…).
    """

    method: str
    url: str
    case_id: int
    attempt: int
    operation: str = "join_chat"


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """Passed to `on_response` after every attempt.

    `status` is `None` when no response arrived; `error` is the attempt's error, if any.
    """

    method: str
    url: str
    case_id: int
    attempt: int
    status: int | None
    elapsed: float
    error: BaseException | None
    operation: str = "join_chat"


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Passed to `on_retry` before the client sleeps `delay` seconds and tries again."""

    case_id: int
    attempt: int
    delay: float
    error: BaseException
    operation: str = "join_chat"
