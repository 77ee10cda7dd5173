"""The table of benchmarks/codegen.py: its rows as text (and CSV), the round-by-round ratios
between rows, and the goals of DLAS issue 14 checked on them."""
from __future__ import annotations

import csv


# -- the table ---------------------------------------------------------------------------------

COLUMNS = ["model", "precision", "method", "trials", "median_ms", "std_ms", "cv", "best_ms",
           "x_untuned", "x_ort", "tuning_s", "build_s", "rel_diff", "note"]
HEADER = (f"{'model':11s} {'prec':4s} {'method':34s} {'trials':>6s} {'latency ms':>17s} "
          f"{'cv':>5s} {'best rnd':>8s} {'x untuned':>9s} {'x ORT':>6s} {'tuning s':>8s} "
          f"{'build s':>7s} {'max|diff|':>9s}  note")


def _num(value, width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if isinstance(value, int | float) else f"{'-':>{width}s}"


def row_text(r: dict) -> str:
    head = f"{r['model']:11s} {r['precision']:4s} {r['method']:34s} {_num(r.get('trials'), 6, 'd')}"
    if "error" in r:
        return f"{head} FAILED {r['error']}"
    return (f"{head} {r['median_ms']:8.3f} ± {r['std_ms']:6.3f} {r['cv']:5.2f} "
            f"{r['best_ms']:8.3f} "
            f"{_num(r.get('x_untuned'), 8, '.2f')}{'x' if r.get('x_untuned') else ' '} "
            f"{_num(r.get('x_ort'), 5, '.2f')}{'x' if r.get('x_ort') else ' '} "
            f"{_num(r.get('tuning_s'), 8, '.1f')} {_num(r.get('build_s'), 7, '.1f')} "
            f"{_num(r.get('rel_diff'), 9, '.1e')}  {r.get('note', '')}")


class Table:
    def __init__(self, csv_path: str | None):
        self.rows: list[dict] = []
        self.csv_path = csv_path

    def add(self, row: dict) -> dict:
        self.rows.append(row)
        print(row_text(row), flush=True)
        if self.csv_path:
            with open(self.csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, COLUMNS + ["error"], extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.rows)
        return row


def lat_fields(lat: dict) -> dict:
    return {"median_ms": lat["latency_ms_median"], "std_ms": lat["latency_ms_std"],
            "cv": lat["latency_cv"]}


def paired_ratio(base: dict, row: dict) -> float:
    """base's time over row's, round by round (both timed in the same round, close in time,
    so the machine's state of the moment cancels out), the median over the rounds."""
    import numpy as np

    return float(np.median([b / r for b, r in zip(base["round_medians"], row["round_medians"])]))


# -- the goals of issue 14 -----------------------------------------------------------------------

TUNED_VS_ORT = {"resnet18": 0.9, "mobilenetv2": 1.0}  # tuned fp32 time / ORT fp32 time, at most


def goals(rows: list[dict]) -> None:
    """The goals of DLAS issue 14: DLAS against ONNX Runtime and tuned against untuned with
    the rows' paired ratios; int8 against float32 (two tables) with their best rounds."""
    ok = [r for r in rows if "error" not in r]

    def best(model, prec, pred):
        found = [r for r in ok if r["model"] == model and r["precision"] == prec and pred(r)]
        return min(found, key=lambda r: r["best_ms"]) if found else None

    def dlas(r):
        return r["method"].startswith("dlas") and not r["method"].endswith(" plain")

    def is_tuned(r):
        return dlas(r) and r.get("trials") is not None

    def line(what, ratio, goal, met):
        print(f"  {what}: {ratio:.2f}x -> {'met' if met else 'not met'} (goal {goal})")

    print("\ngoals (DLAS issue 14; ratios of times: paired per round within a table, best "
          "rounds across the fp32 and int8 tables):")
    speedups = []
    for model in dict.fromkeys(r["model"] for r in ok):
        int8 = best(model, "int8", dlas)
        fp32 = best(model, "fp32", dlas)
        tuned = best(model, "fp32", is_tuned)
        if int8 and int8.get("x_ort"):
            line(f"{model} DLAS int8 ({int8['method']}) / ONNX Runtime int8", 1 / int8["x_ort"],
                 "<= 1.0x", int8["x_ort"] >= 1)
        if int8 and fp32:
            line(f"{model} DLAS fp32 {fp32['best_ms']:.3f} ms / DLAS int8 "
                 f"{int8['best_ms']:.3f} ms", fp32["best_ms"] / int8["best_ms"], ">= 2x",
                 fp32["best_ms"] >= 2 * int8["best_ms"])
        if tuned and tuned.get("x_ort"):
            bar = TUNED_VS_ORT.get(model, 1.0)
            line(f"{model} DLAS tuned fp32 ({tuned['method']}, {tuned['trials']} trials, "
                 f"tuning {tuned['tuning_s']:.0f} s) / ONNX Runtime fp32", 1 / tuned["x_ort"],
                 f"<= {bar}x", 1 / tuned["x_ort"] <= bar)
        for prec in ("fp32", "int8"):  # int8 tasks search the tensorized space too
            fast = best(model, prec, is_tuned)
            if fast and fast.get("x_untuned"):
                speedups.append((fast["x_untuned"], f"{model} {prec}"))
                print(f"  {model} {prec} tuned over untuned ({fast['method'].split()[1]}, "
                      f"tuning {fast['tuning_s']:.0f} s): {fast['x_untuned']:.2f}x")
    if speedups:
        top, model = max(speedups)
        print(f"  tuned over untuned, best model ({model}): {top:.2f}x -> "
              f"{'met' if top >= 1.2 else 'not met'} (goal >= 1.2x on at least one model)")
