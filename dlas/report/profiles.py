"""Per-layer profiles of the selected points (those measured with measure.profile=true):
where the time goes, each layer's format and time, the points side by side (dense vs sparse).

A profile row is one PrimFunc call of the compiled model timed alone on the target
(dlas/hardware/profile.py); conv2d calls carry their layer (shapes, MACs, sparsity).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlas.store.results import LAYERS, ResultsStore

OTHER = "other kernels"
TOTAL = "sum of the kernels"


def load(results: str | Path, df: pd.DataFrame) -> dict[str, list[dict]]:
    """The stored profiles of the points in `df`, by key (points without one left out)."""
    store = ResultsStore(results)
    found = {key: store.profile(key) for key in df["key"]}
    return {key: rows for key, rows in found.items() if rows}


def labels(df: pd.DataFrame, keys: list[str]) -> dict[str, str]:
    """A short name per profiled point: the layer values that differ between them."""
    sel = df.set_index("key").loc[keys]
    differ = [layer for layer in LAYERS if sel[layer].astype(str).nunique() > 1] or ["primitive"]
    return {key: " ".join(str(sel.loc[key, layer]) for layer in differ) for key in keys}


def layer_name(row: dict) -> str:
    layer = row.get("layer")
    if not layer:
        return row["function"]
    o, c, kh, kw = layer["weight"]
    stride = "x".join(str(s) for s in layer["stride"])
    groups = f" g{layer['groups']}" if layer.get("groups", 1) != 1 else ""
    return f"conv{layer['index']:02d} {o}x{c}x{kh}x{kw}/{stride}{groups}"


def by_label(df: pd.DataFrame, profiles: dict[str, list[dict]]
             ) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """The profiles of `df`'s points and their model latencies, by point label."""
    names = labels(df, list(profiles))
    latency = df.set_index("key")["latency_ms"]
    return ({names[k]: rows for k, rows in profiles.items()},
            {names[k]: float(latency[k]) for k in profiles})


def long_table(profiles: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per (point, call): layer, kernel, format, sparsity, MACs, time, share."""
    records = []
    for point, rows in profiles.items():
        for r in rows:
            layer = r.get("layer") or {}
            records.append({
                "point": point, "call": r["call"], "layer": layer_name(r),
                "function": r["function"], "kernel": r.get("primitive", ""),
                "format": r.get("format", ""), "sparsity": layer.get("sparsity"),
                "macs": layer.get("macs"), "ms": r.get("latency_ms_median"),
                "ms_p90": r.get("latency_ms_p90"), "share": r.get("share"),
                "error": r.get("error", "")})
    return pd.DataFrame.from_records(records)


def side_by_side(long: pd.DataFrame, model_ms: dict[str, float]) -> pd.DataFrame:
    """Conv layers as rows (the others summed in one row), per point its format and time in
    ms; then the sum of the kernels and the whole model's measured latency (`model_ms`)."""
    if long.empty:
        return long
    conv = long["layer"].str.startswith("conv")
    rows = long[conv].pivot_table(index="layer", columns="point", values="ms", aggfunc="sum")
    fmts = long[conv].pivot_table(index="layer", columns="point", values="format",
                                  aggfunc="first")
    other = long[~conv].groupby("point")["ms"].sum().rename(OTHER)
    total = long.groupby("point")["ms"].sum().rename(TOTAL)
    model = pd.Series(model_ms, name="model latency (measured)")
    table = pd.concat([rows, other.to_frame().T, total.to_frame().T, model.to_frame().T])
    out = pd.DataFrame(index=table.index)
    for point in rows.columns:
        out[f"{point} format"] = fmts[point].reindex(table.index).fillna("")
        out[f"{point} ms"] = table[point]
    macs = long[conv].groupby("layer")["macs"].first().reindex(out.index)
    out.insert(0, "MMAC", (macs / 1e6).round(1))
    sparsity = long[conv].groupby("layer")["sparsity"]
    if sparsity.nunique().max() <= 1:  # (points of different compressions: see profile.csv)
        out.insert(1, "sparsity", sparsity.first().reindex(out.index))
    return out.reset_index(names="layer")


def text(table: pd.DataFrame) -> str:
    """The side-by-side table as printed by report.py."""
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")
