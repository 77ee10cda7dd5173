"""int8 quantization: symmetric per-channel int8 weights, per-tensor int8 activations.

PyTorch side (torchao's PT2E flow): the model is captured with torch.export, every conv2d
and linear gets its input activation and its weight annotated by `ConvLinearQuantizer`,
observers are calibrated on training batches (post-training) or fake quantization is
fine-tuned (QAT), and `convert_pt2e` yields a graph of int8 constants with
quantize/dequantize ops: the reference whose accuracy the row reports. TVM side:
dlas/codegen/quantized.py turns each dequantize -> conv2d/linear into an int8 x int8
operator with int32 accumulation.

Activations are symmetric (zero point 0), not affine: the integer convolution then needs
no zero-point correction and zero padding stays exact; after ReLU this leaves the sign bit
unused (7 bits of resolution), the usual trade-off of symmetric int8 (e.g. TensorRT).
X86InductorQuantizer is not used: it fails on resnet18 in this torchao
("Input partition has more than one output node").
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from itertools import islice

import torch
import torch.nn as nn

from dlas.compression.metrics import number_format
from dlas.errors import DLASError
from dlas.values import integer

log = logging.getLogger(__name__)

QMIN, QMAX = -127, 127  # symmetric: -128 unused, so negation never overflows


def pt2e_api():
    """torchao's PT2E API (imported on use: torchao is slow to import and logs at import).
    Importing it also registers the quantized_decomposed ops that stored int8 models use."""
    import torchao.quantization.pt2e as pt2e
    import torchao.quantization.pt2e.quantize_pt2e as flow
    from torchao.quantization.pt2e import quantizer
    return pt2e, flow, quantizer


def _specs(qat: bool):
    pt2e, _, quantizer = pt2e_api()
    if qat:
        act_obs = pt2e.FakeQuantize.with_args(observer=pt2e.MovingAverageMinMaxObserver,
                                              quant_min=QMIN, quant_max=QMAX, dtype=torch.int8,
                                              qscheme=torch.per_tensor_symmetric)
        w_obs = pt2e.FakeQuantize.with_args(observer=pt2e.PerChannelMinMaxObserver,
                                            quant_min=QMIN, quant_max=QMAX, dtype=torch.int8,
                                            qscheme=torch.per_channel_symmetric, ch_axis=0)
    else:
        act_obs = pt2e.HistogramObserver.with_args(eps=2**-12)
        w_obs = pt2e.PerChannelMinMaxObserver.with_args(eps=2**-12)
    act = quantizer.QuantizationSpec(dtype=torch.int8, quant_min=QMIN, quant_max=QMAX,
                                     qscheme=torch.per_tensor_symmetric,
                                     observer_or_fake_quant_ctr=act_obs)
    weight = quantizer.QuantizationSpec(dtype=torch.int8, quant_min=QMIN, quant_max=QMAX,
                                        qscheme=torch.per_channel_symmetric, ch_axis=0,
                                        observer_or_fake_quant_ctr=w_obs)
    return act, weight


def conv_linear_quantizer(qat: bool = False):
    """A PT2E Quantizer annotating the input and weight of every conv2d and linear."""
    _, _, quantizer = pt2e_api()
    act, weight = _specs(qat)
    ops = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)

    class ConvLinearQuantizer(quantizer.Quantizer):
        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in gm.graph.nodes:
                if node.op == "call_function" and node.target in ops:
                    node.meta["quantization_annotation"] = quantizer.QuantizationAnnotation(
                        input_qspec_map={node.args[0]: act, node.args[1]: weight}, _annotated=True)
            return gm

        def validate(self, gm: torch.fx.GraphModule) -> None:
            pass

    return ConvLinearQuantizer()


def export_dynamic_batch(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension (calibration and evaluation batches differ
    from the example's)."""
    example = example[:1].expand(2, *example.shape[1:]).contiguous()
    return torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))


def allow_train_eval(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Exported graphs refuse .train()/.eval() unless told how (dropout/batch-norm ops)."""
    pt2e, _, _ = pt2e_api()
    pt2e.allow_exported_model_train_eval(gm)  # in place
    return gm


def drop_unused_tensors(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete parameters/buffers no node reads: convert_pt2e keeps the float weights
    beside their int8 copies, which would double the stored size."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, leaf)
    return gm


@contextmanager
def qat_folds_only_where_they_can_match(qat: bool):
    """convert_pt2e runs torchao's `_fold_conv_bn_qat` on any graph holding a batch norm: for
    each of conv1d, conv2d, conv_transpose1d and conv_transpose2d it torch.exports 20 pattern
    graphs (8-11 s a kind on a 2-core Zen 3) to find QAT's fused conv + batch-norm blocks and
    fold them. Those blocks exist only after prepare_qat_pt2e (prepare_pt2e folds each conv's
    batch norm into the conv; a batch norm left, e.g. after densenet's concats, has no conv to
    fold into), and only for conv kinds the graph holds: the fold runs for those alone.
    Skipping the others changes nothing but how dequantize nodes with several users are shared
    (same values)."""
    from torchao.quantization.pt2e import qat_utils

    fold = qat_utils._fold_conv_bn_qat_helper

    def where_it_can_match(m, conv_fn, *args, **kwargs):
        if not qat or conv_fn.__name__ not in {
                n.target.overloadpacket.__name__ for n in m.graph.nodes
                if qat_utils._is_conv_or_conv_transpose_node(n)}:
            return m
        return fold(m, conv_fn, *args, **kwargs)

    qat_utils._fold_conv_bn_qat_helper = where_it_can_match
    try:
        yield
    finally:
        qat_utils._fold_conv_bn_qat_helper = fold


def is_int8_graph(model: nn.Module) -> bool:
    """A converted PT2E graph (quantize/dequantize ops of torchao's quantized_decomposed)."""
    return number_format(model) == "int8"


class Int8Quantization:
    """Post-training int8 (`qat: false`, calibration only) or quantization-aware training
    (`qat: true`: the recipe's fine-tuning runs with fake quantization).

    calibration_batches: training batches run through the observers before conversion (and
                         before QAT, to initialise the ranges), >= 1
    """

    name = "int8"
    quantizes = True  # changes number format, not the architecture (metrics: see recipe)

    def __init__(self, calibration_batches: int = 8, qat: bool = False):
        integer("compression int8 calibration_batches", calibration_batches, 1,
                reason="int8 scales come from calibration", layer="compression")
        self.calibration_batches, self.qat = int(calibration_batches), bool(qat)

    @property
    def finetunable(self) -> bool:
        return self.qat

    @contextmanager
    def frozen(self, model: nn.Module):
        """Observers paused: evaluating on validation data must not move the QAT ranges."""
        pt2e, _, _ = pt2e_api()
        model.apply(pt2e.disable_observer)
        try:
            yield model
        finally:
            if self.qat and not is_int8_graph(model):
                model.apply(pt2e.enable_observer)

    def apply(self, model: nn.Module, context) -> nn.Module:
        _, flow, _ = pt2e_api()
        if context.example is None:
            raise DLASError("int8 quantization", "no example input", layer="compression",
                            reason="the model is captured with torch.export on an example")
        model.train(self.qat)  # QAT captures training-mode ops (batch-norm updates)
        program = export_dynamic_batch(model, context.example)
        quantizer = conv_linear_quantizer(self.qat)
        prepare = flow.prepare_qat_pt2e if self.qat else flow.prepare_pt2e
        prepared = allow_train_eval(prepare(program.module(), quantizer))
        seen = 0
        with torch.no_grad():
            for x, _ in islice(context.train_batches(), self.calibration_batches):
                prepared(x)
                seen += 1
        if seen == 0:
            raise DLASError("int8 calibration data", "no training batches", layer="compression",
                            reason="the dataset's train split is empty")
        log.info("int8: calibrated on %d batches%s", seen, " (QAT next)" if self.qat else "")
        if self.qat:
            return prepared
        return self.finalize(prepared)

    def finalize(self, model: nn.Module) -> nn.Module:
        if is_int8_graph(model):
            return model  # post-training: converted in apply
        _, flow, _ = pt2e_api()
        model.eval()
        with qat_folds_only_where_they_can_match(self.qat):
            converted = flow.convert_pt2e(model)
        converted = allow_train_eval(drop_unused_tensors(converted))
        converted.eval()  # (the patched eval returns None)
        return converted

    def __repr__(self) -> str:
        return f"Int8Quantization(calibration_batches={self.calibration_batches}, qat={self.qat})"
