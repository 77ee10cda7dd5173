"""A compression recipe: steps applied in order, each followed by optional fine-tuning.

A step is any object of the `Step` protocol:
    name:                          the value recorded in results (unstructured, channel, ...)
    apply(model, context) -> model the transformed model (fine-tuning happens next)
    finalize(model) -> model       the model as exported (masks removed, int8 converted...)
optionally
    finetunable:                   whether fine-tuning after the step makes sense (pruning:
                                   yes, the default; post-training int8: no; int8 QAT: yes)
    check(model, example)          refuse settings the architecture cannot take, on an
                                   untrained model (runs before training)
    quantizes:                     True when the step changes the number format only (int8,
                                   fp16): parameters and MACs are then counted on the model
                                   before it, bytes on the model after it
    frozen(model)                  a context manager to evaluate the model under without
                                   changing it (e.g. with quantization observers paused)
`context` is a `StepContext`: an example input and the training batches (calibration).
Steps may be given as objects (Hydra `_target_` configs) or by name (`STEPS`), the
recipe's `ratio` then going to the steps that take one.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn

from dlas.errors import DLASError
from dlas.values import integer

# step name -> "module:class", imported on use (quantization pulls in torchao)
STEPS = {
    "unstructured": "dlas.compression.unstructured:UnstructuredPruning",
    "channel": "dlas.compression.channel:ChannelPruning",
    "int8": "dlas.compression.int8:Int8Quantization",
    "fp16": "dlas.compression.fp16:Float16",
}


@dataclass
class StepContext:
    """What a step may look at besides the model.

    example:       one input batch (shape, dtype) for tracing and counting
    train_batches: a callable returning an iterable of (x, y) training batches
                   (calibration of quantizers)
    """

    example: torch.Tensor | None = None
    train_batches: Callable[[], Iterable] = field(default=lambda: iter(()))


@runtime_checkable
class Step(Protocol):
    """What a recipe needs of a step (the optional members: see the module's docstring)."""

    name: str

    def apply(self, model: nn.Module, context: StepContext) -> nn.Module: ...

    def finalize(self, model: nn.Module) -> nn.Module: ...


def make_step(name: str, ratio: float | None = None) -> Step:
    """The step called `name` with its defaults (and the recipe's ratio, if it takes one)."""
    if name not in STEPS:
        raise DLASError("compression step", name, sorted(STEPS), layer="compression")
    module, cls = STEPS[name].split(":")
    step_type = getattr(importlib.import_module(module), cls)
    kwargs = {}
    if ratio is not None and "ratio" in inspect.signature(step_type).parameters:
        kwargs["ratio"] = ratio
    return step_type(**kwargs)


class Compression:
    """What the `compression` config group builds.

    name:            the layer value recorded in results (none, unstructured, channel_int8...)
    steps:           step objects or step names, applied in order
    finetune_epochs: epochs of fine-tuning after each finetunable step (0: none)
    ratio:           the recipe's headline ratio, a sweepable handle the steps interpolate
    """

    def __init__(self, name: str, steps: Sequence = (), finetune_epochs: int = 0,
                 ratio: float | None = None):
        integer("compression.finetune_epochs", finetune_epochs, 0, layer="compression")
        steps = [make_step(s, ratio) if isinstance(s, str) else s for s in steps]
        for step in steps:
            if not isinstance(step, Step):
                raise DLASError("compression step", step,
                                "objects with name, apply() and finalize()", layer="compression")
        self.name, self.steps, self.finetune_epochs, self.ratio = name, steps, finetune_epochs, ratio

    def apply(self, model: nn.Module, *, context: StepContext,
              evaluate: Callable[[nn.Module], float],
              finetune: Callable[[nn.Module, int], dict]
              ) -> tuple[nn.Module, nn.Module, list[dict]]:
        """Run every step. Returns the compressed model, its architecture in float (the model
        before any format-only step: what parameters and MACs are counted on) and one log
        entry per step."""
        log, structure = [], model
        for step in self.steps:
            model = step.apply(model, context)
            frozen = getattr(step, "frozen", lambda m: nullcontext())
            with frozen(model):
                before = after = evaluate(model)
            tuned = bool(self.finetune_epochs and getattr(step, "finetunable", True))
            fitted = {}
            if tuned:
                fitted = finetune(model, self.finetune_epochs) or {}
                with frozen(model):
                    after = evaluate(model)
            model = step.finalize(model)
            entry = {"step": step.name, "acc_before_finetune": before,
                     "acc_after_finetune": after, "finetuned": tuned,
                     "budget_hit": bool(fitted.get("budget_hit"))}
            final = evaluate(model)  # finalizing may change results (int8 conversion)
            if final != after:
                entry["acc_finalized"] = final
            log.append(entry)
            if not getattr(step, "quantizes", False):
                structure = model
        return model, structure, log

    def base(self) -> str:
        """The recipe without its number-format steps, e.g. `UnstructuredPruning(ratio=0.9)`
        for unstructured_int8, `none` for int8: what pairs a float and a quantized point."""
        kept = [step for step in self.steps if not getattr(step, "quantizes", False)]
        return "+".join(type(step).__name__ + (f"(ratio={step.ratio})"
                                               if getattr(step, "ratio", None) is not None else "")
                        for step in kept) or "none"

    def check(self, model: nn.Module, example: torch.Tensor) -> None:
        """Each step's check of its settings against the architecture (an untrained `model`)."""
        for step in self.steps:
            if hasattr(step, "check"):
                step.check(model, example)

    def __repr__(self) -> str:
        return f"Compression(name={self.name!r}, steps={[s.name for s in self.steps]})"
