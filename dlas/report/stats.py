"""The comparisons behind the figures and observations, as tables.

Every comparison matches points that differ in one layer only (all other layer labels equal),
so a ratio of medians is the effect of that layer. Latency is the median of the measured
repeats; its spread is [min, p90] of those repeats, and a ratio's interval combines the ends
that make it widest.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from dlas.store.results import LAYERS

UNTUNED = "untuned"
BASELINE = "none"
FLOAT = "float32"
MIN_N = 5        # below this a two-sided Spearman test cannot reach p < 0.05 (n=4: p >= 0.083)
PAIRS = (("size_mib", "accuracy"), ("size_mib", "latency_ms"), ("accuracy", "latency_ms"))
NAMES = {"size_mib": "size", "accuracy": "accuracy", "latency_ms": "latency"}


def emulated(df: pd.DataFrame) -> pd.Series:
    """True for rows measured on an emulated board (their server said so: dlas.hardware.emulated);
    their accuracy is the board code's, their latency the emulator's, not a board's."""
    if "emulated" not in df:
        return pd.Series(False, index=df.index)
    return df["emulated"].eq(True)


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """ok points with a latency; of points with the same layer labels (re-measured with other
    measure settings), the latest."""
    ok = df[(df["status"] == "ok") & df["latency_ms"].notna()]
    return ok.sort_values("finished", na_position="first").drop_duplicates(
        subset=list(LAYERS), keep="last").reset_index(drop=True)


def pareto_front(df: pd.DataFrame, by=("dataset", "hardware")) -> pd.Series:
    """True for points no other point of the same facet beats on both latency (lower) and
    accuracy (higher)."""
    front = pd.Series(False, index=df.index)
    valid = df[df["latency_ms"].notna() & df["accuracy"].notna()]
    for _, group in valid.groupby(list(by), sort=False):
        best = -np.inf
        for idx, row in group.sort_values(["latency_ms", "accuracy"],
                                          ascending=[True, False]).iterrows():
            if row["accuracy"] > best:
                front[idx] = True
                best = row["accuracy"]
    return front


def spearman(x, y) -> dict:
    """Spearman's rho, its two-sided p-value and n; rho None when undefined (n < MIN_N or a
    variable is constant), with the reason in `note`."""
    x, y = pd.Series(x, dtype=float), pd.Series(y, dtype=float)
    keep = x.notna() & y.notna()
    x, y = x[keep], y[keep]
    n = int(keep.sum())
    if n < MIN_N:
        return {"n": n, "rho": None, "p": None, "note": f"n={n} < {MIN_N}"}
    if x.nunique() < 2 or y.nunique() < 2:
        return {"n": n, "rho": None, "p": None, "note": "a variable is constant"}
    res = sps.spearmanr(x, y)
    return {"n": n, "rho": float(res.statistic), "p": float(res.pvalue), "note": ""}


def correlations(df: pd.DataFrame, by=("dataset", "hardware")) -> pd.DataFrame:
    """Spearman rho of size, accuracy and latency, pairwise, within each facet (accuracy
    depends on the data set and latency on the hardware, so they are not pooled)."""
    rows = []
    for keys, group in df.groupby(list(by), sort=True):
        for x, y in PAIRS:
            rows.append(dict(zip(by, keys)) | {"x": x, "y": y} | spearman(group[x], group[y]))
    return pd.DataFrame(rows, columns=list(by) + ["x", "y", "n", "rho", "p", "note"])


def speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Each compressed point against the uncompressed one with the same other layers:
    speedup = median latency of `none` / median latency of the technique."""
    keys = ["dataset", "model", "primitive", "codegen", "hardware"]
    cols = keys + ["latency_ms", "latency_ms_min", "latency_ms_p90"]
    base = df[df["compression_name"] == BASELINE][cols]
    other = df[df["compression_name"] != BASELINE][cols + ["compression", "number_format"]]
    m = other.merge(base, on=keys, suffixes=("", "_none"))
    out = m[keys + ["compression", "number_format"]].copy()
    out["latency_none_ms"] = m["latency_ms_none"]
    out["latency_ms"] = m["latency_ms"]
    out["speedup"] = m["latency_ms_none"] / m["latency_ms"]
    out["speedup_lo"] = m["latency_ms_min_none"] / m["latency_ms_p90"]
    out["speedup_hi"] = m["latency_ms_p90_none"] / m["latency_ms_min"]
    return out.sort_values(["compression", "hardware"] + keys[:-1]).reset_index(drop=True)


def ranges(df: pd.DataFrame, by: list[str], value: str = "speedup") -> pd.DataFrame:
    """n, min, median, geometric mean and max of `value` per group."""
    if df.empty:
        return pd.DataFrame(columns=by + ["n", "min", "median", "geomean", "max"])
    g = df.groupby(by, sort=True)[value]
    out = pd.DataFrame({"n": g.size(), "min": g.min(), "median": g.median(),
                        "geomean": g.apply(lambda s: float(np.exp(np.log(s).mean()))),
                        "max": g.max()})
    return out.reset_index()


def tuning(df: pd.DataFrame) -> pd.DataFrame:
    """Each tuned point against the untuned one with the same other layers:
    speedup = median latency untuned / median latency tuned."""
    keys = ["dataset", "model", "compression", "primitive", "hardware"]
    cols = keys + ["latency_ms", "latency_ms_min", "latency_ms_p90"]
    base = df[df["codegen_name"] == UNTUNED][cols]
    tuned = df[df["codegen_name"] != UNTUNED][cols + ["codegen", "tuning_s"]]
    m = tuned.merge(base, on=keys, suffixes=("", "_untuned"))
    out = m[keys + ["codegen"]].copy()
    out["latency_untuned_ms"] = m["latency_ms_untuned"]
    out["latency_ms"] = m["latency_ms"]
    out["speedup"] = m["latency_ms_untuned"] / m["latency_ms"]
    out["speedup_lo"] = m["latency_ms_min_untuned"] / m["latency_ms_p90"]
    out["speedup_hi"] = m["latency_ms_p90_untuned"] / m["latency_ms_min"]
    out["tuning_s"] = m["tuning_s"]
    return out.sort_values(["codegen", "primitive"] + keys[:-1]).reset_index(drop=True)


def _best(group: pd.DataFrame) -> dict:
    """The fastest primitive (by median), its runner-up, the margin (runner-up median / best
    median) and whether the runner-up's fastest repeat was still slower than the best's median
    (`separated`: on a machine whose speed jumps between phases, two medians taken at
    different times can differ by far more than the margin)."""
    ordered = group.sort_values("latency_ms")
    best = ordered.iloc[0]
    runner = ordered.iloc[1] if len(ordered) > 1 else None
    return {"best": best["primitive"], "best_ms": best["latency_ms"],
            "runner_up": None if runner is None else runner["primitive"],
            "margin": None if runner is None else runner["latency_ms"] / best["latency_ms"],
            "separated": runner is not None and bool(runner["latency_ms_min"] > best["latency_ms"]),
            "primitives": len(ordered)}


def best_primitives(df: pd.DataFrame) -> pd.DataFrame:
    """The fastest primitive of each (dataset, model, compression, codegen, hardware), with the
    runner-up and its margin (runner-up latency / best latency)."""
    keys = ["dataset", "model", "compression", "codegen", "hardware"]
    rows = [dict(zip(keys, k)) | {"number_format": g["number_format"].iloc[0]} | _best(g)
            for k, g in df.groupby(keys, sort=True)]
    return pd.DataFrame(rows, columns=keys + ["number_format", "best", "best_ms", "runner_up",
                                              "margin", "separated", "primitives"])


def relative_latency(df: pd.DataFrame) -> pd.DataFrame:
    """Each point's latency over the fastest primitive's of its (dataset, model, compression,
    codegen, hardware) group: 1.0 = the best primitive there."""
    keys = ["dataset", "model", "compression", "codegen", "hardware"]
    out = df[keys + ["primitive", "number_format", "latency_ms"]].copy()
    out["relative"] = out["latency_ms"] / out.groupby(keys)["latency_ms"].transform("min")
    out["is_best"] = out["relative"] == 1.0
    out["group_size"] = out.groupby(keys)["latency_ms"].transform("size")
    return out


def _flip(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> dict | None:
    """Best primitive of a and of b among the primitives both measured (None if < 2), with
    each winner's margin over its runner-up and whether the two were apart (_best); columns
    best_<name>, margin_<name>, separated_<name>."""
    common = sorted(set(a["primitive"]) & set(b["primitive"]))
    if len(common) < 2:
        return None
    best_a, best_b = (_best(x[x["primitive"].isin(common)]) for x in (a, b))
    return {"primitives": len(common), "flipped": best_a["best"] != best_b["best"],
            **{f"{column}_{name}": best[column] for name, best in zip(names, (best_a, best_b))
               for column in ("best", "margin", "separated")}}


def _sides(names: tuple[str, str]) -> list[str]:
    return [f"{column}_{name}" for name in names for column in ("best", "margin", "separated")]


def _flip_table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values("flipped", ascending=False, kind="stable").reset_index(drop=True)


def tuning_flips(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, compression, hardware) and tuned codegen: the fastest primitive
    untuned (a) and tuned (b), over the primitives measured under both."""
    keys = ["dataset", "model", "compression", "hardware"]
    rows = []
    for k, g in df.groupby(keys, sort=True):
        untuned = g[g["codegen_name"] == UNTUNED]
        for codegen, tuned in g[g["codegen_name"] != UNTUNED].groupby("codegen", sort=True):
            for u_codegen, u in untuned.groupby("codegen", sort=True):
                flip = _flip(u, tuned, ("untuned", "tuned"))
                if flip:
                    rows.append(dict(zip(keys, k)) | {"tuned_codegen": codegen} | flip)
    return _flip_table(rows, keys + ["tuned_codegen", "primitives", "flipped",
                                     *_sides(("untuned", "tuned"))])


def quantization_flips(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, hardware, codegen): the fastest primitive of a float32 recipe (a)
    and of the same recipe quantized (b: int8 or float16, e.g. none vs int8, unstructured vs
    unstructured_int8), over the primitives measured for both."""
    keys = ["dataset", "model", "hardware", "codegen", "compression_base"]
    rows = []
    for k, g in df.groupby(keys, sort=True):
        floats = g[g["number_format"] == FLOAT]
        quants = g[g["number_format"].notna() & (g["number_format"] != FLOAT)]
        for fc, f in floats.groupby("compression", sort=True):
            for qc, q in quants.groupby("compression", sort=True):
                flip = _flip(f, q, ("float32", "quantized"))
                if flip:
                    rows.append(dict(zip(keys[:-1], k)) | {
                        "float32": fc, "quantized": qc,
                        "number_format": q["number_format"].iloc[0]} | flip)
    return _flip_table(rows, keys[:-1] + ["float32", "quantized", "number_format", "primitives",
                                          "flipped", *_sides(("float32", "quantized"))])


INT8_COLUMNS = ["status", *LAYERS, "eval_samples", "accuracy_float", "accuracy_torch",
                "accuracy_compiled", "int8_cost", "compiled_vs_qdq", "prediction_agreement",
                "logit_rel_diff", "reference_rel_diff", "reference_agreement"]


ROUND_COLUMNS = ["status", *LAYERS, "latency_ms", "latency_round_medians", "latency_round_best",
                 "latency_round_spread", "load_avg_rounds", "latency_repeats"]


def latency_rounds(df: pd.DataFrame) -> pd.DataFrame:
    """The points re-timed by remeasure=N: each round's median, their spread ((max - min) /
    median) and the load average during each round, the most spread first; latency_ms is
    the median of every round's repeats pooled."""
    if "latency_round_medians" not in df:
        return pd.DataFrame(columns=ROUND_COLUMNS)
    rows = df[df["latency_round_medians"].notna()]
    return rows[[c for c in ROUND_COLUMNS if c in rows]].sort_values(
        "latency_round_spread", ascending=False).reset_index(drop=True)


def int8_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """int8's accuracy cost per point that measured its compiled model (ok, or failed with its
    metrics kept): int8_cost = compiled int8 accuracy - the float32 model's on the same
    samples; compiled_vs_qdq = compiled - PyTorch's Q/DQ model; the agreement with that
    model (argmax share, max logit difference / max|logit|) and the distance from DLAS's
    integer reference (what the deploy check gates)."""
    rows = df[(df["number_format"] == "int8") & df["accuracy_compiled"].notna()].copy()
    for col in INT8_COLUMNS:
        if col not in rows:
            rows[col] = np.nan
    rows["int8_cost"] = rows["accuracy_compiled"] - rows["accuracy_float"]
    rows["compiled_vs_qdq"] = rows["accuracy_compiled"] - rows["accuracy_torch"]
    return rows[INT8_COLUMNS].sort_values(list(LAYERS)).reset_index(drop=True)
