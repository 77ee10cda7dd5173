"""Checks of setting values: a wrong type or range becomes one DLASError naming the setting,
the value and what is valid (YAML gives strings, floats and booleans where numbers are meant:
`True` is an int to Python, so booleans are refused explicitly)."""
from __future__ import annotations

from numbers import Integral, Real

from dlas.errors import DLASError


def integer(what: str, value, low: int = 0, *, layer: str | None = None,
            optional: bool = False, reason: str | None = None,
            error: type[DLASError] = DLASError) -> int | None:
    """`value` as an int >= `low` (None passes when `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        valid = f"an integer >= {low}" + (" or null" if optional else "")
        raise error(what, value, valid, layer=layer, reason=reason)
    return int(value)


def number(what: str, value, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, valid: str | None = None,
           layer: str | None = None) -> float:
    """`value` as a float within [low, high] (either end open or absent)."""
    ok = not isinstance(value, bool) and isinstance(value, Real)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if valid is None:
            ends = ("(" if low_open else "[") + f"{'-inf' if low is None else low}, " \
                   f"{'inf' if high is None else high}" + (")" if high_open else "]")
            valid = f"a number in {ends}"
        raise DLASError(what, value, valid, layer=layer)
    return float(value)
