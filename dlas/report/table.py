"""The results store as a table: one row per point, metrics as columns, filters applied.

Layer columns hold labels: the config name, plus the settings that tell apart two points with
the same name (e.g. `unstructured(ratio=0.9)` next to `unstructured(ratio=0.5)`), so that every
grouping downstream compares like with like. Filters match the plain names.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dlas.errors import DLASError
from dlas.stages.keys import NOT_DETERMINING
from dlas.store.results import LAYERS, ResultsStore
from dlas.store.schema import NUMBERS

FILTER_KEYS = LAYERS + ("status", "number_format")
# compression steps that change the number format; the rest (pruning) is the recipe's "base"
QUANT_STEPS = ("Int8Quantization", "Float16")
QUANT_SUFFIXES = ("_int8", "_fp16")
_BASE_COLUMNS = ("key", "sweep", "status", "layer", "reason", "started", "finished") + LAYERS


def parse_where(where) -> dict[str, list[str]]:
    """`"hardware=local,model=resnet18,mobilenetv2"` -> {hardware: [local], model: [resnet18,
    mobilenetv2]}: comma-separated layer=value; a value without `=` is one more value of the
    layer before it. Also takes a list of such strings or a {layer: value(s)} mapping."""
    if where is None or where == "":
        return {}
    if isinstance(where, Mapping):
        items = [(str(k), v) for k, v in where.items()]
        out = {}
        for key, value in items:
            values = value if isinstance(value, (list, tuple)) else [value]
            out[key] = [str(v) for v in values]
        return _checked(out)
    tokens = ([t for part in where for t in str(part).split(",")]
              if isinstance(where, (list, tuple)) else str(where).split(","))
    out: dict[str, list[str]] = {}
    last = None
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        key, sep, value = token.partition("=")
        if sep:
            last = key.strip()
            out.setdefault(last, []).append(value.strip())
        elif last is None:
            raise DLASError("report.where", str(where), "layer=value[,value][,layer=value]",
                            reason=f"{token!r} names no layer")
        else:
            out[last].append(token)
    return _checked(out)


def _checked(where: dict[str, list[str]]) -> dict[str, list[str]]:
    for key in where:
        if key not in FILTER_KEYS:
            raise DLASError("report.where", key, FILTER_KEYS, reason="cannot filter on this")
    return where


def select_sweep(store: ResultsStore, sweep: str | None) -> tuple[list[dict], str | None]:
    """The rows of one sweep (a sweep folder, its name, or `latest`), or all rows for None.
    A sweep's rows include the points it reused from earlier sweeps."""
    if sweep is None or sweep == "" or sweep == "all":
        return store.rows(), None
    sweeps = store.sweeps()
    if sweep == "latest":
        if not sweeps:
            raise DLASError("report.sweep", sweep, "null (all rows)",
                            reason="the store has no sweep (multirun) rows")
        chosen = max(sweeps, key=sweeps.get)
    else:
        matches = [s for s in sweeps if s == sweep or Path(s).name == Path(sweep).name]
        if not matches:
            raise DLASError("report.sweep", sweep,
                            ["latest"] + sorted(Path(s).name for s in sweeps) or ["null"],
                            reason="no rows of this sweep")
        chosen = matches[0]
    return store.rows(sweep=chosen), chosen


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list) and not any(isinstance(v, Mapping) for v in node):
        return {prefix[:-1]: "x".join(map(str, node))}
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(_flat(value, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: node}


def _show(value) -> str:
    """A setting as it is written on the command line (null, not None)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _variant_labels(rows: list[dict], layer: str) -> list[str]:
    """The layer's value, with the settings that differ between rows of the same value."""
    skip = set(NOT_DETERMINING.get(layer, ())) | {"name", "_target_", "format"}
    flats = [{k: v for k, v in _flat((r["config"] or {}).get(layer) or {}).items()
              if k.split(".")[0] not in skip and not k.endswith("_target_")} for r in rows]
    varying: dict[str, set[str]] = {}
    for value in {r[layer] for r in rows}:
        # rows without this layer's config (e.g. recorded by hand) tell nothing apart
        group = [f for r, f in zip(rows, flats) if r[layer] == value and (r["config"] or {}).get(layer)]
        keys = set().union(*group) if group else set()
        varying[value] = {k for k in keys if len({repr(f.get(k)) for f in group}) > 1}
    labels = []
    for r, f in zip(rows, flats):
        keys = sorted(varying[r[layer]])
        parts = dict.fromkeys(f"{k.split('.')[-1]}={_show(f.get(k))}" for k in keys)  # steps.0.ratio = ratio
        suffix = ", ".join(parts)
        labels.append(f"{r[layer]}({suffix})" if suffix else str(r[layer]))
    return labels


def compression_base(row: dict) -> str:
    """The recipe without its quantization step: `unstructured_int8` -> the pruning it
    shares with `unstructured` (same ratio), `int8` -> none. Pairs float and quantized points.
    The compress stage records it (Compression.base); rows stored before it did are read from
    the recipe's config."""
    recorded = (row.get("metrics") or {}).get("compression_base")
    if recorded:
        return recorded
    comp = (row["config"] or {}).get("compression") or {}
    steps = comp.get("steps")
    if isinstance(steps, list) and steps:
        kept = [s for s in steps if not str(s.get("_target_", "")).endswith(QUANT_STEPS)]
        if not kept:
            return "none"
        parts = []
        for step in kept:
            name = str(step.get("_target_", "?")).rsplit(".", 1)[-1]
            # the ratio only: recipes spell other settings out or leave them at their defaults
            parts.append(name + (f"(ratio={step['ratio']})" if "ratio" in step else ""))
        return "+".join(parts)
    name = str(row["compression"])
    if name in ("int8", "fp16"):
        return "none"
    for suffix in QUANT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name

# metrics every table has, as None where no point has them (the report's sections read them)
ALWAYS = ("accuracy_compiled", "accuracy_torch", "size_bytes", "latency_ms_median",
          "latency_ms_p90", "latency_ms_min", "latency_ms_max", "latency_ms_std", "latency_cv",
          "tuning_s", "macs", "number_format", "noisy", "budget_hit")


# remeasure's per-round lists (dlas/sweep/remeasure.py), shown as "6.92 / 6.67 / 6.77"
ROUND_LISTS = ("latency_round_medians", "load_avg_rounds")


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per point: base columns, every scalar metric, labels and derived columns."""
    records = []
    for r in rows:
        rec = {c: r.get(c) for c in _BASE_COLUMNS}
        rec["fail_layer"] = rec.pop("layer")
        for name, value in (r.get("metrics") or {}).items():
            if name not in rec and (value is None or isinstance(value, (int, float, str, bool))):
                rec[name] = value
            elif name in ROUND_LISTS and isinstance(value, list):  # one value per round
                rec[name] = " / ".join(f"{v:.3g}" for v in value)
        rec["compression_base"] = compression_base(r)
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return df
    for layer in LAYERS:
        df[f"{layer}_name"] = df[layer]
        df[layer] = _variant_labels(rows, layer)
    df["algorithm"] = df["primitive_name"].str.split("-").str[0]
    df["format"] = df["primitive_name"].str.split("-").str[1]
    for col in ALWAYS:
        if col not in df:
            df[col] = None
    for col in NUMBERS:  # the schema's numeric metrics (a point may lack some)
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["accuracy"] = df["accuracy_compiled"].fillna(df["accuracy_torch"])
    df["latency_ms"] = df["latency_ms_median"]
    df["size_mib"] = df["size_bytes"] / 2**20
    return df


def apply_where(df: pd.DataFrame, where: dict[str, list[str]]) -> pd.DataFrame:
    """Rows whose value of each filtered layer is one of the given ones. A primitive given
    without its format (`direct`) matches every format of it."""
    for key, values in where.items():
        col = f"{key}_name" if key in LAYERS else key
        present = sorted({str(v) for v in df[col].dropna()}) if col in df else []
        match = df[col].astype("string").isin(values) if col in df else pd.Series(False, df.index)
        if key == "primitive":
            match |= df["algorithm"].isin(values)
        known = set(present) | (set(df["algorithm"]) if key == "primitive" else set())
        for value in values:
            if value not in known:
                raise DLASError(f"report.where {key}", value, present or "(none in the store)",
                                reason="no such value in the results store")
        df = df[match]
    return df


def load(results: str | Path, *, where=None, sweep: str | None = None,
         rows: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """The filtered table and what was selected (store path, sweep, filters, counts, the rows
    taken in). rows: the folder of row files (paths.rows); the ones jobs handed over since the
    sweep's head last took them in (a head killed, jobs still running) are taken in first."""
    path = Path(results)
    if not path.is_file() and not (rows is not None and any(Path(rows).glob("*.json"))):
        raise DLASError("paths.results", str(path), reason="no results store here; run deploy.py "
                        "first or point paths.results at one")
    filters = parse_where(where)
    store = ResultsStore(path, rows=rows)
    taken = store.ingest()
    found, chosen = select_sweep(store, sweep)
    df = to_frame(found)
    if df.empty:
        raise DLASError("results store", str(path), reason="no points" + (
            f" in sweep {chosen}" if chosen else ""))
    df = apply_where(df, filters).reset_index(drop=True)
    if df.empty:
        raise DLASError("report.where", where, reason="no point matches every filter")
    info = {"results": str(path), "sweep": chosen, "where": filters, "points": len(df),
            "taken_in": taken,
            "status": {s: int((df["status"] == s).sum()) for s in ("ok", "unsupported", "failed")}}
    return df, info


def values(df: pd.DataFrame, column: str) -> list[str]:
    return sorted({str(v) for v in df[column].dropna()}) if column in df else []
