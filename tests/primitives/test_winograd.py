"""The `winograd` primitive: its transforms, which layers it takes and why the others go to
direct, its results on every 3x3 stride-1 conv shape of the seven models against the float
bound of its transforms (winograd_reference.py), its default schedule applied, a tuning
search over it (DLAS's space and MetaSchedule's sketches), and its settings refused with
one line."""
from __future__ import annotations

import numpy as np
import pytest
from conv_reference import HOST, conv_module, run_vm, torch_conv
from winograd_reference import winograd_bound

from dlas.codegen import AutoSchedule, Untuned
from dlas.errors import DLASError
from dlas.hardware import LocalCPU
from dlas.primitives import Winograd
from dlas.primitives.winograd import TILE_SIZES, choose_tile
from dlas.primitives.winograd_compute import transform_matrices
from dlas.primitives.winograd_schedule import RULE
from dlas.primitives.workloads import distinct_workloads


@pytest.mark.parametrize("m", TILE_SIZES)
def test_the_transforms_compute_a_3_tap_correlation(m):
    a, b, g = transform_matrices(m)
    rng = np.random.default_rng(m)
    d, w = rng.standard_normal(m + 2), rng.standard_normal(3)
    want = np.array([d[i:i + 3] @ w for i in range(m)])
    assert np.allclose(a.T @ ((g @ w) * (b.T @ d)), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("side, tile_size, min_side, want", [
    (32, 4, 4, 4), (8, 4, 4, 4), (4, 4, 4, 2), (6, 4, 4, 2), (2, 4, 4, None), (7, 4, 4, None),
    (12, 6, 4, 6), (10, 5, 4, 5), (12, 5, 4, 2), (16, 4, 20, None), (14, 4, 4, 2)])
def test_tile_choice(side, tile_size, min_side, want):
    assert choose_tile(side, side, tile_size, min_side) == want


def _models_shapes() -> list[tuple[int, int, int]]:
    """(in channels, out channels, side) of every 3x3, stride 1, groups 1 conv of the seven
    models at 32 and 224 (all pad 1: output side = input side), sides above 8 taken at 8
    (the same tile choice: m = 4, 2 or more tiles a side) to keep the test short."""
    shapes = {(wl.in_channels, wl.out_channels, min(wl.height, 8))
              for wl, _ in distinct_workloads()
              if wl.kernel == (3, 3) and wl.stride == (1, 1) and wl.groups == 1
              and wl.dilation == (1, 1) and wl.height == wl.width}
    return sorted(shapes)


@pytest.mark.parametrize("c, o, side", _models_shapes())
def test_model_layers_match_torch_within_the_transform_bound(c, o, side):
    rng = np.random.default_rng(c * 1000 + o + side)
    x = rng.standard_normal((1, c, side, side), dtype=np.float32)
    w = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    pad = (1, 1, 1, 1)
    prim = Winograd()
    executable, stats = Untuned().build(conv_module(x.shape, w, 1, pad, relu_plus_one=True),
                                        prim, HOST)
    m = choose_tile(side, side, prim.tile_size, prim.min_side)
    out = run_vm(executable, x)
    conv = torch_conv(x, w, 1, pad, 1, 1, np.float64)
    ref = np.maximum(conv + 1, 0)
    if m is None:  # 2x2 and 7x7 outputs: direct's
        assert stats["fallbacks"] and stats["schedule_rules"].get(RULE) is None, stats
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
        return
    assert stats["fallback_layers"] == 0 and stats["schedule_rules"] == {RULE: 1}, stats
    bound = winograd_bound(x, w, pad, m)
    err = np.abs(out.astype(np.float64) - ref)
    assert (err <= bound + 1e-30).all(), f"m={m}: max error {err.max():.3g}"
    # the worst-case bound grows with C while random-sign sums grow with sqrt(C) (at 512
    # channels it is ~3 % of max |conv|): also hold the error to 1e-4 of it, ~50x what these
    # layers show and far below any wrong or missing term of a tile or channel
    assert err.max() <= 1e-4 * np.abs(conv).max()


def test_asymmetric_padding_and_batch_two():
    """Tiles cross the batch (tile index = (n, row, column)) and the padding is uneven."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 9, 11), dtype=np.float32)
    w = rng.standard_normal((6, 5, 3, 3), dtype=np.float32)
    pad = (0, 1, 1, 0)  # output 8 x 10: m = 2 (4 does not divide 10)
    executable, stats = Untuned().build(conv_module(x.shape, w, 1, pad), Winograd(), HOST)
    assert stats["fallback_layers"] == 0, stats
    out = run_vm(executable, x)
    ref = torch_conv(x, w, 1, pad, 1, 1, np.float64)
    assert out.shape == ref.shape == (2, 6, 8, 10)
    assert (np.abs(out - ref) <= winograd_bound(x, w, pad, 2) + 1e-30).all()


@pytest.mark.parametrize("shape, kernel, stride, groups, dtype, why", [
    ((1, 8, 12, 12), 1, 1, 1, "float32", "not 3x3 stride 1"),
    ((1, 8, 12, 12), 3, 2, 1, "float32", "not 3x3 stride 1"),
    ((1, 8, 12, 12), 3, 1, 8, "float32", "groups>1"),
    ((1, 8, 2, 2), 3, 1, 1, "float32", "below min_side"),
    ((1, 8, 7, 7), 3, 1, 1, "float32", "not whole"),
    ((1, 8, 12, 12), 3, 1, 1, "int8", "int32 output"),
])
def test_other_layers_go_to_direct_with_a_reason(shape, kernel, stride, groups, dtype, why):
    rng = np.random.default_rng(0)
    w = rng.integers(-8, 8, (8, shape[1] // groups, kernel, kernel)).astype(dtype)
    x = rng.integers(-8, 8, shape).astype(dtype)
    pad = (kernel // 2,) * 4
    out_dtype = "int32" if dtype == "int8" else None
    executable, stats = Untuned().build(
        conv_module(shape, w, stride, pad, groups=groups, out_dtype=out_dtype),
        Winograd(int8_dot=False), HOST)
    assert stats["fallback_layers"] == 1 and RULE not in stats["schedule_rules"], stats
    assert any(why in reason and reason.endswith("direct") for reason in stats["fallbacks"])
    ref = torch_conv(x, w, stride, pad, 1, groups, np.float64)
    assert np.array_equal(run_vm(executable, x).astype(np.float64), ref)  # small integers: exact


@pytest.mark.parametrize("setting, value", [("tile_size", 7), ("tile_size", 1),
                                            ("tile_size", True), ("min_side", 0),
                                            ("format", "csr")])
def test_bad_settings_are_refused_naming_the_value(setting, value):
    with pytest.raises(DLASError) as err:
        Winograd(**{setting: value})
    assert f"primitive.{setting}" in str(err.value) and str(value) in str(err.value)


@pytest.mark.slow
def test_tuning_searches_it_without_failing(tmp_path):
    """MetaSchedule's sketch rules crashed the whole search on the transform blocks, and the
    replay of DLAS's schedule with other tiles failed: the union space must run every
    candidate and the tuned build must still compute the conv."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 16, 8, 8), dtype=np.float32)
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    pad = (1, 1, 1, 1)
    hardware = LocalCPU()
    codegen = AutoSchedule(trials=6, trials_per_iter=6, population_size=16, genetic_iters=1,
                           min_repeat_ms=5, check_rounds=3, space="union",
                           database_dir=str(tmp_path))
    executable, stats = codegen.build(conv_module(x.shape, w, 1, pad), Winograd(),
                                      hardware.target, hardware=hardware)
    assert stats["tuned_tasks"] == 1 and stats["tuning_trials"] == 6, stats
    assert stats["tuning_failed_trials"] == 0 and stats["checked_tasks"] == 1, stats
    out = run_vm(executable, x)
    ref = torch_conv(x, w, 1, pad, 1, 1, np.float64)
    assert (np.abs(out - ref) <= winograd_bound(x, w, pad, 4) + 1e-30).all()
