"""The integer reference (dlas/codegen/int8_reference.py) computes what DLAS's compiled int8
code computes: the tiny structures' compiled logits equal it bit for bit, with the target's
multiply-add rounding; and it stays PyTorch's Q/DQ model up to float rounding (the formulas
it shares with the lowering are right)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from dlas.codegen import Untuned, import_model
from dlas.codegen import int8_reference
from dlas.codegen.int8_reference import integer_reference
from dlas.codegen.quantized import fused_multiply_add
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm

from tests.codegen.int8_structures import STRUCTURES, inputs, quantized
from tests.codegen.test_quantized import HOST


def compiled_logits(net, x: np.ndarray, primitive=None, target=HOST) -> np.ndarray:
    executable, _ = Untuned().build(import_model(net, torch.from_numpy(x[:1])),
                                    primitive or Direct(), target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy()
                           for i in range(len(x))])


@functools.cache
def compiled_structure(structure: str) -> np.ndarray:
    """The compiled logits of quantized(structure) on inputs(8), once per session."""
    return compiled_logits(quantized(structure), inputs(8))


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_compiled_int8_equals_the_integer_reference(structure):
    q, x = quantized(structure), inputs(8)
    reference = integer_reference(q, x, fma=fused_multiply_add(HOST))
    np.testing.assert_array_equal(compiled_structure(structure), reference)
    with torch.no_grad():
        qdq = q(torch.from_numpy(x)).numpy()
    assert np.abs(reference - qdq).max() <= 1e-5 * np.abs(qdq).max()


def test_float64_accumulation_gives_the_same_integers(monkeypatch):
    """Layers whose partial sums could pass 2^24 accumulate in float64: forced for all, the
    logits stay the same."""
    q, x = quantized("depthwise"), inputs(4)
    fast = integer_reference(q, x)
    monkeypatch.setattr(int8_reference, "FLOAT32_EXACT", 0)
    np.testing.assert_array_equal(integer_reference(q, x), fast)


def test_the_reference_rounds_multiply_adds_as_the_target_does():
    """x86-64 without a CPU name has no FMA: rescale and bias are rounded apart; the other
    rounding misses (the flag matters, and is read from the target)."""
    generic = make_target({"kind": "llvm"})
    fma = fused_multiply_add(generic)
    q, x = quantized("residual"), inputs(8)
    compiled = compiled_logits(q, x, Gemm(), generic)
    np.testing.assert_array_equal(compiled, integer_reference(q, x, fma=fma))
    assert (compiled != integer_reference(q, x, fma=not fma)).any()


class _Activations(torch.nn.Module):
    """The float ops between int8 layers that TVM computes in its own order or with libm."""

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        squeezed = x.mean((2, 3))
        return torch.cat([pooled, squeezed, torch.sigmoid(x).flatten(1),
                          torch.nn.functional.silu(x).flatten(1)], 1)


def test_pooling_and_sigmoid_are_mirrored():
    x = torch.randn(4, 64, 4, 4, generator=torch.Generator().manual_seed(3)).numpy() * 4
    net = torch.export.export(_Activations(), (torch.from_numpy(x),)).module()
    compiled = compiled_logits(_Activations(), x)
    reference = integer_reference(net, x, fma=fused_multiply_add(HOST))
    with torch.no_grad():
        pytorch = net(torch.from_numpy(x)).numpy()
    pools = slice(0, 128)  # summed in TVM's order: bit for bit (PyTorch's order is not)
    np.testing.assert_array_equal(compiled[:, pools], reference[:, pools])
    assert (compiled[:, pools] != pytorch[:, pools]).any()
    # sigmoid/silu: exp correctly rounded; libm's expf misses it on a few inputs
    rest = slice(128, None)
    assert (compiled[:, rest] != reference[:, rest]).mean() < 2e-3
    assert (compiled[:, rest] != reference[:, rest]).mean() < \
        (compiled[:, rest] != pytorch[:, rest]).mean()
