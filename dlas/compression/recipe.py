"""A compression recipe: steps applied in order, each followed by optional fine-tuning."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

import torch.nn as nn

from dlas.errors import DLASError


class Compression:
    """What the `compression` config group builds.

    name:            the layer value recorded in results (none, unstructured, ...)
    steps:           objects with `name`, `apply(model, example) -> model` and
                     `finalize(model) -> model` (e.g. make pruning masks permanent)
    finetune_epochs: epochs of fine-tuning after each step (0: none)
    ratio:           the recipe's headline ratio, a sweepable handle the steps interpolate
    """

    def __init__(self, name: str, steps: Sequence = (), finetune_epochs: int = 0,
                 ratio: float | None = None):
        if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, Integral) \
                or finetune_epochs < 0:
            raise DLASError("compression.finetune_epochs", finetune_epochs, "an integer >= 0",
                            layer="compression")
        for step in steps:
            if not all(hasattr(step, a) for a in ("name", "apply", "finalize")):
                raise DLASError("compression step", step,
                                "objects with name, apply() and finalize()", layer="compression")
        self.name, self.steps, self.finetune_epochs, self.ratio = name, list(steps), finetune_epochs, ratio

    def apply(self, model: nn.Module, *, example, evaluate: Callable[[nn.Module], float],
              finetune: Callable[[nn.Module, int], dict]) -> tuple[nn.Module, list[dict]]:
        """Run every step; return the compressed model and one log entry per step."""
        log = []
        for step in self.steps:
            model = step.apply(model, example)
            before = after = evaluate(model)
            if self.finetune_epochs:
                finetune(model, self.finetune_epochs)
                after = evaluate(model)
            model = step.finalize(model)
            log.append({"step": step.name, "acc_before_finetune": before,
                        "acc_after_finetune": after})
        return model, log
