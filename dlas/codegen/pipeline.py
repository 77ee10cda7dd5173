"""Relax pass lists shared by the code generators.

A build is: TVM's CPU library dispatch -> the primitive's legalization and operator
fusion (`front_passes`) -> scheduling (default rules here, MetaSchedule in a tuned
build) -> TVM's own dataflow lowering and finalisation (`back_passes`). The lists come
from `tvm.relax.backend.cpu_generic.pipeline`, or `gpu_generic.pipeline` for GPU targets
(see gpu.py), so TVM changes flow in.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import tvm
from tvm.ir.expr import Constant
from tvm import relax, tirx
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
from tvm.relax.backend.gpu_generic import pipeline as gpu_generic
from tvm.s_tir.dlight import ApplyDefaultSchedule, ScheduleRule

from dlas.codegen.dense import dense_legalize_map
from dlas.codegen.gpu import RequireScheduled, check_cuda_arch, is_gpu
from dlas.codegen.blocked_layout import blocked_layout
from dlas.codegen.graph import FoldInferenceConstants
from dlas.codegen.int8_layout import blocked_int8_layout
from dlas.codegen.nonnegative import legalize_ops
from dlas.codegen.profile import ProfilePlan, profile_plan
from dlas.primitives.base import LayerCounts, Primitive
from dlas.primitives.direct_blocked import blocked_float_layouts
from dlas.primitives.schedule_utils import RULE_KEY


def inference_passes() -> list[tvm.transform.Pass]:
    """Graph clean-up for inference: batch-norm folded into the preceding conv2d's constant
    weight and a bias add (it then costs nothing), any other batch-norm turned into a
    constant scale/shift (both in numpy, see graph.py), whatever TVM still decomposes for
    inference decomposed, constants folded (little is left for TVM's slow folder)."""
    return [FoldInferenceConstants(),
            relax.transform.DeadCodeElimination(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.FoldConstant()]


def front_passes(primitive: Primitive, target: tvm.target.Target,
                 counts: LayerCounts | None = None) -> list[tvm.transform.Pass]:
    """The primitive's int8 layout (activations blocked between its dot-product convs:
    int8_layout.py), library dispatch, the primitive's conv2d legalization (DLAS's blocked
    matmul for constant-weight linear layers, TVM's for every other op), constant folding
    (weight transforms of constant weights), fusion into PrimFuncs. `counts`: where the
    build counts how its conv2d layers were legalized."""
    record = counts.add if counts is not None else (lambda **_: None)
    legalize = {**dense_legalize_map(), **primitive.legalize_map(record)}
    if counts is not None:
        legalize[CONV2D] = _naming(legalize[CONV2D], counts)
    lanes, block = primitive.blocked_int8_lanes(target), primitive.blocked_float_lanes(target)
    layout = [blocked_int8_layout(lanes)] if lanes else []
    if block:
        layout.append(blocked_layout(functools.partial(blocked_float_layouts, lanes=block),
                                     "DLASBlockedFloatLayout"))
    return layout + _generic(target).library_dispatch_passes(target) + [
        legalize_ops(legalize),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


CONV2D = "relax.nn.conv2d"


def _naming(hook, counts: LayerCounts):
    """`hook`, also writing into the layer it records the name of the PrimFunc it emitted
    (the per-layer profile finds the layer's call by it: profile.py)."""

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        before = len(counts.layers)
        out = hook(bb, call)
        if len(counts.layers) > before and isinstance(out, relax.Call) \
                and getattr(out.op, "name", "") == "relax.call_tir":
            counts.layers[-1]["function"] = out.args[0].name_hint
        return out

    return legalize


def back_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """Lowering after scheduling. On a GPU every PrimFunc must be thread-bound by then (one
    that is not is refused as Unsupported: TVM would compile it for the host), and the host
    must be able to compile CUDA for the target's arch (checked now, not as a compiler dump
    later)."""
    generic = _generic(target)
    check = []
    if is_gpu(target):
        check_cuda_arch(target)
        check = [RequireScheduled(target)]
    return check + generic.dataflow_lower_passes(target) + generic.finalize_passes(target)


def _generic(target: tvm.target.Target):
    return gpu_generic if is_gpu(target) else cpu_generic


def schedule_stats(mod: tvm.IRModule) -> dict:
    """How many PrimFuncs carry a schedule (attr `tirx.is_scheduled`), by which DLAS rule
    (root-block annotation `dlas.schedule_rule`; TVM's own rules leave none), and which
    functions were left unscheduled."""
    done, left, by_rule = [], [], {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and int(func.attrs.get("tirx.is_scheduled", 0)):
            done.append(gvar.name_hint)
            root = getattr(func.body, "block", None)
            rule = str(root.annotations.get(RULE_KEY, "tvm")) if root is not None else "tvm"
            by_rule[rule] = by_rule.get(rule, 0) + 1
        else:
            left.append(gvar.name_hint)
    return {"scheduled_funcs": len(done), "unscheduled_funcs": len(left),
            "schedule_rules": dict(sorted(by_rule.items())), "unscheduled": sorted(left),
            "compiled_weight_bytes": constant_bytes(mod)}


def constant_bytes(mod: tvm.IRModule) -> int:
    """Bytes of the constants the module's Relax functions hold: the weights as compiled
    (int8 weights count 1 byte, float16 2), after folding and re-laying."""
    sizes = []

    def visit(expr) -> None:  # (post_order_visit visits each node once)
        data = expr.value if isinstance(expr, Constant) else None
        if hasattr(data, "shape"):
            sizes.append(int(np.prod(data.shape, dtype=np.int64))
                         * tvm.runtime.DataType(data.dtype).bits // 8)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sum(sizes)


class _Built(NamedTuple):
    executable: tvm.runtime.Executable
    stats: dict


class Build(_Built):
    """What a code generator's `build` returns: the executable and the statistics of this
    build for the results row (layer counts, schedules, tuning), unpacked as a pair; and
    `profile`, what its per-layer profile times (profile.py)."""

    def __new__(cls, executable, stats: dict, profile: ProfilePlan | None = None):
        built = super().__new__(cls, executable, stats)
        built.profile = profile
        return built


@tvm.transform.module_pass(opt_level=0, name="DLASRecordScheduleStats")
class RecordScheduleStats:
    """Identity pass that stores `schedule_stats` of the module it sees in `self.stats`,
    and the module in `self.mod` (for the profile plan)."""

    def __init__(self):
        self.stats: dict = {}
        self.mod: tvm.IRModule | None = None

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.stats, self.mod = schedule_stats(mod), mod
        return mod

    def profile(self, counts: LayerCounts) -> ProfilePlan:
        return profile_plan(self.mod, counts.layers)


def default_schedule_pass(rules: list[ScheduleRule]) -> tvm.transform.Pass:
    return ApplyDefaultSchedule(*rules)


def relax_pipeline(passes: list[tvm.transform.Pass], target: tvm.target.Target
                   ) -> tvm.transform.Pass:
    """`passes` as one pass run under `with target:` (rules read Target.current())."""

    @tvm.transform.module_pass(opt_level=0, name="DLASPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline
