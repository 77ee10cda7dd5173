"""The report's figures (matplotlib, Agg): each function takes the tables of stats.py and
returns a Figure, or None when there is nothing to draw.

Readability rules: units on every axis, legends outside the data, no text placed on the data
except heatmap cells, a log axis when values span more than a decade, constrained layout.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from dlas.report.stats import PAIRS  # noqa: E402
from dlas.store.results import LAYERS  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
STATUS_COLORS = {"ok": "#4c9a2a", "unsupported": "#d9a21b", "failed": "#c0392b"}
WIDTH = 11.0  # inches; at DPI 100 a figure fits a 1100 px column
DPI = 100
LABELS = {"size_mib": "size as stored (MiB)", "accuracy": "accuracy, compiled (%)",
          "latency_ms": "latency, median (ms)"}

plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
                     "legend.fontsize": 9, "figure.dpi": DPI, "axes.grid": True,
                     "grid.alpha": 0.3})


def palette(values) -> dict:
    cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
    return {v: cmap(i % cmap.N) for i, v in enumerate(sorted(values))}


def markers(values) -> dict:
    return {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(sorted(values))}


def _spans_decades(values) -> bool:
    v = pd.Series(values, dtype=float).dropna()
    v = v[v > 0]
    return len(v) > 1 and v.max() / v.min() > 10


def _log(ax, axis: str, values, suffix: str = ""):
    """A log axis with plain-number labels (1, 2, 5, 10, ...), as many as fit, no minor labels."""
    v = pd.Series(values, dtype=float).dropna()
    v = v[v > 0]
    decades = np.log10(v.max() / v.min()) if len(v) > 1 else 0
    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    subs = ((1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 0.8
            else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    target.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
    target.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}{suffix}"))
    target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _grid(n: int, ncols: int = 2, height: float = 4.2, width: float = WIDTH):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows),
                             layout="constrained", squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _legend(fig, colors: dict, shapes: dict | None, color_title: str, shape_title: str = ""):
    """Legends to the right of the axes (never over data)."""
    handles = [Line2D([], [], ls="", marker="o", color=c, label=v) for v, c in colors.items()]
    fig.legend(handles=handles, title=color_title, loc="outside right upper")
    if shapes:
        handles = [Line2D([], [], ls="", marker=m, color="0.3", label=v)
                   for v, m in shapes.items()]
        fig.legend(handles=handles, title=shape_title, loc="outside right lower")


def pareto(ok: pd.DataFrame, front: pd.Series):
    """Accuracy vs latency per (dataset, hardware), coloured by compression, marked by model,
    x error bars min–p90 of the repeats, the Pareto front drawn as a step line."""
    data = ok[ok["latency_ms"].notna() & ok["accuracy"].notna()]
    if data.empty:
        return None
    colors, shapes = palette(data["compression"].unique()), markers(data["model"].unique())
    facets = list(data.groupby(["dataset", "hardware"], sort=True))
    fig, axes = _grid(len(facets))
    for ax, ((dataset, hardware), g) in zip(axes, facets):
        for _, r in g.iterrows():
            lo = r["latency_ms"] - (r["latency_ms_min"] if pd.notna(r["latency_ms_min"])
                                    else r["latency_ms"])
            hi = (r["latency_ms_p90"] if pd.notna(r["latency_ms_p90"]) else r["latency_ms"]) \
                - r["latency_ms"]
            on = bool(front.get(r.name, False))
            ax.errorbar(r["latency_ms"], 100 * r["accuracy"], xerr=[[max(lo, 0)], [max(hi, 0)]],
                        fmt=shapes[r["model"]], color=colors[r["compression"]],
                        ms=9 if on else 6, mec="black" if on else colors[r["compression"]],
                        mew=1.4 if on else 0.5, elinewidth=0.8, capsize=2, alpha=0.9, zorder=3)
        f = g[front.reindex(g.index, fill_value=False)].sort_values("latency_ms")
        if len(f):
            ax.step(f["latency_ms"], 100 * f["accuracy"], where="post", color="black", lw=1.2,
                    ls="--", zorder=2, label="Pareto front")
            ax.legend(loc="lower right")
        if _spans_decades(g["latency_ms"]):
            _log(ax, "x", g["latency_ms"])
        ax.set_title(f"{dataset} on {hardware} ({len(g)} points, {len(f)} on the front)")
        ax.set_xlabel("latency, median (ms); bars: min–p90 of repeats")
        ax.set_ylabel("accuracy, compiled (%)")
    _legend(fig, colors, shapes, "compression", "model")
    fig.suptitle("Accuracy vs latency and its Pareto front (up and to the left is better)")
    return fig


def correlations(ok: pd.DataFrame, corr: pd.DataFrame):
    """Size, accuracy and latency pairwise, one row of panels per (dataset, hardware), with
    Spearman's rho, p and n in each panel's title."""
    facets = list(ok.groupby(["dataset", "hardware"], sort=True))
    if not facets:
        return None
    colors = palette(ok["compression"].unique())
    fig = plt.figure(figsize=(WIDTH, 3.6 * len(facets)), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(facets), 1))
    for sub, ((dataset, hardware), g) in zip(subfigs, facets):
        sub.suptitle(f"{dataset} on {hardware} ({len(g)} points)", fontsize=10,
                     fontweight="bold")
        for ax, (x, y) in zip(sub.subplots(1, 3), PAIRS):
            scale = {c: 100 if c == "accuracy" else 1 for c in (x, y)}
            ax.scatter(g[x] * scale[x], g[y] * scale[y], s=28,
                       c=[colors[c] for c in g["compression"]], edgecolors="0.2", linewidths=0.4)
            for col, axis in ((x, "x"), (y, "y")):
                if col != "accuracy" and _spans_decades(g[col]):
                    _log(ax, axis, g[col])
            s = corr[(corr["dataset"] == dataset) & (corr["hardware"] == hardware)
                     & (corr["x"] == x) & (corr["y"] == y)]
            s = s.iloc[0] if len(s) else None
            stat = ("n/a" if s is None else
                    f"ρ = {s['rho']:+.2f} (p = {s['p']:.2g}, n = {s['n']})" if pd.notna(s["rho"])
                    else f"ρ undefined: {s['note']}")
            ax.set_title(stat)
            ax.set_xlabel(LABELS[x])
            ax.set_ylabel(LABELS[y])
    _legend(fig, colors, None, "compression")
    fig.suptitle("Size, accuracy and latency: Spearman rank correlation per pair")
    return fig


def _strip(ax, table: pd.DataFrame, category: str, hue: str, colors: dict, ylabel: str):
    """Points per category (offset per hue) with lo–hi error bars and a median tick."""
    cats = sorted(table[category].unique())
    hues = sorted(table[hue].unique())
    width = 0.7 / max(len(hues), 1)
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice looks the same
    for i, cat in enumerate(cats):
        for j, h in enumerate(hues):
            g = table[(table[category] == cat) & (table[hue] == h)]
            if g.empty:
                continue
            x0 = i - 0.35 + width * (j + 0.5)
            xs = x0 + rng.uniform(-width / 4, width / 4, len(g))
            y = g["speedup"].to_numpy()
            err = [np.clip(y - g["speedup_lo"].fillna(pd.Series(y, index=g.index)).to_numpy(), 0, None),
                   np.clip(g["speedup_hi"].fillna(pd.Series(y, index=g.index)).to_numpy() - y, 0, None)]
            ax.errorbar(xs, y, yerr=err, fmt="o", ms=5, color=colors[h], elinewidth=0.7,
                        capsize=2, alpha=0.85, zorder=3)
            med = float(np.median(y))
            ax.hlines(med, x0 - width * 0.45, x0 + width * 0.45, color=colors[h], lw=2.5, zorder=4)
    ax.axhline(1.0, color="0.3", lw=1, ls=":", zorder=1)
    _log(ax, "y", pd.concat([table["speedup_lo"], table["speedup_hi"], pd.Series([1.0])]), "×")
    ax.set_xticks(range(len(cats)), cats, rotation=20 if len(cats) > 4 else 0,
                  ha="right" if len(cats) > 4 else "center")
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set_ylabel(ylabel)


def speedup(sp: pd.DataFrame):
    """Speedup of each compression technique over `none`, per hardware."""
    if sp.empty:
        return None
    colors = palette(sp["hardware"].unique())
    fig, ax = plt.subplots(figsize=(WIDTH, 4.6), layout="constrained")
    _strip(ax, sp, "compression", "hardware", colors,
           "speedup vs none (×; latency none / technique)")
    ax.set_xlabel("compression technique")
    _legend(fig, colors, None, "hardware")
    fig.suptitle("Speedup of each compression technique over the uncompressed model")
    return fig


def tuning(tp: pd.DataFrame):
    """Speedup of each tuned codegen over untuned, per primitive."""
    if tp.empty:
        return None
    codegens = sorted(tp["codegen"].unique())
    colors = palette(tp["hardware"].unique())
    fig, axes = _grid(len(codegens), ncols=1, height=4.4)
    for ax, codegen in zip(axes, codegens):
        _strip(ax, tp[tp["codegen"] == codegen], "primitive", "hardware", colors,
               f"speedup of {codegen} (×; untuned / tuned)")
        ax.set_xlabel("primitive")
    _legend(fig, colors, None, "hardware")
    fig.suptitle("Untuned vs tuned code generation, per primitive")
    return fig


def best_primitive(rel: pd.DataFrame):
    """Heatmap: each primitive's latency relative to the fastest primitive of its group,
    geometric mean per (codegen, number format), with how often it was the fastest."""
    rel = rel[rel["group_size"] >= 2]
    if rel.empty:
        return None
    rel = rel.assign(column=rel["codegen"] + "\n" + rel["number_format"].fillna("?"))
    g = rel.groupby(["primitive", "column"])
    geo = g["relative"].apply(lambda s: float(np.exp(np.log(s).mean()))).unstack()
    wins = g["is_best"].sum().unstack()
    count = g.size().unstack()
    prims, cols = list(geo.index), list(geo.columns)
    fig, ax = plt.subplots(figsize=(min(WIDTH, 3.5 + 1.8 * len(cols)), 1.9 + 0.5 * len(prims)),
                           layout="constrained")
    values = geo.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    norm = LogNorm(vmin=1.0, vmax=max(float(finite.max()), 1.01))
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", norm=norm, aspect="auto")
    for i, p in enumerate(prims):
        for j, c in enumerate(cols):
            if np.isfinite(values[i, j]):
                dark = norm(values[i, j]) > 0.55
                ax.text(j, i, f"{values[i, j]:.2f}× ({int(wins.loc[p, c])}/{int(count.loc[p, c])})",
                        ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(prims)), prims)
    ax.grid(False)
    ax.set_xlabel("codegen / number format")
    ax.set_ylabel("primitive")
    bar = fig.colorbar(im, ax=ax, label="× the fastest (geo. mean)")
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.set_title("Latency relative to the fastest primitive (times fastest / groups)")
    return fig


def status(df: pd.DataFrame):
    """Points per layer value and status: where the not-ok points are."""
    layers = [layer for layer in LAYERS if df[f"{layer}_name"].nunique() > 0]
    rows = max(df[f"{layer}_name"].nunique() for layer in layers)
    fig, axes = _grid(len(layers), ncols=3, height=0.32 * rows + 1.3)
    for ax, layer in zip(axes, layers):
        counts = df.groupby([f"{layer}_name", "status"]).size().unstack(fill_value=0)
        left = np.zeros(len(counts))
        for st, color in STATUS_COLORS.items():
            if st in counts:
                ax.barh(range(len(counts)), counts[st], left=left, color=color, label=st,
                        height=0.7)
                left += counts[st].to_numpy()
        ax.set_yticks(range(len(counts)), [str(v) for v in counts.index])
        ax.set_ylim(rows - 0.5, -0.5)  # the same bar thickness in every panel
        ax.set_title(layer)
        ax.set_xlabel("points")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5, integer=True))
        ax.grid(axis="y", visible=False)
    handles = [Line2D([], [], lw=8, color=c, label=s) for s, c in STATUS_COLORS.items()]
    fig.legend(handles=handles, title="status", loc="outside right upper")
    fig.suptitle("Points per layer value and status")
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def search(trials: pd.DataFrame, grid: pd.DataFrame, objectives: dict, grid_hv: float | None):
    """A search against the grid: the first two objectives (grid points grey, searched points
    coloured by trial number, both fronts) and the hypervolume of the searched front after
    each trial next to the grid's."""
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        return None
    names = list(objectives)
    fig, axes = _grid(2 if len(names) >= 2 and "hypervolume" in trials else 1)
    if len(names) >= 2:
        ax, (x, y) = axes[0], names[:2]
        ax.scatter(grid[x], grid[y], s=22, color="0.75", label=f"grid ({len(grid)})", zorder=2)
        for data, on, color, label in ((grid, grid.get("grid_front"), "0.3", "grid front"),
                                       (done, done["on_front"], "tab:red", "search front")):
            if on is not None and on.any():
                f = data[on.astype(bool)].sort_values(x)  # (a line: the directions vary)
                ax.plot(f[x], f[y], color=color, lw=1.2, ls="--", label=label)
        sc = ax.scatter(done[x], done[y], c=done["number"], cmap="viridis", s=40,
                        edgecolors="black", linewidths=0.5, zorder=3, label="searched")
        fig.colorbar(sc, ax=ax, label="trial number").ax.yaxis.set_major_locator(
            matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel(f"{x} ({objectives[x]})")
        ax.set_ylabel(f"{y} ({objectives[y]})")
        ax.legend(loc="best", fontsize=8)
        ax.set_title("searched points against the grid")
    if "hypervolume" in trials:
        ax = axes[-1]
        ax.step(trials["number"], trials["hypervolume"], where="post", color="tab:red",
                label="search: front so far")
        if grid_hv:
            ax.axhline(grid_hv, color="0.3", ls="--", label="grid: every measured point")
        ax.set_xlabel("trial number")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel("hypervolume")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("hypervolume over the trials")
    fig.suptitle("Search: the front found and the trials over time")
    return fig
