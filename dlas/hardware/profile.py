"""The per-layer profile of a compiled point: each PrimFunc call of its `main` timed alone
on the target, through the same RPC session as the whole model.

The kernel library (the executable's PrimFuncs, exported beside it) is loaded on the target
and every call of the plan (dlas/codegen/profile.py: function, argument shapes, integer
constants) is timed with TVM's time_evaluator on its own arguments: one warm-up call, then
`profile_repeat` repeats of at least `min_repeat_ms`. Float arguments are zeros (the
kernels' work does not depend on them); the sparse index arrays and int8 weights are the
compiled ones. A layer's time is thus its time with its inputs in cache; the sum over the
calls is printed next to the whole model's latency (the difference is the VM's own work and
the cache traffic between layers). A call that fails to run is kept with its error.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tvm

from dlas.errors import first_line
from dlas.hardware.calls import RETRYABLE
from dlas.hardware.measure import latency_stats

log = logging.getLogger(__name__)
PROFILE = "layer_profile"  # the metrics entry the task stores in the profiles table


def profile_calls(measure, session, kernels: Path, calls: list[dict],
                  constants: dict[str, np.ndarray], *, device: str = "cpu") -> list[dict]:
    """One row per call: function, kind (primitive, format), layer (the conv2d's shapes,
    MACs, sparsity, format and why) and latency_ms_median / p90 / cv over the repeats, and
    share (of the summed medians); `error` instead for a call that failed."""
    lib, dev, _ = measure.load(session, Path(kernels), device)
    rows = []
    for i, call in enumerate(calls):
        rows.append({"call": i, "function": call["function"], **call["kind"],
                     **({"layer": call["layer"]} if "layer" in call else {}),
                     **time_call(measure, lib, dev, call, constants)})
    total = sum(r.get("latency_ms_median", 0.0) for r in rows)
    for r in rows:
        if "latency_ms_median" in r and total > 0:
            r["share"] = r["latency_ms_median"] / total
    return rows


def time_call(measure, lib, dev, call: dict, constants: dict[str, np.ndarray],
              repeat: int | None = None) -> dict:
    """latency_ms_median / p90 / min / cv of one call of the plan on the loaded kernel
    library `lib` (`repeat` repeats, default measure.profile_repeat), or its `error`."""
    if call.get("skip"):
        return {"error": call["skip"]}
    try:
        args = measure.call(lambda: [
            tvm.runtime.tensor(constants[a["constant"]], dev) if "constant" in a
            else _zeros(a, dev) for a in call["args"]], f"arguments of {call['function']}")
        times = measure.call(lambda: _time(lib, call["function"], dev, args, measure, repeat),
                              f"profile {call['function']}")
    except RETRYABLE:
        raise  # a session that is gone: the caller records why
    except Exception as err:  # noqa: BLE001 -- one kernel must not lose the others
        log.warning("profile: %s failed: %s", call["function"], first_line(err))
        return {"error": first_line(err)}
    stats = latency_stats(times, measure.noisy_cv)
    return {**{k: stats[k] for k in ("latency_ms_median", "latency_ms_p90", "latency_ms_min")},
            "latency_cv": stats["latency_cv"] if stats["latency_ms_mean"] > 0 else None}


def _zeros(spec: dict, dev) -> tvm.runtime.Tensor:
    return tvm.runtime.tensor(np.zeros(spec["shape"], spec["dtype"]), dev)


def _time(lib, name: str, dev, args, measure, repeat: int | None) -> np.ndarray:
    evaluator = lib.time_evaluator(name, dev, number=1, repeat=repeat or measure.profile_repeat,
                                   min_repeat_ms=int(round(measure.min_repeat_ms)))
    lib.get_function(name)(*args)  # warm-up (and a clear error for a missing function)
    return np.asarray(evaluator(*args).results) * 1e3


def profile_summary(rows: list[dict], model_ms: float | None) -> dict:
    """Row metrics of a profile: the summed layer medians, and their ratio to the model's."""
    total = sum(r.get("latency_ms_median", 0.0) for r in rows)
    out = {"profile_sum_ms": total, "profile_calls": len(rows),
           "profile_errors": sum("error" in r for r in rows)}
    if model_ms:
        out["profile_sum_over_model"] = total / model_ms
    return out
