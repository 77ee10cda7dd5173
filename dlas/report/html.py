"""The report as one self-contained HTML file: inline CSS, figures as base64 data URIs, no
scripts or fonts from the network; the PNG and CSV files beside it are linked relatively."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from dlas.report.observations import DOES_NOT_HOLD, HOLDS, NOT_ENOUGH, Observation

MAX_ROWS = 40  # rows shown per table; the CSV has them all
BADGE = {HOLDS: "holds", DOES_NOT_HOLD: "nothold", NOT_ENOUGH: "nodata"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
  color:#222;background:#fafafa;line-height:1.45}
main{max-width:1160px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{margin:0 0 4px;font-size:26px} h2{margin-top:36px;border-bottom:2px solid #ddd;padding-bottom:4px}
h3{margin:26px 0 6px} .meta{color:#555;font-size:14px} .meta code{font-size:13px}
.counts span{display:inline-block;margin-right:14px;font-weight:600}
.ok{color:#2e7d32} .unsupported{color:#b7791f} .failed{color:#c0392b}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-size:13px;font-weight:700;
  color:#fff;vertical-align:middle;margin-left:8px}
.badge.holds{background:#2e7d32} .badge.nothold{background:#c0392b} .badge.nodata{background:#777}
.stat{margin:6px 0} .rule{color:#555;font-size:13px;margin:4px 0 8px}
figure{margin:10px 0 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0;display:block;overflow-x:auto;
  max-width:100%}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top;
  white-space:nowrap}
th{background:#f2f2f2} tr:nth-child(even) td{background:#fbfbfb}
td.reason{max-width:520px;word-break:break-word;white-space:normal}
nav a{margin-right:12px;font-size:14px} .note{color:#777;font-size:12.5px}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def table(df: pd.DataFrame, csv: str | None = None, wide: tuple[str, ...] = ("reason",),
          fold: bool = True, max_rows: int = MAX_ROWS) -> str:
    """At most `max_rows` rows; with `fold`, a wide table's columns equal in every row are
    named once under it instead."""
    if df is None or df.empty:
        return '<p class="note">(no rows)</p>'
    full, same = df, ""
    if fold and len(df.columns) > 8 and len(df) > 1:
        const = [c for c in df.columns if df[c].astype(str).nunique() == 1]
        df = df.drop(columns=const)
        named = [f"{_esc(c)}={_esc(_cell(full[c].iloc[0]))}" for c in const
                 if _cell(full[c].iloc[0]) != ""]
        same = f'<p class="note">In every row: {", ".join(named)}</p>' if named else ""
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    body = []
    for _, row in df.head(max_rows).iterrows():
        cells = "".join(f'<td{" class=reason" if c in wide else ""}>{_esc(_cell(row[c]))}</td>'
                        for c in df.columns)
        body.append(f"<tr>{cells}</tr>")
    more = (f'<p class="note">{len(df) - max_rows} more rows in '
            f'<a href="{_esc(csv)}">{_esc(csv)}</a></p>' if len(df) > max_rows and csv else "")
    link = (f'<p class="note">CSV: <a href="{_esc(csv)}">{_esc(csv)}</a> ({len(df)} rows)</p>'
            if csv and len(df) <= max_rows else "")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{same}{more}{link}"


def image(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def observation(obs: Observation, csv: str | None) -> str:
    return (f'<section id="obs-{obs.slug}"><h3>{_esc(obs.claim)}'
            f'<span class="badge {BADGE[obs.verdict]}">{_esc(obs.verdict)}</span></h3>'
            f'<p class="stat">{_esc(obs.statistic)}</p><p class="rule">Rule: {_esc(obs.rule)}</p>'
            f"{table(obs.table, csv)}</section>")


def write(path: Path, *, info: dict, observations: list[Observation], obs_csv: dict,
          figures: list[tuple[str, str, Path | None, str]], not_ok: pd.DataFrame,
          tables: dict[str, tuple[Path, int]], int8: pd.DataFrame | None = None,
          emulated: pd.DataFrame | None = None,
          search: tuple[str, pd.DataFrame] | None = None,
          profile: pd.DataFrame | None = None,
          rounds: pd.DataFrame | None = None) -> Path:
    """figures: (id, title, png or None, caption or why it is missing); int8: int8's
    accuracy cost per point (stats.int8_accuracy); emulated: rows of emulated boards, shown
    apart (in no figure, observation or comparison); profile: the per-layer profiles side by
    side (profiles.side_by_side); rounds: the points re-timed by remeasure
    (stats.latency_rounds)."""
    has_profile = profile is not None and not profile.empty
    counts = info["status"]
    where = ", ".join(f"{k}={'|'.join(v)}" for k, v in info["where"].items()) or "none"
    meta = (f'<p class="meta">Results store <code>{_esc(info["results"])}</code> · sweep '
            f'<code>{_esc(info["sweep"] or "all rows")}</code> · filters <code>{_esc(where)}</code>'
            f' · generated {_esc(info["generated"])}</p>'
            f'<p class="counts"><span>{info["points"]} points</span>'
            + "".join(f'<span class="{s}">{counts[s]} {s}</span>' for s in counts) + "</p>"
            + (f'<p class="meta">{info["remeasured"]} ok points share their layer labels with a '
               f"later measurement of the same layers (other settings, e.g. training); "
               f"comparisons use the latest of each.</p>" if info.get("remeasured") else "")
            + "<p class=meta>" + " · ".join(f"{_esc(k)}: {_esc(', '.join(v))}"
                                             for k, v in info["layers"].items()) + "</p>")
    nav = "<nav>" + "".join(
        f'<a href="#{a}">{t}</a>' for a, t in [("observations", "Observations")]
        + [(f"fig-{f[0]}", f[1].split(":")[0]) for f in figures]
        + ([("search", "Search")] if search is not None else [])
        + ([("profile", "Per-layer profile")] if has_profile else [])
        + ([("rounds", "Re-measured latency")] if rounds is not None and len(rounds) else [])
        + [("int8", "int8 accuracy"), ("not-ok", "Unsupported and failed")]
        + ([("emulated", "Emulated boards")] if emulated is not None and len(emulated) else [])
        + [("tables", "Tables")]) + "</nav>"
    emu = ("" if emulated is None or emulated.empty else
           '<h2 id="emulated">Emulated boards</h2><p class="meta">Measured on an aarch64 board '
           "emulated by qemu-user on this machine (python -m dlas.hardware.emulated): the "
           "compiled accuracy is the aarch64 code's, the latency is the emulator's (tens of "
           "times slower than a board) and is no hardware's, so these rows are in no figure, "
           "observation or comparison above.</p>" + table(emulated, "emulated.csv", fold=False))
    found = "" if search is None else (
        f'<h2 id="search">Search {_esc(search[0])}</h2><p class="meta">The front a search '
        "(hydra/sweeper=dlas_optuna) found against every measured point of this report: "
        "hypervolume of each front (same reference point) and its share of the grid's. "
        '</p>' + (table(search[1], "search_vs_grid.csv", fold=False) if len(search[1]) else
                  '<p class="note">No measured point of this report has every objective: '
                  "nothing to compare with.</p>"))
    prof = ("" if not has_profile else
            '<h2 id="profile">Per-layer profile</h2><p class="meta">Points measured with '
            "measure.profile=true: each kernel of the compiled model (a conv2d with its fused "
            "bias, ReLU, residual add; a pooling; a matmul) timed alone on the target "
            "(median ms, inputs in cache), its weight format, and the sum of the kernels next "
            "to the whole model's measured latency. Every call, with its function name and "
            "share of the sum, is in profile.csv.</p>"
            + table(profile, "profile_side_by_side.csv", wide=(), fold=False, max_rows=200))
    timed = ("" if rounds is None or rounds.empty else
             '<h2 id="rounds">Re-measured latency: spread across rounds</h2><p class="meta">'
             "Points re-timed without compiling (remeasure=N), all points in round 1, then all "
             "in round 2...: each round's median (ms), their spread ((max - min) / median) and "
             "the 1-minute load average during each round, the most spread first. A point's "
             "latency is the median of every round's repeats pooled.</p>"
             + table(rounds, "latency_rounds.csv", fold=False, max_rows=100))
    obs = "".join(observation(o, obs_csv.get(o.slug)) for o in observations)
    figs = []
    for fid, title, png, caption in figures:
        body = (f"<figure>{image(png, title)}<figcaption>{_esc(caption)} "
                f'(<a href="{_esc(png.name)}">{_esc(png.name)}</a>)</figcaption></figure>'
                if png else f'<p class="note">Not drawn: {_esc(caption)}</p>')
        figs.append(f'<section id="fig-{fid}"><h3>{_esc(title)}</h3>{body}</section>')
    csv_list = "".join(f'<li><a href="{_esc(p.name)}">{_esc(p.name)}</a>: {n} rows — {_esc(what)}</li>'
                       for what, (p, n) in tables.items())
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DLAS report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><main><h1>DLAS report</h1>{meta}{nav}
<h2 id="observations">Observations</h2>
<p class="meta">Each of the study's observations checked on these measurements: the verdict,
the statistic behind it, the rule that decides, and the evidence.</p>{obs}
{found}
<h2 id="figures">Figures</h2>{''.join(figs)}
{prof}
{timed}
<h2 id="int8">int8: accuracy cost and agreement</h2>
<p class="meta">Per int8 point: accuracy of the float32 model, of PyTorch's Q/DQ model
(accuracy_torch) and of the compiled model on the same samples; int8_cost = compiled - float32;
compiled_vs_qdq = compiled - Q/DQ; agreement with the Q/DQ model (prediction_agreement,
logit_rel_diff = max logit difference / max|logit|, measured, not gated) and the distance from
DLAS's integer reference (reference_rel_diff: the deploy check, int8_reference_rtol).</p>
{table(int8, "int8_accuracy.csv", fold=False)}
<h2 id="not-ok">Unsupported and failed points</h2>{table(not_ok, "not_ok.csv", fold=False)}
{emu}
<h2 id="tables">Tables</h2><ul>{csv_list}</ul>
</main></body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
