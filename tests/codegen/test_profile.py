"""The per-layer profile: each conv2d call of the compiled main is matched to the layer the
legalization described (FuseOps may reorder convs), and every call is timed alone on the
target through RPC."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn

from dlas.codegen import Untuned, import_model
from dlas.codegen.profile import ProfilePlan, kernel_library
from dlas.hardware import LocalCPU
from dlas.hardware.measure import Measurement
from dlas.hardware.profile import profile_calls, profile_summary
from dlas.primitives import Direct, Gemm, SpatialPack

TARGET = tvm.target.Target("llvm")


class Residual(nn.Module):
    """A stem and a downsampling residual block: FuseOps emits the 1x1 shortcut conv
    before the block's second conv (fused with the residual add)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.c2(torch.relu(self.c1(x))) + self.down(x)
        return self.fc(torch.relu(y).mean((2, 3)))


def sparse_residual() -> tvm.IRModule:
    torch.manual_seed(0)
    net = Residual().eval()
    with torch.no_grad():  # c1 and c2 90 % sparse: they go sparse, stem and shortcut stay dense
        for conv in (net.c1, net.c2):
            conv.weight[conv.weight.abs() < conv.weight.abs().quantile(0.9)] = 0
    return import_model(net, torch.randn(1, 3, 8, 8))


@pytest.fixture(scope="module")
def built():
    return Untuned().build(sparse_residual(), Direct(format="csr"), TARGET)


def test_plan_matches_each_conv_call_to_its_layer(built, tmp_path):
    calls = built.profile.calls
    convs = [c for c in calls if c["kind"]]
    got = [(c["layer"]["weight"], c["kind"]["format"], c["layer"]["sparse"]) for c in convs]
    assert got == [([8, 3, 3, 3], "dense", False), ([16, 8, 3, 3], "csr", True),
                   ([16, 8, 1, 1], "dense", False), ([16, 16, 3, 3], "csr", True)]
    assert convs[1]["layer"]["macs"] == 16 * 4 * 4 * 8 * 9
    assert convs[1]["layer"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    # the sparse kernels' index arrays travel with the plan; float weights do not
    assert built.profile.constants and all(
        not np.issubdtype(v.dtype, np.floating) for v in built.profile.constants.values())
    built.profile.save(tmp_path)
    again = ProfilePlan.load(tmp_path)
    assert again.calls == calls and again.constants.keys() == built.profile.constants.keys()


@pytest.mark.parametrize("primitive", [Direct, Gemm, SpatialPack])
@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_every_sparse_kernel_is_found_as_its_layer(primitive, fmt):
    # spatial_pack's sparse kernels are hand-scheduled, annotated on their root block: once
    # unseen, so format=auto found no sparse layer to time and kept the whole model dense
    calls = Untuned().build(sparse_residual(), primitive(format=fmt), TARGET).profile.calls
    got = [(c["layer"]["weight"], c["kind"]["format"]) for c in calls if "layer" in c]
    assert sorted(got) == sorted([([8, 3, 3, 3], "dense"), ([16, 8, 3, 3], fmt),
                                  ([16, 8, 1, 1], "dense"), ([16, 16, 3, 3], fmt)])


def test_every_call_timed_alone_through_rpc(built, tmp_path):
    kernels = tmp_path / "kernels.so"
    kernel_library(built.executable).export_library(str(kernels))
    measure = Measurement(min_repeat_ms=1, profile=True, profile_repeat=2)
    with LocalCPU(num_threads=1).session() as session:
        rows = profile_calls(measure, session, kernels, built.profile.calls,
                             built.profile.constants)
    assert [r["function"] for r in rows] == [c["function"] for c in built.profile.calls]
    assert all("error" not in r and r["latency_ms_median"] > 0 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    summary = profile_summary(rows, model_ms=1.0)
    assert summary["profile_errors"] == 0 and summary["profile_sum_ms"] > 0
