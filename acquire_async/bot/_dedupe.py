"""`Deduper`: the deliveries seen lately, bounded in time and in count.

Acquire publishes no delivery id and no retry policy, so the bot assumes at-least-once
delivery and recognises a redelivery by its content: the key of a delivery is
`(event, case_id, fingerprint)`, the fingerprint being the SHA-256 of the raw body.

Memory is bounded twice: a key is forgotten `window` seconds after it was first seen, and at
most `max_entries` keys are kept (the oldest goes first). A key is stored as a 16-byte digest,
so one entry costs about 200 bytes (the digest, its expiry, an ordered-dict node): the default
100,000 entries stay under about 20 MiB. A redelivery that comes back after its key was
forgotten (later than `window`, or after `max_entries` newer deliveries) runs again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from acquire_async._checks import check_count, check_delay

__all__ = ["DEFAULT_DEDUPE_SIZE", "Deduper", "delivery_key"]

DEFAULT_DEDUPE_SIZE = 100_000
"""How many delivery keys a bot remembers at most (about 20 MiB)."""


def delivery_key(event: str, case_id: int | None, fingerprint: str) -> bytes:
    """A compact key for `(event, case_id, fingerprint)`: 16 bytes of their SHA-256.

    Examples:
        >>> len(delivery_key("case:status", 1684, "ab" * 32))
        16
    """
    text = f"{event}\x00{case_id}\x00{fingerprint}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


class Deduper:
    """Keys seen within the last `window` seconds, at most `max_entries` of them.

    `window` 0 remembers nothing (every delivery runs). `evicted` counts keys dropped
    early because the table was full: each is a redelivery that could run twice.

    Example:
        ```python
        seen = Deduper(600.0)
        key = delivery_key("case:status", 1684, fingerprint)
        if key not in seen:
            seen.add(key)
        ```
    """

    __slots__ = ("_clock", "_entries", "evicted", "max_entries", "window")

    def __init__(
        self,
        window: float,
        max_entries: int = DEFAULT_DEDUPE_SIZE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = check_delay("dedupe_window", window)
        self.max_entries = check_count("dedupe_size", max_entries)
        self.evicted = 0
        self._clock = clock
        # key -> expiry. Insertion order is expiry order (one window, a monotonic clock), so
        # the expired keys are always at the front.
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        now = self._clock()
        self._expire(now)
        return key in self._entries

    def add(self, key: bytes) -> None:
        """Remember `key` for `window` seconds (dropping the oldest key when full)."""
        if self.window <= 0:
            return
        now = self._clock()
        self._expire(now)
        self._entries[key] = now + self.window
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1

    def discard(self, key: bytes) -> None:
        """Forget `key` (if remembered): a redelivery of it runs again. The bot calls it when
        an event's join failed for good, so Acquire's next delivery is not a "duplicate"."""
        self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, expiry = next(iter(entries.items()))
            if expiry > now:
                return
            del entries[key]
