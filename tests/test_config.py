"""Timeouts: validation, coercion and the mapping onto aiohttp.ClientTimeout."""

from __future__ import annotations

import dataclasses
import math

import pytest

from acquire_async import Timeouts

FIELDS = ("connect", "read", "pool", "total")


def test_defaults() -> None:
    assert Timeouts() == Timeouts(connect=10.0, read=None, pool=30.0, total=60.0)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["5", True, False, b"5", [5]])
def test_non_number_is_a_type_error(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", FIELDS)
def test_none_disables_one_limit(field: str) -> None:
    timeouts = Timeouts(**{field: None})
    assert getattr(timeouts, field) is None


def test_small_positive_values_are_accepted() -> None:
    timeouts = Timeouts(connect=0.001, read=1, pool=2.5, total=1e6)
    assert (timeouts.connect, timeouts.read, timeouts.pool, timeouts.total) == (0.001, 1, 2.5, 1e6)


def test_frozen() -> None:
    timeouts = Timeouts()
    with pytest.raises(dataclasses.FrozenInstanceError):
        timeouts.total = 1  # type: ignore[misc]


def test_coerce_number_sets_total_and_keeps_the_other_defaults() -> None:
    timeouts = Timeouts.coerce(5)
    assert timeouts.total == 5
    assert isinstance(timeouts.total, float)
    assert (timeouts.connect, timeouts.read, timeouts.pool) == (10.0, None, 30.0)
    assert Timeouts.coerce(2.5).total == 2.5


def test_coerce_none_gives_the_defaults_and_an_instance_is_kept() -> None:
    assert Timeouts.coerce(None) == Timeouts()
    custom = Timeouts(connect=1, read=2, pool=3, total=4)
    assert Timeouts.coerce(custom) is custom


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_coerce_refuses_bad_numbers(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        Timeouts.coerce(value)  # type: ignore[arg-type]
