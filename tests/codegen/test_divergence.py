"""The divergence report on tiny versions of the structures the seven models are made of:
their compiled int8 code agrees with the PyTorch Q/DQ model probe by probe, and a scale
planted wrong in one layer of the compiled model only is named as the first departure."""
from __future__ import annotations

import copy

import pytest
import torch

from dlas.codegen import Untuned
from dlas.codegen.divergence import divergence, first_departure, report
from dlas.codegen.divergence.__main__ import main, parse
from dlas.errors import DLASError
from dlas.primitives import Direct

from tests.codegen.int8_structures import STRUCTURES, inputs, quantized, tiny
from tests.codegen.test_quantized import HOST

pytestmark = pytest.mark.slow

INT8_RTOL = 5e-2  # conf/deploy.yaml logit_rtol.int8: the step of the logits' row


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_int8_structure_compiles_to_the_qdq_model(structure):
    rows = divergence(quantized(structure), inputs(), Direct(), Untuned(), HOST, fmt="int8",
                      rtol=INT8_RTOL)
    text = report(rows)
    assert first_departure(rows) is None, text
    kinds = [r.probe.kind for r in rows]
    assert kinds.count("int8") >= 3 and kinds[-1] == "output", text
    # integer accumulation vs PyTorch's float convolution of the same int8 values: the
    # int8 tensors agree exactly, the logits to float rounding
    assert all(r.max_steps == 0 for r in rows if r.probe.kind == "int8"), text
    assert rows[-1].max_rel <= 1e-4, text


def planted(q: torch.fx.GraphModule, layer: str, factor: float) -> torch.fx.GraphModule:
    """A copy of `q` whose conv `layer` has its per-channel weight scales times `factor`."""
    wrong = copy.deepcopy(q)
    for node in wrong.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if "conv2d" in str(node.target) and stack and list(stack.values())[-1][0] == layer:
            scales = node.args[1].args[1]  # conv2d(x, dequantize_per_channel(W, scales, ...))
            getattr(wrong, scales.target).mul_(factor)
            return wrong
    raise AssertionError(f"no conv {layer}")


@pytest.mark.parametrize("structure, layer", [("residual", "3.conv1"),
                                              ("depthwise", "3.depthwise.0")])
def test_a_wrong_scale_in_one_compiled_layer_is_named_first(structure, layer):
    q = quantized(structure)
    rows = divergence(q, inputs(), Direct(), Untuned(), HOST, fmt="int8", rtol=INT8_RTOL,
                      compiled_net=planted(q, layer, 1.3))
    first = first_departure(rows)
    assert first is not None and (first.probe.kind, first.probe.layer) == ("layer", layer), \
        report(rows)
    assert "output of " + layer in report(rows).splitlines()[-1]
    # the rows before it agree exactly: the report localises the fault
    assert all(r.more == 0 for r in rows[:first.index])


@pytest.mark.parametrize("fmt", ["float32", "float16"])
def test_float_models_get_one_row_per_layer(fmt):
    net = tiny("residual")
    if fmt == "float16":
        net = net.half()
    rows = divergence(net, inputs(2), Direct(), Untuned(), HOST, fmt=fmt,
                      rtol={"float32": 1e-3, "float16": 1e-2}[fmt])
    # stem conv (+ its batch norm), conv1, conv2 and the classifier, which is the output
    assert [r.probe.layer for r in rows] == ["0", "3.conv1", "3.conv2", "6"], report(rows)
    assert [r.probe.via[-1] for r in rows[:3]] == ["batch_norm"] * 3
    assert first_departure(rows) is None, report(rows)


def test_bad_command_lines_say_one_line(capsys):
    with pytest.raises(DLASError, match=r"--samples='x'.*valid: an integer >= 1"):
        parse(["--samples", "x"])
    with pytest.raises(DLASError, match=r"option='--bogus'"):
        parse(["--bogus"])
    assert parse(["--samples=3", "model=resnet18"]) == (3, ["model=resnet18"])
    with pytest.raises(SystemExit) as exit_:
        main(["model=foo"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model='foo'") and "resnet18" in err and "\n" not in err
