"""Structured channel pruning: remove whole channels, so the layers really shrink.

torch-pruning's DepGraph finds the channels that must go together (residual adds,
concatenations, depthwise convs, BatchNorms, the next layer's inputs) and MetaPruner removes
the least important `ratio` of each group, ranked by the L1/L2 norm of their weights.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch_pruning as tp

from dlas.compression.unstructured import check_ratio
from dlas.errors import ConfigError, DLASError
from dlas.values import integer

IMPORTANCE = {"l1": 1, "l2": 2}  # name -> norm order of MagnitudeImportance
ROOTS = (nn.Conv2d, nn.Linear)  # layers whose output channels are pruned (the groups' roots)


def classifier(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The module producing the logits: the last conv/linear run by the forward pass.

    Found by running it rather than by module order: definition order need not be call order.
    """
    called: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: called.append(mod))
             for m in model.modules() if isinstance(m, ROOTS)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if not called:
        raise DLASError("channel pruning", type(model).__name__,
                        reason="the model has no Conv2d or Linear layer to prune", layer="compression")
    return called[-1]


def match_layers(model: nn.Module, patterns: Iterable[str]) -> list[nn.Module]:
    """The modules named by `patterns` (names or fnmatch globs); each pattern must match one."""
    named = dict(model.named_modules())
    found = []
    for pattern in patterns:
        hits = [m for name, m in named.items() if name and fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            top = [name for name, _ in model.named_children()][:4]
            raise ConfigError("compression ignored_layers", pattern,
                              f"module names or fnmatch globs of this model, e.g. "
                              f"{', '.join(top)}, {top[0]}.*" if top
                              else "module names or fnmatch globs",
                              reason="matches no module", layer="compression")
        found += hits
    return found


class ChannelPruning:
    """Remove `ratio` of the output channels of every prunable layer (torch-pruning MetaPruner).

    ratio:          fraction of each layer's channels removed, in [0, 1)
    importance:     l2 | l1, the weight norm ranking the channels of a group
    ignored_layers: module names or fnmatch globs whose output channels are kept (their
                    inputs still shrink with the layers before them); the classifier is
                    always kept, so the number of classes does not change
    round_to:       keep channel counts multiples of this (e.g. 8 for vector widths); None: off
    """

    name = "channel"
    finetunable = True

    def __init__(self, ratio: float = 0.5, importance: str = "l2",
                 ignored_layers: Iterable[str] = (), round_to: int | None = None):
        self.ratio = check_ratio(ratio)
        if importance not in IMPORTANCE:
            raise DLASError("compression importance", importance, sorted(IMPORTANCE),
                            layer="compression")
        if isinstance(ignored_layers, str):  # one name given where a list was meant
            ignored_layers = [ignored_layers]
        ignored_layers = list(ignored_layers or ())
        for pattern in ignored_layers:
            if not isinstance(pattern, str):
                raise DLASError("compression ignored_layers", pattern,
                                "module names or globs (strings)", layer="compression")
        integer("compression round_to", round_to, 1, optional=True, layer="compression")
        self.importance = importance
        self.ignored_layers = ignored_layers
        self.round_to = None if round_to is None else int(round_to)

    def apply(self, model: nn.Module, context=None) -> nn.Module:
        if self.ratio == 0:
            return model
        example = getattr(context, "example", None)
        if example is None:
            raise DLASError("channel pruning", reason="needs an example input (context.example) "
                            "to trace the model", layer="compression")
        with self._pruner(model, example) as pruner:
            pruner.step()
        return model

    def check(self, model: nn.Module, example: torch.Tensor) -> None:
        """Refuse settings this architecture cannot take (a layer left without channels, an
        ignored layer that does not exist) on an untrained copy, before any training."""
        if self.ratio:
            with self._pruner(model, example):
                pass

    @contextmanager
    def _pruner(self, model: nn.Module, example: torch.Tensor):
        """torch-pruning's MetaPruner over `model`, its settings checked; the model is in eval
        mode inside the block."""
        ignored = match_layers(model, self.ignored_layers)  # bad names fail before any work
        param = next(model.parameters(), None)
        if param is not None:
            example = example.to(param.device)
        was_training = model.training
        model.eval()  # tracing runs the model: train-mode BatchNorm would update its statistics
        try:
            with torch.enable_grad():  # DepGraph traces the autograd graph
                importance = tp.importance.MagnitudeImportance(p=IMPORTANCE[self.importance])
                pruner = tp.pruner.MetaPruner(
                    model, example, importance=importance, pruning_ratio=self.ratio,
                    ignored_layers=[classifier(model, example), *ignored], round_to=self.round_to)
            self._refuse_empty_layers(pruner)
            yield pruner
        finally:
            model.train(was_training)

    def kept(self, channels: int, groups: int = 1) -> int:
        """Channels a layer keeps, computed as MetaPruner does (per channel group, rounded down)."""
        size = channels // groups
        pruned = size - int(size * (1 - self.ratio))
        if pruned > 0 and self.round_to:
            kept = channels - pruned
            pruned = channels - (kept - kept % self.round_to)
        return channels - pruned * groups

    def _refuse_empty_layers(self, pruner: tp.pruner.MetaPruner) -> None:
        """Raise naming the first layer that would lose every channel.

        MetaPruner itself skips such a layer silently (it leaves it unpruned), so a ratio or
        round_to too large for a narrow layer would quietly prune less than asked.
        """
        graph = pruner.DG
        ignored = set(pruner.ignored_layers) | set(graph.IGNORED_LAYERS_IN_TRACING)
        for module in graph.module2node:
            if module in ignored or not isinstance(module, tuple(pruner.root_module_types)):
                continue
            channels = graph.get_out_channels(module)
            if channels is None or channels <= 1:  # MetaPruner never prunes 1-channel layers
                continue
            if self.kept(channels, pruner.out_channel_groups.get(module, 1)) > 0:
                continue
            group = graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels,
                                            list(range(channels)))
            if any(graph.is_out_channel_pruning_fn(dep.handler) and dep.target.module in ignored
                   for dep, _ in group):
                continue  # coupled with an ignored layer: MetaPruner leaves the group alone
            name = graph._module2name.get(module, type(module).__name__)
            raise ConfigError("compression.ratio", self.ratio,
                              "a smaller ratio or round_to" if self.round_to else "a smaller ratio",
                              reason=f"layer {name} ({channels} channels) would keep 0 channels"
                              + (f" with round_to={self.round_to}" if self.round_to else ""),
                              layer="compression")

    def finalize(self, model: nn.Module) -> nn.Module:
        """Nothing to remove: the pruned layers are plain torch modules with smaller shapes."""
        return model
