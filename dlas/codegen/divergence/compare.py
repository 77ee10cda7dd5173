"""Per-probe statistics of compiled vs PyTorch tensors, and the report's text.

Differences are counted in steps: an int8 probe's step is its quantization scale (the
difference of the int8 values is then an integer), a conv/linear output of an int8 model
takes the step of the quantize it flows into (what one step of error is worth to the next
int8 layer; its reference is PyTorch's layer on the compiled int8 input), and every other
tensor (float models, the logits) takes `rtol` x its largest PyTorch magnitude, with `rtol`
the deploy check's `logit_rtol` of the number format. An element is off by one step when
its difference rounds to one step, by more when it rounds to more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlas.codegen.divergence.probes import Probe


@dataclass
class Row:
    index: int          # position in graph order
    probe: Probe
    elements: int
    one_step: int       # elements whose difference rounds to one step
    more: int           # ... to more than one step
    max_steps: float
    max_rel: float      # max |diff| / max |reference|
    step: float

    @property
    def departs(self) -> bool:
        return self.more > 0


def compare(probes: list[Probe], reference: list[np.ndarray], compiled: list[np.ndarray],
            rtol: float) -> list[Row]:
    rows = []
    for index, (probe, ref, out) in enumerate(zip(probes, reference, compiled, strict=True)):
        if ref.shape != out.shape:
            raise ValueError(f"probe {probe.node}: compiled shape {out.shape} != {ref.shape}")
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        ref_mag = float(np.abs(ref.astype(np.float64)).max(initial=0))
        if probe.kind == "int8":  # int8 values: their difference already counts steps
            step, steps = 1.0, diff
        else:
            step = probe.scale if probe.scale is not None else rtol * (ref_mag or 1.0)
            steps = diff / step
        rounded = np.rint(steps)
        rows.append(Row(index, probe, int(diff.size), int((rounded == 1).sum()),
                        int((rounded > 1).sum()), float(steps.max(initial=0)),
                        float(diff.max(initial=0) / (ref_mag or 1.0)), float(step)))
    return rows


def first_departure(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.departs), None)


def first_layer_departure(rows: list[Row]) -> Row | None:
    """The first int8 layer that computes differently from PyTorch's on the same input."""
    return next((r for r in rows if r.departs and r.probe.input_probe), None)


def describe(row: Row) -> str:
    p = row.probe
    what = {"int8": f"int8 input of {p.layer}",
            "layer": f"output of {p.layer}" + (" on the compiled input" if p.input_probe else ""),
            "output": "model output"}[p.kind]
    via = f", computed by {' -> '.join(p.via)}" if p.via else ""
    return f"#{row.index} {p.node} ({what}{via})"


def _percent(count: int, total: int) -> str:
    return f"{100 * count / max(total, 1):.3g}%" if count else "0"


def report(rows: list[Row], title: str = "") -> str:
    """The table (one line per probe, graph order) and the verdict lines."""
    head = ("#", "probe", "kind", "layer", "via", "elements", "1 step", ">1 step", "max steps",
            "max rel")
    lines = [[str(r.index), r.probe.node, r.probe.kind, r.probe.layer, ",".join(r.probe.via),
              str(r.elements), _percent(r.one_step, r.elements), _percent(r.more, r.elements),
              f"{r.max_steps:.3g}", f"{r.max_rel:.3g}"] for r in rows]
    widths = [max(len(h), *(len(line[c]) for line in lines)) if lines else len(h)
              for c, h in enumerate(head)]
    right = {0, 5, 6, 7, 8, 9}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = ([title] if title else []) + [fmt(head)] + [fmt(line) for line in lines]
    if any(r.probe.input_probe for r in rows):
        layer = first_layer_departure(rows)
        out.append("first layer off by more than one step on the same int8 input: "
                   + (describe(layer) + f": {layer.more} of {layer.elements} elements, up to "
                      f"{layer.max_steps:.3g} steps" if layer else "none"))
    first = first_departure(rows)
    if first is None:
        out.append("no probe departs by more than one step")
    else:
        out.append(f"first departure by more than one step: {describe(first)}: "
                   f"{first.more} of {first.elements} elements, up to {first.max_steps:.3g} steps")
    return "\n".join(out)
