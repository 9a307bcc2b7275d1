"""When to try again: `RetryPolicy`, full-jitter backoff and the retry budget."""

from __future__ import annotations

import math
from collections import UserString
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import (
    AcquireError,
    AlreadyJoinedError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    InternalServerError,
    InvalidCaseIdError,
    ResponseDecodeError,
    ThrottleUnavailableError,
)

__all__ = ["RetryBudget", "RetryPolicy", "did_not_act", "is_transient", "retry_delay"]

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses by which a server says it did not act on the request: 408 (it never got all of
# it), 429 (refused for the rate), 503 (not handled). A 500, 502 or 504 may follow an action.
NOT_ACTED_STATUSES = frozenset({408, 429, 503})


def _positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"RetryPolicy.{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"RetryPolicy.{name} must be a finite number (got {value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        qualifier = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"RetryPolicy.{name} must be {qualifier} (got {value!r})")


def _statuses(value: object) -> frozenset[int]:
    # A str is an iterable too: "503" would become {"5", "0", "3"}, match no status and turn
    # retries off without a word. Refuse text, and anything that is not an int status.
    if isinstance(value, (str, bytes, bytearray, memoryview, UserString)) or not isinstance(
        value, Iterable
    ):
        raise TypeError(
            "RetryPolicy.retry_statuses must be an iterable of int statuses, "
            f"not {type(value).__name__}"
        )
    statuses = tuple(value)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(
                f"RetryPolicy.retry_statuses items must be ints, not {type(status).__name__}"
            )
        if not 100 <= status <= 599:
            raise ValueError(f"RetryPolicy.retry_statuses items must be 100..599 (got {status})")
    return frozenset(statuses)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried (each operation's retry safety narrows it: see `is_retryable`).

    - `max_attempts`: attempts per call, the first included (`1` disables retries).
    - Backoff with full jitter: before retry *n* (1, 2, …) sleep
      `uniform(0, min(backoff_cap, backoff_base * 2 ** (n - 1)))`.
    - `Retry-After` (on 429, 503…) replaces the backoff when present; above
      `max_retry_after` the call fails fast with the error (`RateLimitError.retry_after`
      says how long the server asked for).
    - Retried: connection errors (refused, reset, a stale keep-alive connection), timeouts and
      the statuses in `retry_statuses` (408, 429, 500, 502, 503, 504; any iterable of ints
      in 100..599, stored as a `frozenset`). Never: other 4xx, TLS/certificate errors,
      decode errors.
    - The retry budget (as botocore's retry quota): a client-wide bucket of `budget` tokens;
      a retry costs `retry_cost` (`timeout_cost` after a timeout), a success puts
      `success_refund` back. An empty bucket means fail fast with the last error, so a 5xx
      storm over 10,000 concurrent joins does not turn into 40,000 requests.

    A wrong type raises `TypeError` (`retry_statuses="503"`, `budget="5"`), a wrong value
    `ValueError` (`max_attempts=0`, `retry_statuses={700}`, a negative or non-finite
    number).

    Example:
        ```python
        AcquireClient(retry=RetryPolicy(max_attempts=6, backoff_cap=30))
        AcquireClient(retry=RetryPolicy.disabled())
        ```
    """

    max_attempts: int = 4
    backoff_base: float = 0.25
    backoff_cap: float = 10.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    budget: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    success_refund: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            kind = type(self.max_attempts).__name__
            raise TypeError(f"RetryPolicy.max_attempts must be an int, not {kind}")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1 (got {self.max_attempts})")
        _positive("backoff_base", self.backoff_base, allow_zero=True)
        _positive("backoff_cap", self.backoff_cap, allow_zero=True)
        _positive("max_retry_after", self.max_retry_after, allow_zero=True)
        _positive("budget", self.budget, allow_zero=True)
        _positive("retry_cost", self.retry_cost, allow_zero=True)
        _positive("timeout_cost", self.timeout_cost, allow_zero=True)
        _positive("success_refund", self.success_refund, allow_zero=True)
        object.__setattr__(self, "retry_statuses", _statuses(self.retry_statuses))

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries (one attempt per call)."""
        return cls(max_attempts=1)

    def backoff(self, retry_number: int, unit: float) -> float:
        """The full-jitter delay before retry `retry_number` (1-based); `unit` in [0, 1)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry_number - 1, 62))
        return unit * ceiling

    def is_retryable(self, error: AcquireError, *, retry_safe: bool = True) -> bool:
        """Whether this error may be retried at all (attempts and budget aside).

        `retry_safe=False` is for an operation that must not happen twice (a message):
        then only a failure that provably never reached the server is retried (a connection
        error with `request_sent=False`), and the statuses by which a server says it did
        not act (408, 429, 503) when they are in `retry_statuses`.
        """
        if isinstance(error, APITLSError):
            return False
        if not retry_safe:
            if isinstance(error, APIConnectionError):
                return not error.request_sent
            return (
                isinstance(error, APIStatusError)
                and error.status in NOT_ACTED_STATUSES
                and error.status in self.retry_statuses
            )
        if isinstance(error, APIConnectionError):
            return True
        if isinstance(error, AlreadyJoinedError):
            return False
        if isinstance(error, APIStatusError):
            if error.status in self.retry_statuses:
                return True
            # ERROR_SERVER_ERROR in an envelope sent with 200 (or a 4xx): a fault like a 500.
            return (
                isinstance(error, InternalServerError)
                and error.status < 500
                and 500 in self.retry_statuses
            )
        return False


class RetryBudget:
    """The client-wide token bucket that caps retries (see `RetryPolicy`)."""

    __slots__ = ("_capacity", "_policy", "tokens")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._capacity = policy.budget
        self.tokens = policy.budget

    def try_spend(self, error: AcquireError) -> bool:
        """Take the cost of one retry after `error`; `False` when the bucket is empty."""
        cost = (
            self._policy.timeout_cost
            if isinstance(error, APITimeoutError)
            else self._policy.retry_cost
        )
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def refund(self) -> None:
        """Put tokens back after a success."""
        if self.tokens < self._capacity:
            self.tokens = min(self._capacity, self.tokens + self._policy.success_refund)


def retry_delay(
    policy: RetryPolicy,
    budget: RetryBudget,
    error: AcquireError,
    attempt: int,
    unit: float,
    remaining: float | None,
    retry_safe: bool = True,
) -> float | None:
    """Seconds to sleep before the next attempt, or `None` to give up with `error`.

    `attempt` is the number of the attempt that just failed; `unit` a random number in
    [0, 1); `remaining` the time left before the call's deadline (`None`: no deadline);
    `retry_safe` whether the operation may happen twice (see `RetryPolicy.is_retryable`).
    """
    if attempt >= policy.max_attempts or not policy.is_retryable(error, retry_safe=retry_safe):
        return None
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        delay = float(retry_after)
    else:
        delay = policy.backoff(attempt, unit)
    # Never sleep past the deadline: there would be no time left to try.
    if remaining is not None and delay >= remaining:
        return None
    if not budget.try_spend(error):
        return None
    return delay


_DEFAULT_POLICY = RetryPolicy()


def is_transient(error: BaseException) -> bool:
    """Whether a failed call may succeed when made again later: the one definition the join
    queue's workers and the bot share.

    Transient: connection errors and timeouts (not TLS), the statuses 408, 429, 500, 502, 503,
    504 (and Acquire's `ERROR_SERVER_ERROR` envelope), a garbled answer (made again, a join
    settles it: already joined) and the throttle's Redis being unreachable (nothing was sent).
    Not: an invalid case id, any other 4xx (`AlreadyJoinedError` included), anything that
    is not an `AcquireError`.

    Example:
        ```python
        is_transient(InternalServerError("down", status=503))  # True
        ```
    """
    if not isinstance(error, AcquireError) or isinstance(error, InvalidCaseIdError):
        return False
    if isinstance(error, (ResponseDecodeError, ThrottleUnavailableError)):
        return True
    return _DEFAULT_POLICY.is_retryable(error)


def did_not_act(error: BaseException) -> bool:
    """Whether the server provably did not act on the failed call, so that an operation that
    must not happen twice (a message) may be made again: nothing reached it
    (`request_sent=False`, or the throttle's Redis was unreachable), or it answered 408, 429
    or 503.

    Example:
        ```python
        did_not_act(APIConnectionError("refused", request_sent=False))  # True
        ```
    """
    if isinstance(error, ThrottleUnavailableError):
        return True
    return isinstance(error, AcquireError) and _DEFAULT_POLICY.is_retryable(error, retry_safe=False)
