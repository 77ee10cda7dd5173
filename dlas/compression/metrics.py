"""Size and cost of a model as it will be deployed."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp

from dlas.compression.unstructured import prunable_weights
from dlas.models.build import input_dtype


def model_metrics(model: nn.Module, example: torch.Tensor) -> dict:
    """Parameters, non-zeros, conv/linear weight sparsity, bytes as stored, MACs (dense count).

    Call it on a model as deployed (pruning masks removed): torch-pruning's counter copies the model.
    """
    params = sum(p.numel() for p in model.parameters())
    nonzeros = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    weights = [getattr(m, a) for m, a in prunable_weights(model)]
    w_total = sum(w.numel() for w in weights)
    w_zero = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    size = stored_bytes(model)
    # the counter runs the model: a float16 model (fp16 step) needs a float16 example
    dtype = input_dtype(model) or example.dtype
    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, example.to(dtype))
    model.train(was_training)
    return {"params": params, "nonzeros": nonzeros,
            "weight_sparsity": w_zero / w_total if w_total else 0.0,
            "size_bytes": size, "macs": int(macs)}


def stored_bytes(model: nn.Module) -> int:
    """Bytes of every tensor the model holds (params and buffers): int8 counts 1, fp16 2."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()
               if isinstance(t, torch.Tensor))


def number_format(model: nn.Module) -> str:
    """int8 (a converted quantized graph), float16 (half weights) or float32."""
    if isinstance(model, torch.fx.GraphModule) and any(
            n.op == "call_function" and "quantized_decomposed" in str(n.target)
            for n in model.graph.nodes):
        return "int8"
    return "float16" if input_dtype(model) == torch.float16 else "float32"
