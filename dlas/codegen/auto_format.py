"""primitive.format=auto: per conv2d layer dense or csr, whichever its kernel runs faster on
the target, timed at compile time.

The model is built twice with the default (untuned) schedules, dense and csr (the csr build
takes the layers whose sparsity reaches sparsity_threshold); both kernel libraries are
loaded on the target through RPC, and each layer's two kernels are timed alone there
(dlas/hardware/profile.py), alternating dense / csr for ROUNDS rounds. A kernel's time is
the fastest repeat over all rounds: a busy machine only ever adds time, so the minimum is
the estimate least moved by load that comes and goes (with 2 rounds of medians, a
contended round decided layers). A layer goes csr only when its csr kernel's time is below
(1 - MARGIN) x its dense kernel's: a layer whose kernels are within the noise stays dense,
so the model is never slower than dense by the rule's own measurements. The final build
then computes each layer in its chosen format (LayerChoice) with the point's codegen; the
row's `format_choices` says, per layer, the two times and why.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from dlas.codegen.pipeline import Build
from dlas.codegen.profile import kernel_library
from dlas.primitives.base import AUTO, LegalizeFunc, Primitive, Record
from dlas.primitives.legalize_utils import constant_array
from dlas.primitives.triage import layer_key

CONV2D = "relax.nn.conv2d"
SPARSE = "csr"
ROUNDS = 4    # alternations dense / csr per layer
REPEAT = 3   # timed repeats per kernel and round (each >= the measurement's min_repeat_ms)
# a csr kernel must beat the dense one by this much: the spread of one kernel's fastest
# repeat between runs on the 2-core project machine is a few percent
MARGIN = 0.05


class LayerChoice(Primitive):
    """`base` with each constant-weight conv2d in the format `choices` gives its layer key
    (triage.layer_key): csr, or dense (the default). Built per compile, not from config."""

    def __init__(self, base: Primitive, choices: dict[str, str]):
        self.base, self.choices = base, dict(choices)
        self.name, self.format = base.name, AUTO
        self.sparsity_threshold = base.sparsity_threshold

    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        dense = self.base.with_format("dense").legalize_map(record)[CONV2D]
        sparse = self.base.with_format(SPARSE).legalize_map(record)[CONV2D]

        def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
            key = layer_key(call, constant_array(bb, call.args[1]))
            return (sparse if self.choices.get(key) == SPARSE else dense)(bb, call)

        return {CONV2D: legalize}

    def schedule_rules(self, target):
        return self.base.with_format(SPARSE).schedule_rules(target)


def resolve(mod: tvm.IRModule, primitive: Primitive, target: tvm.target.Target,
            hardware=None) -> tuple[Primitive, list[dict]]:
    """(the primitive to build with, the per-layer choices for the row): `primitive`
    itself and [] unless its format is auto."""
    if primitive.format != AUTO:
        return primitive, []
    decisions = choose(mod, primitive, target, hardware)
    chosen = {d["key"]: d["format"] for d in decisions if d.get("key")}
    return LayerChoice(primitive, chosen), decisions


def choose(mod: tvm.IRModule, primitive: Primitive, target: tvm.target.Target,
           hardware=None) -> list[dict]:
    """Per conv2d layer: its description, dense_ms and csr_ms (when it could go csr), the
    format chosen and why."""
    from dlas.codegen.untuned import Untuned  # (untuned builds the candidates)
    from dlas.hardware.base import LocalCPU  # codegen must not import hardware at load time
    from dlas.hardware.measure import Measurement
    from dlas.hardware.profile import time_call

    hardware = hardware if hardware is not None else LocalCPU(target=target)
    # (dense on NCHW activations, as the final build computes it: its csr layers are NCHW)
    builds = {fmt: Untuned().build(mod, primitive.with_format(fmt).nchw(), target)
              for fmt in ("dense", SPARSE)}
    layers = {fmt: {c["layer"]["key"]: c for c in b.profile.calls if c.get("layer", {}).get("key")}
              for fmt, b in builds.items()}
    decisions = []
    candidates = []
    for call in sorted(layers[SPARSE].values(), key=lambda c: c["layer"]["index"]):
        layer = call["layer"]
        d = {k: layer.get(k) for k in ("index", "key", "weight", "stride", "sparsity", "macs")}
        if not layer["sparse"]:
            d.update(format="dense", why=layer.get("fallback") or
                     f"sparsity {layer['sparsity']} below sparsity_threshold "
                     f"{primitive.sparsity_threshold}")
        elif layer["key"] not in layers["dense"]:
            d.update(format="dense", why="no dense kernel of this layer to compare with")
        else:
            candidates.append((d, layers["dense"][layer["key"]], call))
        decisions.append(d)
    unmatched = builds[SPARSE].stats["sparse_layers"] - sum(
        c["layer"]["sparse"] for c in layers[SPARSE].values())
    if unmatched:  # (profile.py's matching missed a kernel: it would silently stay dense)
        raise RuntimeError(f"format=auto: {unmatched} sparse layers of the csr build not found "
                           "among its compiled calls")
    if not candidates:
        return decisions

    measure = Measurement(profile_repeat=REPEAT)
    with tempfile.TemporaryDirectory(prefix="dlas-auto-") as tmp, hardware.session() as session:
        libs = {}
        for fmt, built in builds.items():
            path = hardware.export(kernel_library(built.executable), Path(tmp) / f"{fmt}.so")
            libs[fmt] = measure.load(session, path, hardware.runtime_device)[:2]
        for d, dense_call, sparse_call in candidates:
            times = {"dense": [], SPARSE: []}
            for _ in range(ROUNDS):
                for fmt, call in (("dense", dense_call), (SPARSE, sparse_call)):
                    lib, dev = libs[fmt]
                    t = time_call(measure, lib, dev, call, builds[fmt].profile.constants)
                    times[fmt].append(t.get("latency_ms_min", np.inf))
            d.update(dense_ms=float(min(times["dense"])), csr_ms=float(min(times[SPARSE])))
            faster = d["csr_ms"] < (1 - MARGIN) * d["dense_ms"]
            d.update(format=SPARSE if faster else "dense",
                     why=f"csr {d['csr_ms']:.3g} ms vs dense {d['dense_ms']:.3g} ms: "
                         + ("csr faster" if faster else
                            f"csr not {MARGIN:.0%} faster"))
    return decisions


def finish(built: Build, decisions: list[dict]) -> Build:
    """The final build with format=auto's choices: in its stats (`format_choices`, for the
    row) and each layer's `why` in its profile plan."""
    if not decisions:
        return built
    built.stats["format_choices"] = decisions
    why = {d["key"]: d["why"] for d in decisions if d.get("key")}
    for call in built.profile.calls if built.profile is not None else []:
        layer = call.get("layer", {})
        if layer.get("key") in why:
            layer["why"] = why[layer["key"]]
    return built
