"""Parameter validation with messages that name the parameter, the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ParameterError(ValueError):
    """A user-facing parameter is invalid. The message names parameter, value and allowed range."""


def choice(name: str, value, allowed: Sequence) -> object:
    if value not in allowed:
        raise ParameterError(f"parameter {name}={value!r} is not allowed; allowed values: {list(allowed)}")
    return value


def choices(name: str, values, allowed: Sequence) -> list:
    values = as_list(name, values)
    if not values:
        raise ParameterError(f"parameter {name} is empty; choose from {list(allowed)}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ParameterError(f"parameter {name} has unknown value(s) {bad}; allowed values: {list(allowed)}")
    return values


def integer(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"parameter {name}={value!r} must be an integer{_range(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParameterError(f"parameter {name}={value!r} is out of range; allowed{_range(lo, hi)}")
    return value


def integers(name: str, values, lo: int | None = None, hi: int | None = None) -> list[int]:
    values = as_list(name, values)
    if not values:
        raise ParameterError(f"parameter {name} is empty; give at least one integer{_range(lo, hi)}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)
           or (lo is not None and v < lo) or (hi is not None and v > hi)]
    if bad:
        raise ParameterError(f"parameter {name} has invalid value(s) {bad}; allowed: integers{_range(lo, hi)}")
    return values


def number(name: str, value, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"parameter {name}={value!r} must be a number{_range(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParameterError(f"parameter {name}={value!r} is out of range; allowed{_range(lo, hi)}")
    return float(value)


def as_list(name: str, values) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ParameterError(f"parameter {name}={values!r} must be a list")
    return list(values)


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""
