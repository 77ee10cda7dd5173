"""The study's four observations, each checked against the measurements with its statistic.

A verdict is one of HOLDS, DOES_NOT_HOLD or NOT_ENOUGH; each comes with the numbers behind it
and the rule that turned them into the verdict. Without the points a check needs, the verdict
is NOT_ENOUGH and the statistic says what is missing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from dlas.report import stats

HOLDS, DOES_NOT_HOLD, NOT_ENOUGH = "holds", "does not hold", "not enough data"
RHO_SMALL = 0.3       # |rho| below this is a weak association at best
ALPHA = 0.05
HW_SPREAD = 1.2       # per-hardware median speedups differing by >= 20% = hardware-dependent
CLEAR_MARGIN = 1.05   # a winner >= 5% ahead of its runner-up is not a coin flip of noise


@dataclass
class Observation:
    slug: str
    claim: str
    verdict: str
    statistic: str
    rule: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def uncorrelated(ok: pd.DataFrame) -> Observation:
    rule = (f"Spearman's ρ per pair within each (dataset, hardware); a pair is correlated when "
            f"|ρ| ≥ {RHO_SMALL} and p ≤ {ALPHA}. Holds when no pair is correlated and each pair "
            f"was tested somewhere (n ≥ {stats.MIN_N}, neither variable constant).")
    table = stats.correlations(ok)
    claim = "Size, accuracy and latency are not correlated"
    tested = table[table["rho"].notna()].copy()
    if tested.empty:
        why = "; ".join(sorted({f"{r.dataset}/{r.hardware}: {r.note}" for r in table.itertuples()}))
        return Observation("uncorrelated", claim, NOT_ENOUGH,
                           f"No pair could be tested ({why or 'no ok points'}).", rule, table)
    table["correlated"] = [None if r is None or pd.isna(r) else bool(abs(r) >= RHO_SMALL and p <= ALPHA)
                           for r, p in zip(table["rho"], table["p"])]
    tested = table[table["rho"].notna()]

    def say(r) -> str:
        return (f"{stats.NAMES[r.x]}–{stats.NAMES[r.y]} ρ={r.rho:+.2f} (p={_fmt_p(r.p)}, "
                f"n={r.n}) on {r.dataset}/{r.hardware}")

    correlated = tested[tested["correlated"].astype(bool)]
    untested = sorted({f"{stats.NAMES[x]}–{stats.NAMES[y]}" for x, y in stats.PAIRS}
                      - {f"{stats.NAMES[r.x]}–{stats.NAMES[r.y]}" for r in tested.itertuples()})
    if not correlated.empty:
        return Observation("uncorrelated", claim, DOES_NOT_HOLD,
                           "Correlated: " + "; ".join(say(r) for r in correlated.itertuples())
                           + f" ({len(correlated)} of {len(tested)} tested pairs).", rule, table)
    if untested:
        return Observation("uncorrelated", claim, NOT_ENOUGH,
                           "No tested pair is correlated (" + "; ".join(
                               say(r) for r in tested.itertuples()) + "), but "
                           + ", ".join(untested) + " could not be tested.", rule, table)
    return Observation("uncorrelated", claim, HOLDS, "No pair is correlated: " + "; ".join(
        say(r) for r in tested.itertuples()) + ".", rule, table)


def machines(ok: pd.DataFrame) -> dict[str, str]:
    """Hardware label -> the physical machine it ran on (rows' `hardware_machine`; rows
    without it: the label itself)."""
    if "hardware_machine" not in ok:
        return {}
    return {h: m for h, m in zip(ok["hardware"], ok["hardware_machine"]) if isinstance(m, str)}


def _variants_note(labels, machine_of: dict[str, str]) -> str:
    by_machine: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        by_machine.setdefault(machine_of.get(label, label), []).append(label)
    shared = [(m, hw) for m, hw in sorted(by_machine.items()) if len(hw) > 1]
    return "".join(f" {', '.join(hw)} are variants of one machine ({m}: ISA level or threads), "
                   f"not different hardware." for m, hw in shared)


def speedup_depends_on_hardware(sp: pd.DataFrame, machine_of: dict[str, str] | None = None
                                ) -> Observation:
    claim = "Compression's speedup depends on the hardware"
    rule = (f"Speedup = median latency of `none` / of the technique, same other layers. For each "
            f"technique, over the configurations (dataset, model, primitive, codegen) measured on "
            f"≥ 2 hardware: holds when the per-hardware median speedups differ by ≥ "
            f"{HW_SPREAD:.1f}× or one hardware clearly speeds up (≥ {CLEAR_MARGIN:.2f}×) where "
            f"another clearly slows down (≤ 1/{CLEAR_MARGIN:.2f}×).")
    config = ["dataset", "model", "primitive", "codegen"]
    if sp.empty:
        return Observation("speedup_hardware", claim, NOT_ENOUGH,
                           "No compressed point has an uncompressed (`none`) point with the same "
                           "other layers.", rule, sp)
    hw_per_config = sp.groupby(["compression"] + config)["hardware"].transform("nunique")
    matched = sp[hw_per_config >= 2]
    if matched.empty:
        have = ", ".join(sorted(sp["hardware"].unique()))
        return Observation("speedup_hardware", claim, NOT_ENOUGH,
                           f"Speedups were measured on one hardware per configuration only "
                           f"(hardware: {have}); needs the same points on ≥ 2 hardware."
                           + _variants_note(sp["hardware"], machine_of or {}), rule,
                           stats.ranges(sp, ["compression", "hardware"]))
    table = stats.ranges(matched, ["compression", "hardware"])
    parts, depends = [], 0
    for tech, g in table.groupby("compression", sort=True):
        spread = g["median"].max() / g["median"].min()
        # 1.06× on one and 0.98× on another is within the noise of either: not a flip
        flips = (g["median"] >= CLEAR_MARGIN).any() and (g["median"] <= 1 / CLEAR_MARGIN).any()
        depends += bool(spread >= HW_SPREAD or flips)
        per_hw = ", ".join(f"{r.hardware} {r.min:.2f}–{r.max:.2f}× (median {r.median:.2f}, "
                           f"n={r.n})" for r in g.itertuples())
        parts.append(f"{tech}: {per_hw}; medians differ {spread:.2f}×"
                     + (", speedup on one, slowdown on another" if flips else ""))
    n = table["compression"].nunique()
    verdict = HOLDS if depends else DOES_NOT_HOLD
    return Observation("speedup_hardware", claim, verdict,
                       f"Hardware-dependent for {depends} of {n} techniques. " + "; ".join(parts)
                       + "." + _variants_note(table["hardware"], machine_of or {}), rule, table)


def _flip_summary(flips: pd.DataFrame, what: str, a: str, b: str) -> tuple[str, str]:
    """k flips, of which `clear` ones: both winners >= CLEAR_MARGIN ahead of their runner-up
    and apart from it (stats._best: the runner-up's fastest repeat slower than the winner's
    median). Flips that are all within the spread are noise as far as the data can tell."""
    k = int(flips["flipped"].sum())
    clear = int((flips["flipped"] & (flips[f"margin_{a}"] >= CLEAR_MARGIN)
                 & (flips[f"margin_{b}"] >= CLEAR_MARGIN)
                 & flips[f"separated_{a}"] & flips[f"separated_{b}"]).sum())
    verdict = HOLDS if clear else NOT_ENOUGH if k else DOES_NOT_HOLD
    text = (f"The fastest primitive differs in {k} of {len(flips)} {what}"
            + (f" ({clear} of the {k} clear: both winners ≥ {100 * (CLEAR_MARGIN - 1):.0f}% ahead "
               f"of their runner-up, whose fastest repeat was slower than the winner's median)"
               if k else "") + ".")
    if k and not clear:
        text += (" None is clear of the measurements' spread: re-time the points side by side "
                 "(remeasure=N) on a quiet machine.")
    flipped = flips[flips["flipped"]]
    seen = Counter(f"{x} → {y}" for x, y in zip(flipped[f"best_{a}"], flipped[f"best_{b}"]))
    if seen:
        text += " Flips: " + ", ".join(f"{what} ({n}×)" for what, n in seen.most_common()) + "."
    return verdict, text


def tuning_changes_best_primitive(ok: pd.DataFrame) -> Observation:
    claim = "Tuning changes the best primitive"
    rule = ("For each (dataset, model, compression, hardware) measured untuned and tuned on ≥ 2 "
            "common primitives: the fastest of those primitives untuned vs tuned. Holds when it "
            "differs clearly in at least one group (k of n; clear: both winners ≥ 5% ahead of, "
            "and apart from, their runner-up); flips within the spread alone are not enough.")
    flips = stats.tuning_flips(ok)
    if flips.empty:
        codegens = ", ".join(sorted(ok["codegen"].unique())) if not ok.empty else "none"
        return Observation("tuning_flip", claim, NOT_ENOUGH,
                           f"No (dataset, model, compression, hardware) has both `untuned` and a "
                           f"tuned codegen on ≥ 2 common primitives (codegens measured: "
                           f"{codegens}).", rule, flips)
    verdict, text = _flip_summary(flips, "(dataset, model, compression, hardware) groups",
                                  "untuned", "tuned")
    return Observation("tuning_flip", claim, verdict, text, rule, flips)


def quantization_changes_best_primitive(ok: pd.DataFrame) -> Observation:
    claim = "The best primitive changes with quantization"
    rule = ("For each (dataset, model, hardware, codegen) and recipe measured at float32 and "
            "quantized (int8 or float16: none vs int8, unstructured vs unstructured_int8, ...) on "
            "≥ 2 common primitives: the fastest of those primitives at each number format. Holds "
            "when it differs clearly in at least one pair (k of n; clear as for tuning).")
    flips = stats.quantization_flips(ok)
    if flips.empty:
        formats = ", ".join(sorted(ok["number_format"].dropna().unique())) if not ok.empty else "none"
        return Observation("quantization_flip", claim, NOT_ENOUGH,
                           f"No recipe was measured both at float32 and quantized on ≥ 2 common "
                           f"primitives with the same model, hardware and codegen (number formats "
                           f"measured: {formats}).", rule, flips)
    verdict, text = _flip_summary(flips, "(dataset, model, hardware, codegen, recipe) pairs of "
                                         "float32 vs quantized", "float32", "quantized")
    return Observation("quantization_flip", claim, verdict, text, rule, flips)


def check_all(ok: pd.DataFrame, sp: pd.DataFrame) -> list[Observation]:
    return [uncorrelated(ok), speedup_depends_on_hardware(sp, machines(ok)),
            tuning_changes_best_primitive(ok),
            quantization_changes_best_primitive(ok)]
