"""Names -> multipliers: ``exact8u``, ``exact8s``, ``trunc<k>``, ``drum<k>``, ``evoapprox:<circuit>``,
``smapprox:<dddd>`` (stand-ins for delaparra2021's SMApprox multipliers)."""

from __future__ import annotations

import re

from axlib.multipliers.core import Multiplier, drum, exact, truncated
from axlib.validate import ParameterError

PATTERNS = ("exact8u", "exact8s", "trunc<k> (k in 0..15)", "drum<k> (k in 2..8)", "evoapprox:<circuit>",
            "smapprox:<4 digits in 0-3> (stand-in)")


def names() -> list[str]:
    """Every concrete name the registry resolves (EvoApprox names when the tables are present)."""
    from axlib.multipliers.evoapprox import evoapprox_names
    from axlib.multipliers.smapprox import TABLE2_DESIGNS

    out = ["exact8u", "exact8s"] + [f"trunc{k}" for k in range(16)] + [f"drum{k}" for k in range(2, 9)]
    out += [f"smapprox:{d}" for d in TABLE2_DESIGNS]
    try:
        out += [f"evoapprox:{n}" for n in evoapprox_names()]
    except FileNotFoundError:
        pass
    return out


def get(name: str) -> Multiplier:
    if name == "exact8u":
        return exact(8, signed=False)
    if name == "exact8s":
        return exact(8, signed=True)
    if m := re.fullmatch(r"trunc(\d+)", name):
        return truncated(int(m.group(1)))
    if m := re.fullmatch(r"drum(\d+)", name):
        return drum(int(m.group(1)))
    if name.startswith("evoapprox:"):
        from axlib.multipliers.evoapprox import evoapprox

        return evoapprox(name.split(":", 1)[1])
    if name.startswith("smapprox:"):
        from axlib.multipliers.smapprox import smapprox

        return smapprox(name.split(":", 1)[1])
    raise ParameterError(f"multiplier {name!r} is unknown; allowed: {list(PATTERNS)}")
