"""Which of a model's functions MetaSchedule tunes: its tasks, less the ones a primitive wrote
ready-scheduled, and of those the ones that hold enough of the model's time."""
from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import meta_schedule as ms

SCHEDULED = "tirx.is_scheduled"


def tunable_tasks(mod: tvm.IRModule, target: tvm.target.Target) -> list[ms.ExtractedTask]:
    """MetaSchedule's tasks of the module, less the functions already scheduled."""
    return [t for t in ms.relax_integration.extract_tasks(mod, target)
            if not int((t.dispatched[0]["main"].attrs or {}).get(SCHEDULED, 0))]


def select_tasks(tasks: list[ms.ExtractedTask], default_ms: list[float | None],
                 min_share: float) -> tuple[list[ms.ExtractedTask], list[ms.ExtractedTask]]:
    """The tasks worth trials and the rest: a task's share is its default schedule's time
    (times its count in the model) over the model's, or, where the default was not timed
    (it did not run, or trials=0), its share of the FLOPs. By time, not FLOPs: an int8
    depthwise conv has ~0.5 % of mobilenetv2's multiply-adds and ~1.3 % of its time."""
    timed = sum(ms_ * t.weight for t, ms_ in zip(tasks, default_ms) if ms_ is not None) or 1.0
    flops = [task_flops(t) * t.weight for t in tasks]
    total_flops = sum(flops) or 1.0
    keep = [t for t, ms_, f in zip(tasks, default_ms, flops)
            if (ms_ * t.weight / timed if ms_ is not None else f / total_flops) >= min_share]
    return keep, [t for t in tasks if t not in keep]


def task_flops(task: ms.ExtractedTask) -> float:
    try:
        return float(s_tir.analysis.estimate_tir_flops(task.dispatched[0]))
    except Exception:  # noqa: BLE001 - an estimate only: unknown counts as no work
        return 0.0


def scheduled_names(mod: tvm.IRModule) -> list[str]:
    return [gv.name_hint for gv, f in mod.functions_items()
            if isinstance(f, tirx.PrimFunc) and f.attrs is not None
            and int(f.attrs.get(SCHEDULED, 0))]
