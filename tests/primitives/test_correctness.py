"""Every primitive x weight format x dtype against PyTorch, on the models' own conv2d layers.

Cases: every conf/primitive/*.yaml (instantiated by Hydra, so a new primitive joins by
adding its config) x each format its class declares x float32/float16/int8 x weight
sparsity (0 for dense; 0, 0.5, 0.9, 0.99 and 1 for csr/bsr, magnitude-pruned, the workloads
taking turns through them unless DLAS_FULL_WORKLOADS=1: at 0.99 most rows of a small layer
are empty, at 1 the whole layer is zero) x a deterministic
subsample of the 389 distinct conv2d workloads of dlas.models at 32 and 224
(dlas/primitives/workloads.py): every k-th workload of each shape class (kind, kernel,
stride), k the smallest step keeping the case count within DLAS_CORRECTNESS_CASES (default
250), so all 9 classes -- dense and depthwise,
1x1/3x3/5x5/7x7, stride 1 and 2 -- are always in. Spatial size is shrunk to at most
DLAS_WORKLOAD_SIDE (default 12: not a power of two, so vector tails are exercised) per
side, channels/kernel/stride/padding/groups kept; each case (build + run) takes ~0.2 s.
DLAS_FULL_WORKLOADS=1 runs every workload (k = 1); DLAS_WORKLOAD_SIDE=0 keeps real sizes.

Sparse formats run with sparsity_threshold 0, so the sparse variant is taken at every
sparsity (at 0 it meets a full matrix); a layer the primitive hands to another
implementation must say so in its stats (a warning names the reason). No primitive declines
any of these workloads today: a refusal (DLASError) fails the test, so a primitive that starts
refusing shapes is noticed; a deliberate refusal goes into REFUSED with its reason.

Tolerances, reference in float64 on the exact same input values:
- float32: |out - ref| <= (K + 2) * 2**-24 * conv(|x|, |w|) elementwise, K = C/groups*KH*KW:
  the worst-case error bound of float32 products summed in any order, so any summation
  order passes and any wrong term (an error of the order of |ref| itself) fails.
- float16 (float16 data/weights, out_dtype float32 as the stack's fp16 graphs call it): the
  same bound; float16 x float16 products are exact in float32, so accumulation is the only
  error, as for float32. A float32 torch conv of the float16-rounded inputs would add its own
  rounding; the float64 one does not.
- int8 (int8 data/weights, out_dtype int32): exact, against the float64 result (sums stay
  below 2**31, far inside float64's exact integers).
- a layer the `winograd` primitive computes (not handed to direct): the bound of Winograd's
  transforms instead (winograd_reference.py), for the tile size it picks.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from conv_reference import (DTYPES, make_primitive, primitive_configs, primitive_formats,
                            random_case, run_vm, torch_reference)
from winograd_reference import winograd_bound

from dlas.codegen import Untuned
from dlas.errors import DLASError
from dlas.hardware.base import make_target
from dlas.primitives.winograd import choose_tile
from dlas.primitives.workloads import (OUT_DTYPES, conv2d_module, distinct_workloads,
                                       subsample)

TARGET = make_target({"kind": "llvm", "mcpu": "host"})
SPARSITIES = {"dense": (0.0,), "csr": (0.0, 0.5, 0.9, 0.99, 1.0),
              "bsr": (0.0, 0.5, 0.9, 0.99, 1.0)}
CONFIGS = primitive_configs()
COMBOS = [(name, fmt) for name, cfg in CONFIGS.items() for fmt in primitive_formats(cfg)]


def _workloads() -> list:
    every = [wl for wl, _ in distinct_workloads()]
    side = int(os.environ.get("DLAS_WORKLOAD_SIDE", "12"))
    if os.environ.get("DLAS_FULL_WORKLOADS") == "1":
        picked = every
    else:
        per_workload = len(COMBOS) * len(DTYPES)
        budget = int(os.environ.get("DLAS_CORRECTNESS_CASES", "250"))
        step = next(k for k in range(1, len(every) + 1)
                    if len(subsample(every, k)) * per_workload <= budget or k == len(every))
        picked = subsample(every, step)
    return [wl.scaled(side) if side else wl for wl in picked]


def _sparsities(fmt: str, index: int) -> tuple[float, ...]:
    """All sparsities for DLAS_FULL_WORKLOADS; otherwise the workloads take turns, so each
    (primitive, format, dtype) still meets every sparsity (on 9+ workloads, each at least once)."""
    levels = SPARSITIES[fmt]
    if os.environ.get("DLAS_FULL_WORKLOADS") == "1":
        return levels
    return (levels[index % len(levels)],)


WORKLOADS = _workloads()
CASES = [pytest.param(name, fmt, dtype, wl, sparsity,
                      id=f"{name}-{fmt}-{dtype}-{wl.label().replace(' ', '_')}-s{sparsity}")
         for name, fmt in COMBOS for dtype in DTYPES for i, wl in enumerate(WORKLOADS)
         for sparsity in _sparsities(fmt, i)]


def test_every_config_and_shape_class_is_covered():
    assert {name for name, _ in COMBOS} == set(CONFIGS) and ("direct", "dense") in COMBOS
    classes = {wl.shape_class for wl, _ in distinct_workloads()}
    assert {wl.shape_class for wl in WORKLOADS} == classes


# (primitive, format, workload label) that a primitive declines on purpose: none today
REFUSED: frozenset[tuple[str, str, str]] = frozenset()


@pytest.mark.parametrize("name, fmt, dtype, wl, sparsity", CASES)
def test_conv2d_matches_torch(name, fmt, dtype, wl, sparsity):
    x, w = random_case(wl, dtype, sparsity, seed=len(CASES))
    primitive = make_primitive(CONFIGS[name], fmt,
                               **({} if fmt == "dense" else {"sparsity_threshold": 0.0}))
    codegen = Untuned()
    try:
        executable, stats = codegen.build(conv2d_module(wl, w, dtype), primitive, TARGET)
    except DLASError as err:  # (its `layer` is lost when TVM re-raises it from LegalizeOps)
        if (name, fmt, wl.label()) in REFUSED:
            return
        raise AssertionError(f"{name}/{fmt} refuses {wl.label()}: {err}") from err
    assert (name, fmt, wl.label()) not in REFUSED, "a pinned refusal is gone: unpin it"
    assert stats["conv_layers"] == 1 and stats["unscheduled_funcs"] == 0, stats
    if stats["fallback_layers"]:
        assert sum(stats["fallbacks"].values()) == 1 and all(stats["fallbacks"]), stats
        warnings.warn(f"{name}/{fmt} {dtype} {wl.label()}: fallback {stats['fallbacks']}",
                      stacklevel=1)
    else:
        assert stats["sparse_layers"] == (fmt != "dense"), stats

    out = run_vm(executable, x)
    ref = torch_reference(wl, x, w)
    assert out.dtype == np.dtype(OUT_DTYPES[dtype]) and out.shape == ref.shape
    if dtype == "int8":
        assert np.array_equal(out.astype(np.int64), ref.astype(np.int64))
    else:
        k = wl.in_channels // wl.groups * wl.kernel[0] * wl.kernel[1]
        bound = (k + 2) * 2.0 ** -24 * torch_reference(wl, np.abs(x), np.abs(w))
        if name == "winograd" and not stats["fallback_layers"]:
            m = choose_tile(*wl.out_size, primitive.tile_size, primitive.min_side)
            pad = (wl.padding[0], wl.padding[1], wl.padding[0], wl.padding[1])
            bound = winograd_bound(x, w, pad, m)
        err = np.abs(out.astype(np.float64) - ref)
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert (err <= bound).all(), (f"max |error| {err.max():.3g} (max |ref| "
                                      f"{np.abs(ref).max():.3g}); at {worst}: got "
                                      f"{out[worst]:.6g}, want {ref[worst]:.6g} +- {bound[worst]:.3g}")
