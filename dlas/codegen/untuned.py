"""The `untuned` code generator: every PrimFunc gets a fixed default schedule, no search.

This is what a competent compiler ships without tuning: the primitive's schedule for its
conv2d functions, DLAS's generic parallel/vectorised schedules for the rest. TVM 0.27's own
CPU pipeline schedules nothing, so this (not `tvm.compile`'s default) is the fair
untuned baseline. On a GPU target every PrimFunc, the primitives' included, gets TVM's
DLight GPU rules (thread binding); one they cannot schedule makes the point Unsupported.
"""
from __future__ import annotations

import tvm

from dlas.codegen import auto_format
from dlas.codegen.gpu import RequireScheduled, gpu_rules, is_gpu
from dlas.codegen.pipeline import (Build, RecordScheduleStats, back_passes,
                                   default_schedule_pass, front_passes, inference_passes,
                                   relax_pipeline)
from dlas.codegen.schedules import generic_rules
from dlas.primitives.base import LayerCounts, Primitive


class Untuned:
    """Config: conf/codegen/untuned.yaml. `build` returns the executable with the build's
    statistics: scheduled and unscheduled PrimFuncs, how the conv2d layers were legalized."""

    def __init__(self, name: str = "untuned"):
        self.name = name

    def rules(self, primitive: Primitive, target: tvm.target.Target) -> list:
        """Primitive rules first: they claim their conv2d functions before the generic ones.
        GPU: DLight's GPU rules for everything (DLAS's primitive schedules are CPU ones)."""
        if is_gpu(target):
            return gpu_rules()
        return primitive.schedule_rules(target) + generic_rules()

    def pipeline(self, primitive: Primitive, target: tvm.target.Target,
                 record: RecordScheduleStats | None = None,
                 counts: LayerCounts | None = None) -> tvm.transform.Pass:
        passes = (inference_passes() + front_passes(primitive, target, counts)
                  + [default_schedule_pass(self.rules(primitive, target))]
                  + ([record] if record is not None else []) + self._require(primitive, target)
                  + back_passes(target))
        return relax_pipeline(passes, target)

    @staticmethod
    def _require(primitive: Primitive, target: tvm.target.Target) -> list[tvm.transform.Pass]:
        """On a GPU: refuse (Unsupported, naming the primitive) what has no GPU schedule."""
        if not is_gpu(target):
            return []
        return [RequireScheduled(target, f"{primitive.name}-{primitive.format}")]

    def schedule(self, mod: tvm.IRModule, primitive: Primitive,
                 target: tvm.target.Target) -> tvm.IRModule:
        """The module after fusion and default scheduling, before lowering (to inspect)."""
        passes = (inference_passes() + front_passes(primitive, target)
                  + [default_schedule_pass(self.rules(primitive, target))])
        return relax_pipeline(passes, target)(mod)

    def build(self, mod: tvm.IRModule, primitive: Primitive, target: tvm.target.Target,
              hardware=None) -> Build:
        """Compile `mod` for `target`; `hardware` (where it runs) times the candidate formats
        of format=auto (auto_format.py; default: this CPU)."""
        primitive, choices = auto_format.resolve(mod, primitive, target, hardware)
        record, counts = RecordScheduleStats(), LayerCounts()
        executable = tvm.compile(mod, target=target,
                                 relax_pipeline=self.pipeline(primitive, target, record, counts))
        return auto_format.finish(Build(executable, {**record.stats, **counts.stats},
                                        record.profile(counts)), choices)

    def __repr__(self) -> str:
        return f"Untuned(name={self.name!r})"
