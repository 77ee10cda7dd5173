"""Size and cost of a model as it will be deployed."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp

from dlas.compression.unstructured import prunable_weights


def model_metrics(model: nn.Module, example: torch.Tensor) -> dict:
    """Parameters, non-zeros, conv/linear weight sparsity, bytes as stored, MACs (dense count).

    Call it on a model as deployed (pruning masks removed): torch-pruning's counter copies the model.
    """
    params = sum(p.numel() for p in model.parameters())
    nonzeros = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    weights = [getattr(m, a) for m, a in prunable_weights(model)]
    w_total = sum(w.numel() for w in weights)
    w_zero = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    # Bytes of every tensor as stored (params and buffers): int8 counts 1, fp16 2, fp32 4.
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values()
               if isinstance(t, torch.Tensor))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, example)
    model.train(was_training)
    return {"params": params, "nonzeros": nonzeros,
            "weight_sparsity": w_zero / w_total if w_total else 0.0,
            "size_bytes": size, "macs": int(macs)}
