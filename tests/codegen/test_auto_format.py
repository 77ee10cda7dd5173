"""primitive.format=auto: each layer dense or csr as its kernels measured on the target, a
choice that never contradicts its own measurements, and a model that computes the same."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from test_profile import Residual
from tvm import relax

from dlas.codegen import Untuned, import_model
from dlas.codegen.auto_format import MARGIN
from dlas.errors import DLASError
from dlas.hardware import LocalCPU
from dlas.primitives import Direct


def test_auto_picks_per_layer_by_its_own_timings_and_stays_exact():
    torch.manual_seed(0)
    net = Residual().eval()
    with torch.no_grad():  # 99 % sparse, an all-zero layer, a 60 % sparse 1x1, a dense stem
        net.c1.weight[net.c1.weight.abs() < net.c1.weight.abs().quantile(0.99)] = 0
        net.c2.weight.zero_()
        net.down.weight[net.down.weight.abs() < net.down.weight.abs().quantile(0.6)] = 0
    x = torch.randn(1, 3, 8, 8)
    built = Untuned().build(import_model(net, x), Direct(format="auto"), tvm.target.Target("llvm"),
                            hardware=LocalCPU(num_threads=1))
    choices = built.stats["format_choices"]
    assert [c["weight"] for c in choices] == [[8, 3, 3, 3], [16, 8, 3, 3], [16, 16, 3, 3],
                                              [16, 8, 1, 1]]
    assert choices[0]["format"] == "dense" and "below sparsity_threshold" in choices[0]["why"]
    for c in choices[1:]:  # timed both ways: csr only where it measured faster by the margin
        assert (c["format"] == "csr") == (c["csr_ms"] < (1 - MARGIN) * c["dense_ms"]), c
    assert built.stats["sparse_layers"] == sum(c["format"] == "csr" for c in choices)
    whys = [call["layer"]["why"] for call in built.profile.calls if "layer" in call]
    assert sorted(whys) == sorted(c["why"] for c in choices)

    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_auto_is_a_format_of_the_sparse_primitives():
    assert Direct(format="auto").format == "auto"
    with pytest.raises(DLASError, match="valid: dense, csr, bsr, auto"):
        Direct(format="sparse")
