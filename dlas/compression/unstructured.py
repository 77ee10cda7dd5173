"""Unstructured magnitude pruning: zero the smallest weights, keep the dense shapes."""
from __future__ import annotations

import logging

import torch.nn as nn
from torch.nn.utils import prune

from dlas.errors import DLASError
from dlas.values import number

log = logging.getLogger(__name__)
PRUNABLE = (nn.Conv2d, nn.Linear)
SCOPES = ("global", "layer")


def check_ratio(ratio, what: str = "compression.ratio") -> float:
    return number(what, ratio, 0, 1, high_open=True, layer="compression")


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


class UnstructuredPruning:
    """L1-magnitude pruning of conv and linear weights, over the whole model or per layer.

    `apply` installs torch's pruning masks, so fine-tuning keeps pruned weights at zero;
    `finalize` bakes the zeros into plain weight tensors before export.
    """

    name = "unstructured"
    finetunable = True

    def __init__(self, ratio: float = 0.5, scope: str = "global"):
        self.ratio = check_ratio(ratio)
        if scope not in SCOPES:
            raise DLASError("compression scope", scope, SCOPES, layer="compression")
        self.scope = scope

    def apply(self, model: nn.Module, context=None) -> nn.Module:
        params = prunable_weights(model)
        if self.ratio == 0 or not params:
            return model
        if self.scope == "global":
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=self.ratio)
        else:
            for module, attr in params:
                prune.l1_unstructured(module, attr, amount=self.ratio)
        self._warn_empty(model)
        return model

    def _warn_empty(self, model: nn.Module) -> None:
        # global pruning can take a whole layer whose weights are small next to the others'
        # (mobilenetv2's classifier at 0.9, trained or not): the output then no longer
        # depends on the input, which a study should see before it reads an accuracy
        empty = [name for name, m in model.named_modules()
                 if isinstance(m, PRUNABLE) and hasattr(m, "weight_mask")
                 and not bool(m.weight_mask.any())]
        if empty:
            log.warning("%s pruning to %g removed every weight of %s: what follows gets "
                        "only their bias%s", self.scope, self.ratio, ", ".join(empty),
                        " (compression.scope=layer prunes each layer alike)"
                        if self.scope == "global" else "")

    def finalize(self, model: nn.Module) -> nn.Module:
        for module, attr in prunable_weights(model):
            if prune.is_pruned(module) and hasattr(module, attr + "_mask"):
                prune.remove(module, attr)
        return model
