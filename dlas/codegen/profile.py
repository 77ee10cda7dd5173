"""What the per-layer profile of a compiled point times (the measuring is
dlas/hardware/profile.py).

The compiled model's `main` is a sequence of PrimFunc calls (a conv2d fused with its bias,
ReLU, residual add; a pooling; a matmul...). The plan lists them in graph order with the
shapes and dtypes of their arguments, as the scheduled module calls them, so each PrimFunc
can be timed alone on the target from the kernel library (the executable's compiled
PrimFuncs, exported beside it). A float argument is timed on zeros (the kernels' work does
not depend on float values); integer constants (sparse index arrays, int8 weights) are
kept, since a sparse kernel's loops follow them. The i-th call that computes a conv2d gets
the i-th conv2d the legalization described (LayerCounts.layers): shapes, MACs, sparsity,
the format it took and why: its call is the one whose fused function is named after the
PrimFunc its legalization emitted (FuseOps names a group `fused_` + its functions' names;
FuseOps may move a conv after another, so the order alone does not tell), and whose output
has the conv's shape.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tvm
from tvm import relax, s_tir, tirx
from tvm.ir.expr import Constant

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.schedule_utils import root_blocks

PLAN = "profile_plan.json"
CONSTANTS = "profile_constants.npz"
KERNELS = "kernels.so"
# PRIMITIVE_KEY values of blocks that compute something else than a conv2d
NOT_CONV = ("dense", "gemm.im2col")
FORMAT_KEY = "dlas.format"  # (gemm_compute.py's block attribute)


class ProfilePlan(NamedTuple):
    calls: list[dict]               # per call: function, args, outputs, kind, layer
    constants: dict[str, np.ndarray]  # the integer constants the calls need, by name

    def save(self, folder: Path) -> None:
        (folder / PLAN).write_text(json.dumps(self.calls))
        np.savez(folder / CONSTANTS, **self.constants)

    @classmethod
    def load(cls, folder: Path) -> ProfilePlan:
        with np.load(folder / CONSTANTS, allow_pickle=False) as npz:
            constants = {k: npz[k] for k in npz.files}
        return cls(json.loads((folder / PLAN).read_text()), constants)


def kernel_library(executable) -> tvm.runtime.Module:
    """The executable's compiled PrimFuncs (the VM executable imports them as one module)."""
    return executable.mod.imports[0]


def _spec(ty) -> dict | None:
    shape = [int(d) if isinstance(d, tirx.IntImm | int) else None for d in ty.shape]
    return None if None in shape else {"shape": shape, "dtype": str(ty.dtype)}


def _blocks(func: tirx.PrimFunc) -> list:
    """The root block (a hand-scheduled kernel, e.g. spatial_pack's csr/bsr, is annotated
    there) and its children."""
    sch = s_tir.Schedule(func)
    return [sch.get(b) for b in [sch.get_sblock("root"), *root_blocks(sch)]]


def kernel_kind(func: tirx.PrimFunc) -> dict:
    """The primitive and weight format of a conv2d PrimFunc from its blocks' annotations
    ({} for a PrimFunc that computes no conv2d; TVM's own conv2d: primitive `tvm`)."""
    for block in _blocks(func):
        ann = block.annotations
        prim = str(ann[PRIMITIVE_KEY]) if PRIMITIVE_KEY in ann else None
        if prim is not None and prim not in NOT_CONV:
            layout = str(ann.get(FORMAT_KEY, ann.get(LAYOUT_KEY, "")))
            fmt = "csr" if "csr" in layout else "bsr" if "bsr" in layout else "dense"
            return {"primitive": prim, "format": fmt}
    if any(b.name_hint.startswith("conv2d") for b in _blocks(func)):
        return {"primitive": "tvm", "format": "dense"}
    return {}


def _match_layers(calls: list[dict], layers: list[dict]) -> None:
    """Give each conv2d call of `calls` its layer description (the first unclaimed layer
    whose emitted PrimFunc the call's function is named after, the longest such name: one
    may be the prefix of another, conv2d_direct of conv2d_direct_csr1)."""
    waiting: dict[str, list[dict]] = {}
    for i, layer in enumerate(layers):
        if layer.get("function"):
            waiting.setdefault(layer["function"], []).append({**layer, "index": i})
    for call in calls:
        if not call["kind"] or call.get("skip"):
            continue
        name = f"_{call['function']}_"
        found = [n for n in waiting if f"_{n}_" in name and waiting[n]]
        if not found:
            continue
        layer = waiting[max(found, key=len)][0]
        if layer.get("output") == call["args"][-call["outputs"]]["shape"]:
            call["layer"] = waiting[max(found, key=len)].pop(0)


def profile_plan(mod: tvm.IRModule, layers: list[dict] | None = None) -> ProfilePlan:
    """The calls of `mod`'s main (scheduled, not yet lowered) and the conv2d `layers` of
    its legalization matched to them in order (left out when the counts differ)."""
    calls, constants = [], {}
    main = mod["main"]
    blocks = main.body.blocks if isinstance(main.body, relax.SeqExpr) else []
    for binding in (b for block in blocks for b in block.bindings):
        call = binding.value
        if not (isinstance(call, relax.Call) and getattr(call.op, "name", "") == "relax.call_tir"):
            continue
        gvar, args = call.args[0], call.args[1].fields
        outs = call.ty.fields if isinstance(call.ty, relax.TupleType) else [call.ty]
        specs = [_spec(a.ty) for a in args] + [_spec(o) for o in outs]
        entry = {"function": gvar.name_hint, "kind": kernel_kind(mod[gvar]),
                 "args": specs, "outputs": len(outs)}
        if None in specs:
            entry["skip"] = "symbolic shape"
        for i, arg in enumerate(args):
            if isinstance(arg, Constant) and entry.get("skip") is None:
                value = arg.value.numpy()
                if not np.issubdtype(value.dtype, np.floating):
                    name = f"c{len(constants)}"
                    constants[name] = value
                    specs[i]["constant"] = name
        calls.append(entry)
    _match_layers(calls, layers or [])
    return ProfilePlan(calls, constants)
