"""Deduper: keys are remembered for a window, and never more than max_entries of them."""

from __future__ import annotations

import tracemalloc

import pytest

from acquire_async.bot import Deduper, delivery_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_remembered_for_the_window_then_forgotten() -> None:
    clock = Clock()
    seen = Deduper(10.0, clock=clock)
    key = delivery_key("case:status", 1684, "ab" * 32)
    assert key not in seen
    seen.add(key)
    clock.now += 9.9
    assert key in seen
    clock.now += 0.2
    assert key not in seen
    assert len(seen) == 0


def test_the_key_covers_event_case_and_fingerprint() -> None:
    base = delivery_key("case:status", 1684, "ab" * 32)
    assert base == delivery_key("case:status", 1684, "ab" * 32)
    assert base != delivery_key("case:joined", 1684, "ab" * 32)
    assert base != delivery_key("case:status", 1685, "ab" * 32)
    assert base != delivery_key("case:status", None, "ab" * 32)
    assert base != delivery_key("case:status", 1684, "cd" * 32)


def test_at_most_max_entries_the_oldest_go_first() -> None:
    seen = Deduper(600.0, max_entries=3)
    keys = [delivery_key("e", n, "f") for n in range(5)]
    for key in keys:
        seen.add(key)
    assert len(seen) == 3
    assert [key in seen for key in keys] == [False, False, True, True, True]
    assert seen.evicted == 2


def test_window_zero_remembers_nothing() -> None:
    seen = Deduper(0)
    key = delivery_key("e", 1, "f")
    seen.add(key)
    assert key not in seen


def test_memory_per_entry_is_bounded() -> None:
    # The documented bound: about 200 bytes an entry (20 MiB for the default 100,000).
    seen = Deduper(600.0, max_entries=20_000)
    keys = [delivery_key("case:status", n, "ab" * 32) for n in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            seen.add(key)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / 20_000 < 200
    for key in keys:  # past the bound, the size stays put
        seen.add(delivery_key("x", None, key.hex()))
    assert len(seen) == 20_000


@pytest.mark.parametrize(
    ("window", "size", "error", "name"),
    [
        ("1", 10, TypeError, "dedupe_window"),
        (True, 10, TypeError, "dedupe_window"),
        (-1.0, 10, ValueError, "dedupe_window"),
        (float("inf"), 10, ValueError, "dedupe_window"),
        (1.0, 0, ValueError, "dedupe_size"),
        (1.0, 2.5, TypeError, "dedupe_size"),
    ],
)
def test_bad_arguments(window: object, size: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        Deduper(window, size)  # type: ignore[arg-type]
