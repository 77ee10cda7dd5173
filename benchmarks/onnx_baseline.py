"""ONNX Runtime baselines of the benchmarks: a session, the export of a PyTorch net, and int8
the usual way (static QDQ: per-channel s8 weights, u8 activations, calibrated on given samples)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(net, x, path: Path) -> None:
    import torch

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():  # its progress lines
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"])


def quantize_onnx(fp32: Path, out: Path, samples) -> None:
    """ORT int8 the usual way: static QDQ, per-channel weights (see the module docstring)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": s} for s in samples])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
