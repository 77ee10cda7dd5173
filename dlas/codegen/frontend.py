"""PyTorch -> Relax: torch.export, TVM's exported-program importer, inference clean-up."""
from __future__ import annotations

import re

import torch
import tvm
from tvm.relax.frontend.torch import from_exported_program

from dlas.codegen import batchnorm
from dlas.codegen.pipeline import inference_passes
from dlas.codegen.precision import float32_copy, to_float16
from dlas.codegen.quantized import import_options as int8_import_options
from dlas.compression.metrics import number_format
from dlas.errors import DLASError, first_line


def import_model(model: torch.nn.Module, example: torch.Tensor) -> tvm.IRModule:
    """The model in eval mode as a Relax module whose `main` takes a tensor like `example`.

    Weights become constants (`keep_params_as_input=False`), so later passes can fold
    weight transforms at compile time; batch-norm is folded into the preceding conv2d or
    decomposed (inference only); `main` returns the logits tensor, not a 1-tuple.
    An int8 net (a converted PT2E graph) gets integer conv2d/matmul (see quantized.py).
    A float16 net is imported as float32 and given float16 compute (see precision.py);
    its `main` still takes and returns float32.
    """
    fmt = number_format(model)
    if fmt == "float16":  # TVM's importer cannot take a half graph
        return to_float16(import_model(float32_copy(model), example.float()))
    try:
        model.eval()
    except NotImplementedError:  # an exported graph: train/eval were fixed when captured
        pass
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,))
    except Exception as err:  # torch raises many types; all mean "cannot capture"
        raise DLASError("torch.export", type(model).__name__, layer="codegen",
                        reason=_first_line(err)) from err
    try:
        mod = from_exported_program(program, keep_params_as_input=False,
                                    unwrap_unit_return_tuple=True, **_options(program, fmt))
    except AssertionError as err:
        found = re.search(r"Unsupported function types \[(.*)\]", str(err))
        if found is None:
            raise DLASError("Relax import", type(model).__name__, layer="codegen",
                            reason=_first_line(err)) from err
        ops = [op.strip(" '\"") for op in found.group(1).split(",")]
        raise DLASError("torch ops", ", ".join(sorted(ops)), layer="codegen",
                        reason="not supported by TVM's Relax importer") from err
    except Exception as err:
        raise DLASError("Relax import", type(model).__name__, layer="codegen",
                        reason=_first_line(err)) from err
    batchnorm.check_epsilons(program, mod)
    return tvm.transform.Sequential(inference_passes())(mod)


def _options(program: torch.export.ExportedProgram, fmt: str) -> dict:
    """Importer options: no ATen decomposition (`run_ep_decomposition=False`) for any format.
    TVM's importer converts these models' undecomposed ops itself, 4-6x faster than it
    decomposes them first (densenet161 at 32x32: 13.3 -> 3.5 s, efficientnet_b0 6.6 -> 1.0 s;
    the Relax graphs differ only in global pooling, adaptive_avg_pool2d for mean, and silu for
    sigmoid x multiply); int8 programs need it (quantized.py). Their batch norms then go
    through DLAS's converter (batchnorm.py)."""
    options = int8_import_options(program) if fmt == "int8" else {
        "custom_convert_map": {}, "run_ep_decomposition": False}
    options["custom_convert_map"] = {**options["custom_convert_map"], **batchnorm.convert_map()}
    return options


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_line(str(err))}"[:300]
