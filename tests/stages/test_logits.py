"""Deploy's logit check on an int8 model: gated on the integer reference, so a planted
miscompile (a scale 1 % off in one layer, one int8 weight of the wrong sign) fails the point, while
the compiled model's float-rounding distance from PyTorch's Q/DQ model is recorded only."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dlas.codegen.quantized import fused_multiply_add
from dlas.errors import DLASError
from dlas.stages.logits import logit_check

from tests.codegen.int8_structures import inputs, quantized, tiny
from tests.codegen.test_divergence import planted
from tests.codegen.test_int8_reference import compiled_logits, compiled_structure
from tests.codegen.test_quantized import HOST

RTOL = 1e-5  # conf/deploy.yaml int8_reference_rtol


def wrong_weight(q: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of `q` whose largest int8 weight of its second conv has the wrong sign."""
    wrong = copy.deepcopy(q)
    convs = [n for n in wrong.graph.nodes if "conv2d" in str(n.target)]
    weight = getattr(wrong, convs[1].args[1].args[0].target)  # dequantize_per_channel(W, ...)
    flat = weight.view(-1)
    i = int(flat.abs().argmax())
    flat[i] = -flat[i]
    return wrong


def check(logits, q, x, **kw):
    y = np.zeros(len(x), dtype=int)
    return logit_check(logits, x, y, q, "int8", rtol=kw.get("rtol", 0.0), reference_rtol=RTOL,
                       fma=fused_multiply_add(HOST), float_net=kw.get("float_net"),
                       reference_samples=kw.get("reference_samples"))


def test_int8_row_records_pytorch_and_reference_agreement():
    q, x = quantized("residual"), inputs(8)
    m = check(compiled_structure("residual"), q, x, float_net=tiny("residual"))
    # PyTorch's Q/DQ model differs by float rounding; logit_rtol.int8 (0 here) gates nothing
    assert m["logit_rel_diff"] > 0 and m["reference_rel_diff"] == 0
    assert m["reference_exact"] == 1.0 and m["reference_agreement"] == 1.0
    assert {"accuracy_float", "accuracy_torch", "accuracy_compiled",
            "prediction_agreement"} <= set(m) and m["reference_samples"] == len(x)
    first = check(compiled_structure("residual"), q, x, reference_samples=3)
    assert first["reference_samples"] == 3 and first["eval_samples"] == len(x)


@pytest.mark.parametrize("miscompile", ["scale", "weight"])
def test_a_planted_miscompile_fails_the_int8_check(miscompile):
    q, x = quantized("residual"), inputs(8)
    wrong = planted(q, "3.conv1", 1.01) if miscompile == "scale" else wrong_weight(q)
    with pytest.raises(DLASError) as err:
        check(compiled_logits(wrong, x), q, x, rtol=1.0)
    assert err.value.layer == "codegen" and "integer reference" in err.value.reason
    assert err.value.metrics["reference_rel_diff"] > RTOL
