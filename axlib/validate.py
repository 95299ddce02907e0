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


def power_of_two(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    value = integer(name, value, lo, hi)
    if value < 1 or value & (value - 1):
        raise ParameterError(f"parameter {name}={value!r} must be a power of two{_range(lo, hi)}")
    return value


def numbers(name: str, values, lo: float | None = None, hi: float | None = None) -> list[float]:
    """A non-empty list of numbers in [lo, hi], as floats."""
    values = nonempty(name, values, f"number{_range(lo, hi)}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
           or (lo is not None and v < lo) or (hi is not None and v > hi)]
    if bad:
        raise ParameterError(f"parameter {name} has invalid value(s) {bad}; allowed: numbers{_range(lo, hi)}")
    return [float(v) for v in values]


def boolean(name: str, value) -> bool:
    """``True`` or ``False`` (not 0/1, which ``choice(name, value, [True, False])`` would accept)."""
    if not isinstance(value, bool):
        raise ParameterError(f"parameter {name}={value!r} must be a boolean; allowed values: [True, False]")
    return value


def nonempty(name: str, values, what: str = "value") -> list:
    """``values`` as a list with at least one element; ``what`` says what to give (for the message)."""
    values = as_list(name, values)
    if not values:
        raise ParameterError(f"parameter {name} is empty; give at least one {what}")
    return values


def unique(name: str, values) -> list:
    """``values`` as a list without repeated elements (repeats would duplicate rows of the results)."""
    values = as_list(name, values)
    dups = []
    for i, v in enumerate(values):
        if v in values[:i] and v not in dups:
            dups.append(v)
    if dups:
        raise ParameterError(f"parameter {name} repeats value(s) {dups}; give each value once (got {values})")
    return values


def mapping(name: str, value) -> dict:
    if not isinstance(value, dict):
        raise ParameterError(f"parameter {name}={value!r} must be a mapping (e.g. {{}})")
    return value


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
