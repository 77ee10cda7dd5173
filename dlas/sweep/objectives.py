"""Objectives by name: what a multirun job returns, so that any Hydra sweeper plugin can search.

`objectives: {accuracy_compiled: maximize, latency_ms_median: minimize}` names numeric row
columns (metrics). Stock sweepers (Optuna, Nevergrad, Ax) need a float, or a list of floats
for several objectives, so a job returns the objectives' values in config order; the row
rides along as `.row` (the sweep summary and DLAS's own sweeper read it). A point that is not
`ok`, or lacks an objective, returns NaN for every objective: Optuna records a NaN as a
failed trial, and the sweep goes on.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from dlas.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")


class Values(list):
    """Several objectives' values in config order; `.row` is the point's row."""
    row: dict


class Value(float):
    """One objective's value; `.row` is the point's row."""
    row: dict


def directions(objectives: Mapping | None) -> dict[str, str]:
    """{name: maximize|minimize}, checked; a bad direction is a ConfigError naming it."""
    if not objectives:
        raise ConfigError("objectives", None, "{column: maximize|minimize, ...}",
                          reason="a search needs at least one objective")
    if not isinstance(objectives, Mapping):
        raise ConfigError("objectives", objectives, "{column: maximize|minimize, ...}")
    out = {}
    for name, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ConfigError(f"objectives.{name}", direction, DIRECTIONS)
        out[str(name)] = direction
    return out


def numeric_columns(row: dict) -> list[str]:
    return sorted(k for k, v in (row.get("metrics") or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool))


def values(row: dict, objectives: Mapping) -> tuple[list[float], str | None]:
    """The objectives' values of `row` and, when they are NaN, why (the point's status and
    reason, or the objective the row lacks)."""
    nan = [math.nan] * len(objectives)
    if row.get("status") != "ok":
        return nan, f"{row.get('status')} [{row.get('layer') or '?'}] {row.get('reason')}"
    metrics = row.get("metrics") or {}
    out = []
    for name in objectives:
        value = metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            return nan, (f"objective {name!r} is not a number in this row (numeric columns: "
                         f"{', '.join(numeric_columns(row)) or 'none'})")
        out.append(float(value))
    return out, None


def returned(row: dict, objectives: Mapping | None):
    """What a multirun job returns: Value (one objective), Values (several), or the row
    itself when no objectives are configured."""
    if not objectives:
        return row
    vals, _ = values(row, directions(objectives))
    out = Value(vals[0]) if len(vals) == 1 else Values(vals)
    out.row = row
    return out


def row_of(value):
    """The row behind a job's return value (the value itself when it is a row)."""
    return getattr(value, "row", value)


def check_names(objectives: Mapping, rows: list[dict]):
    """Refuse objectives no stored ok row has as a number, before a search spends compute on
    them; with no ok row stored yet, nothing to check against."""
    known = sorted({c for r in rows if r.get("status") == "ok" for c in numeric_columns(r)})
    if not known:
        return
    for name in objectives:
        if name not in known:
            raise ConfigError("objectives", name, known,
                              reason="not a numeric column of the stored rows")
