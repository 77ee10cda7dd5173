"""int8 conv2d on AArch64's `sdot` (dlas/primitives/int8_intrin.py): cross-compiled for an
aarch64 target with the dot-product extension the library holds `sdot`, without it (the
HiKey's Cortex-A73) it does not; and run on the emulated aarch64 board's CPU (qemu-user,
whose default CPU has dotprod) the convs of every model conv shape equal the NumPy integer
reference. The emulation part skips only where it cannot be set up (as
tests/hardware/test_emulated_board.py; .ci/run sets it up)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dlas.codegen import Untuned
from dlas.errors import DLASError
from dlas.hardware import emulated_root
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack

from tests.primitives.test_int8_dot import SHAPES, asm_of, many_convs, numpy_conv_int, operands

DOTPROD = make_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                       "mattr": ["+neon", "+dotprod"]})
HIKEY = make_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a73",
                     "mattr": ["+neon"]})
CC = "aarch64-linux-gnu-g++"


@pytest.mark.parametrize("primitive", [Direct, SpatialPack, Gemm])
def test_dotprod_target_compiles_to_sdot(primitive):
    assert re.search(r"\bsdot\b", asm_of(DOTPROD, primitive))


def test_target_without_dotprod_has_no_sdot():
    assert not re.search(r"\bsdot\b", asm_of(HIKEY, SpatialPack))


def test_model_conv_shapes_exact_on_emulated_aarch64(tmp_path):
    if shutil.which(CC) is None:
        pytest.skip("no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
    try:
        emulator = emulated_root.setup()  # cached: .ci/run has set it up
    except DLASError as err:
        pytest.skip(f"the emulation cannot be set up here: {err}")
    rng = np.random.default_rng(0)
    cases = [operands(wl, rng) for wl in SHAPES]
    ex, stats = Untuned().build(many_convs(SHAPES, [w for _, w in cases]), SpatialPack(), DOTPROD)
    dense = sum(wl.groups == 1 for wl in SHAPES)
    assert stats["int8_path"] == "sdot" and stats["int8_dot_layers"] == dense
    assert stats["schedule_rules"].get("Int8DotConv2D") == dense  # all tensorized
    lib, inputs, outputs = tmp_path / "convs.so", tmp_path / "x.npz", tmp_path / "out.npz"
    ex.export_library(str(lib), cc=CC)
    np.savez(inputs, **{f"x{i}": x for i, (x, _) in enumerate(cases)})
    runner = Path(__file__).with_name("aarch64_vm.py")
    done = subprocess.run(emulator.command(str(runner), str(lib), str(inputs), str(outputs)),
                          env=emulator.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outs = np.load(outputs)
    for i, (wl, (x, w)) in enumerate(zip(SHAPES, cases)):
        got = outs[f"arr_{i}"]
        assert got.dtype == np.int32
        assert np.array_equal(got, numpy_conv_int(x, w, wl)), wl.label()
