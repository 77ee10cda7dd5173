"""The study's report: results store -> tables (CSV), figures (PNG), observations, one HTML.

    df, info = load(results, where=..., sweep=...)      # dlas.report.table
    report = build(df, info, out_dir)                    # everything written under out_dir
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlas.report import figures, html, observations, profiles, stats
from dlas.report.search import REF_MARGIN, Search, compare
from dlas.report.table import load
from dlas.store.results import LAYERS

POINT_COLUMNS = ["key", "sweep", "status", *LAYERS, "fail_layer", "reason", "number_format",
                 "accuracy", "accuracy_torch", "size_mib", "size_bytes", "params", "macs",
                 "weight_sparsity", "latency_ms", "latency_ms_p90", "latency_ms_min",
                 "latency_ms_max", "latency_ms_std", "latency_cv", "latency_round_spread",
                 "noisy", "budget_hit",
                 "tuning_s", "compile_s"]
OBS_CSV = {"uncorrelated": "correlations.csv", "speedup_hardware": "speedup_hardware.csv",
           "tuning_flip": "tuning_flips.csv", "quantization_flip": "quantization_flips.csv"}
EMULATED_COLUMNS = ["key", "status", *LAYERS, "emulator", "accuracy", "accuracy_torch",
                    "eval_samples", "latency_ms", "reason"]
FIGURES = ("pareto", "correlations", "speedup", "best_primitive", "tuning", "status", "search")
SEARCH_CSV = ("search.csv", "search_vs_grid.csv")

__all__ = ["Report", "load", "write_report"]


@dataclass
class Report:
    html: Path
    info: dict
    observations: list[observations.Observation]
    figures: dict[str, Path] = field(default_factory=dict)      # id -> PNG
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # CSV name -> table


def _columns(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def write_report(df: pd.DataFrame, info: dict, out_dir: str | Path,
                 search: Search | None = None,
                 layer_profiles: dict[str, list[dict]] | None = None) -> Report:
    """search: a search (dlas.report.search.load_search) to show against df's measured
    points; layer_profiles: the per-layer profiles of selected points, by key
    (profiles.load)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in list(OBS_CSV.values()) + [f"{f}.png" for f in FIGURES] + list(SEARCH_CSV):
        (out / name).unlink(missing_ok=True)  # a figure not drawn this time must not linger

    # Emulated latency is no hardware's: those rows get their own labelled table and stay out
    # of every comparison, figure and observation.
    em = stats.emulated(df)
    emulated = _columns(df[em], EMULATED_COLUMNS).assign(
        hardware=lambda t: t["hardware"] + " (emulated)").rename(
        columns={"latency_ms": "latency_ms_emulator"})
    df = df[~em]
    ok = stats.measured(df)
    front = stats.pareto_front(ok)
    sp = stats.speedups(ok)
    tp = stats.tuning(ok)
    rel = stats.relative_latency(ok)
    obs = observations.check_all(ok, sp)
    not_ok = _columns(df[df["status"] != "ok"], ["status", *LAYERS, "fail_layer", "reason"])
    not_ok = not_ok.rename(columns={"fail_layer": "layer"}).sort_values(
        ["status", "layer", "reason"], na_position="last")

    info = info | {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "layers": {layer: sorted(df[layer].astype(str).unique()) for layer in LAYERS},
                   "measured": len(ok),
                   "remeasured": int(((df["status"] == "ok") & df["latency_ms"].notna()).sum())
                   - len(ok)}
    int8 = stats.int8_accuracy(df)
    rounds = stats.latency_rounds(df)
    tables = {
        "points.csv": (_columns(df, POINT_COLUMNS), "every selected point"),
        "pareto.csv": (_columns(ok[front], POINT_COLUMNS), "points on the accuracy–latency front"),
        "correlations.csv": (obs[0].table, "Spearman ρ per pair and (dataset, hardware)"),
        "speedup.csv": (sp, "each technique vs none, same other layers"),
        "speedup_ranges.csv": (stats.ranges(sp, ["compression", "hardware"]),
                               "speedup per technique and hardware (all matched points)"),
        "speedup_hardware.csv": (obs[1].table, "speedup ranges on configurations measured on "
                                               "≥ 2 hardware"),
        "best_primitive.csv": (stats.best_primitives(ok), "fastest primitive per group"),
        "tuning.csv": (tp, "tuned vs untuned, same other layers"),
        "tuning_flips.csv": (obs[2].table, "best primitive untuned vs tuned"),
        "quantization_flips.csv": (obs[3].table, "best primitive float32 vs quantized"),
        "not_ok.csv": (not_ok, "unsupported and failed points with layer and reason"),
        "int8_accuracy.csv": (int8, "int8's accuracy cost and agreement with PyTorch's Q/DQ "
                                    "model and DLAS's integer reference"),
        "emulated.csv": (emulated, "points measured on an emulated board (accuracy only; "
                                   "latency is the emulator's)"),
        "latency_rounds.csv": (rounds, "points re-timed by remeasure: each round's median, "
                                       "their spread and the load average"),
    }
    searched = compare(search, ok) if search is not None else None
    if searched is not None:
        tables["search.csv"] = (searched["trials"], f"the trials of search {search.name}: "
                                "objectives, front, hypervolume so far")
        tables["search_vs_grid.csv"] = (searched["table"], "hypervolume of the searched front "
                                        "and of the grid's")
    labelled, model_ms = profiles.by_label(df, layer_profiles or {})
    prof_long = profiles.long_table(labelled)
    prof = profiles.side_by_side(prof_long, model_ms)
    if not prof.empty:
        tables["profile.csv"] = (prof_long, "per-layer profile: each kernel call of the "
                                            "profiled points timed alone on the target")
        tables["profile_side_by_side.csv"] = (prof, "per-layer profile, conv layers as rows, "
                                                    "the profiled points side by side")
    for name, (table, _) in tables.items():
        table.to_csv(out / name, index=False)

    drawn: dict[str, Path] = {}
    specs = [
        ("pareto", "Accuracy vs latency: Pareto front", lambda: figures.pareto(ok, front),
         "Each point is one measured configuration: colour = compression, marker = model; "
         "outlined points and the dashed step line form the Pareto front of each "
         "(dataset, hardware); horizontal bars span min–p90 of the timed repeats.",
         "no ok point has both an accuracy and a latency"),
        ("correlations", "Size, accuracy and latency: rank correlations",
         lambda: figures.correlations(ok, obs[0].table),
         "Every ok point, per (dataset, hardware); Spearman's ρ with its two-sided p-value and n "
         "in each panel's title.", "no ok points"),
        ("speedup", "Speedup of each compression technique per hardware",
         lambda: figures.speedup(sp),
         "Ratio of median latencies, none / technique, for points equal in every other layer "
         "(each dot: one dataset × model × primitive × codegen); bars are medians, whiskers "
         "combine min–p90 of both measurements.",
         "no compressed point has an uncompressed twin (compression=none with the same model, "
         "primitive, codegen and hardware)"),
        ("best_primitive", "Best primitive per codegen and quantization level",
         lambda: figures.best_primitive(rel),
         "Each cell: the primitive's latency over the fastest primitive's of the same dataset, "
         "model, compression and hardware, geometric mean over those groups (1.00× = always "
         "the fastest), and how often it was the fastest.",
         "no (model, compression, codegen, hardware) was measured with ≥ 2 primitives"),
        ("tuning", "Untuned vs tuned per primitive", lambda: figures.tuning(tp),
         "Ratio of median latencies, untuned / tuned, for points equal in every other layer "
         "(each dot: one dataset × model × compression); bars are medians, whiskers combine "
         "min–p90 of both measurements.",
         "no point was measured both untuned and with a tuning codegen (e.g. autoschedule)"),
        ("status", "Points per layer value and status", lambda: figures.status(df),
         "Where the unsupported and failed points are (their reasons are in the table below).",
         "no points"),
    ]
    if searched is not None:
        ref = searched["reference"]
        specs.append((
            "search", f"Search {search.name}: the front found and the trials over time",
            lambda: figures.search(searched["trials"], searched["grid"], search.objectives,
                                   searched["grid_hv"]),
            "Left: the first two objectives of every measured point of the report (grey) and of "
            "the search's complete trials (coloured by trial number), with each one's front. "
            "Right: the hypervolume of the searched front after each trial and the grid's "
            "(objectives to maximize negated; reference point: the grid's worst value of each "
            f"objective plus {REF_MARGIN:.0%} of its range"
            + (f", here {', '.join(f'{v:.4g}' for v in ref)}" if ref is not None else "") + ").",
            "the search has no complete trial"))
    fig_entries = []
    for fid, title, draw, caption, missing in specs:
        fig = draw()
        png = figures.save(fig, out / f"{fid}.png") if fig is not None else None
        if png:
            drawn[fid] = png
        fig_entries.append((fid, title, png, caption if png else missing))

    page = html.write(out / "report.html", info=info, observations=obs, obs_csv=OBS_CSV,
                      figures=fig_entries, not_ok=not_ok, int8=int8, emulated=emulated,
                      search=None if searched is None else (search.name, searched["table"]),
                      profile=prof, rounds=rounds,
                      tables={what: (out / name, len(t)) for name, (t, what) in tables.items()})
    return Report(html=page, info=info, observations=obs, figures=drawn,
                  tables={name: t for name, (t, _) in tables.items()})
