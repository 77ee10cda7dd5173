"""Channel pruning (torch-pruning DepGraph) on every model of the registry and on tiny nets.

The compiled-and-compared check of a channel-pruned model is in
tests/codegen/test_models_compile.py (test_channel_pruned_model_matches_pytorch).
"""
from __future__ import annotations

import copy
import io
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from dlas.compression import ChannelPruning, Compression, StepContext, model_metrics
from dlas.errors import DLASError
from dlas.models import MODELS, make_model

EXAMPLE = StepContext(example=torch.zeros(1, 3, 32, 32))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on the 2 shared cores, worker threads spinning against other
    processes made densenet161's test 4x slower (prune 75 s vs 20 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def convs(net: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_shrinks_and_stays_exportable(name):
    torch.manual_seed(0)
    net = make_model(name, 10, 32)
    x = torch.randn(2, 3, 32, 32)
    before = model_metrics(net, x[:1])
    widths = {n: m.out_channels for n, m in convs(net).items()}
    tracked = {n: int(m.num_batches_tracked) for n, m in net.named_modules()
               if isinstance(m, nn.BatchNorm2d)}

    net = ChannelPruning(ratio=0.5).apply(net, EXAMPLE)

    assert net.training  # the mode is restored, and tracing did not update BatchNorm statistics
    assert tracked == {n: int(m.num_batches_tracked) for n, m in net.named_modules()
                       if isinstance(m, nn.BatchNorm2d)}
    shrunk = [n for n, m in convs(net).items() if m.out_channels < widths[n]]
    assert len(shrunk) >= len(widths) // 2, shrunk
    after = model_metrics(net, x[:1])
    assert after["macs"] <= 0.6 * before["macs"], (before, after)
    assert after["params"] < before["params"]

    net = ChannelPruning().finalize(net).eval()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 10)
    buf = io.BytesIO()
    torch.save(net, buf)  # how the artifact store keeps compressed models
    buf.seek(0)
    with torch.no_grad():
        assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    exported = torch.export.export(net, (x,)).module()
    with torch.no_grad():
        assert torch.allclose(exported(x), y, rtol=1e-4, atol=1e-5)


class LateHead(nn.Module):
    """The classifier is defined first, but another Linear runs before it: the last Linear
    in module order (proj) is not the one producing the logits (head)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.proj = nn.Linear(8, 16)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv(x))))
        return self.head(torch.relu(self.proj(x.mean((2, 3)))))


def test_classifier_is_the_layer_producing_the_logits():
    net = ChannelPruning(ratio=0.5).apply(LateHead(), StepContext(example=torch.zeros(1, 3, 8, 8)))
    assert net.head.out_features == 10 and net.head.in_features == 8
    assert net.proj.out_features == 8 and net.conv.out_channels == 4 and net.conv2.out_channels == 4
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_ignored_layers_keep_their_channels():
    torch.manual_seed(0)
    net = make_model("resnet18", 10, 32)
    step = ChannelPruning(ratio=0.5, ignored_layers=["layer4.1.conv1", "layer2.*"])
    net = step.apply(net, EXAMPLE)
    assert net.fc.out_features == 10 and net.fc.in_features == 256
    assert net.layer4[1].conv1.out_channels == 512
    assert net.layer4[1].conv1.in_channels == 256  # its inputs still shrink with layer4.0
    assert net.layer4[0].conv1.out_channels == 256
    # layer2 keeps its width, and so does everything on its residual path
    assert all(m.out_channels == 128 for n, m in convs(net.layer2).items() if n != "0.downsample.0")
    assert net.layer1[0].conv1.out_channels == 32 and net.layer3[0].conv1.out_channels == 128


def test_ignored_layer_that_matches_nothing_is_refused():
    step = ChannelPruning(ratio=0.5, ignored_layers=["layer9.*"])
    with pytest.raises(DLASError, match="layer9") as err:
        step.apply(make_model("resnet18", 10, 32), EXAMPLE)
    assert "matches no module" in str(err.value) and "\n" not in str(err.value)


def test_ratio_zero_leaves_the_model_alone():
    torch.manual_seed(0)
    net = make_model("resnet18", 10, 32)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert ChannelPruning(ratio=0).apply(net, EXAMPLE) is net
    after = net.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)


@pytest.mark.parametrize("kwargs,bad", [
    ({"ratio": 1.0}, "ratio"), ({"ratio": 1.5}, "ratio"), ({"ratio": -0.1}, "ratio"),
    ({"ratio": "half"}, "ratio"), ({"importance": "l3"}, "importance"),
    ({"round_to": 0}, "round_to"), ({"round_to": 2.5}, "round_to"), ({"ignored_layers": [3]}, "ignored"),
])
def test_bad_arguments_are_refused(kwargs, bad):
    with pytest.raises(DLASError, match=bad) as err:
        ChannelPruning(**kwargs)
    assert err.value.layer == "compression" and "\n" not in str(err.value)


def tiny(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, width, 3, padding=1), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(), fc=nn.Linear(width, 10)))


TINY = StepContext(example=torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("width,kwargs", [(3, {"ratio": 0.7}), (6, {"ratio": 0.5, "round_to": 4})])
def test_pruning_every_channel_of_a_layer_is_refused(width, kwargs):
    net = tiny(width)
    with pytest.raises(DLASError, match="layer stem") as err:
        ChannelPruning(**kwargs).apply(net, TINY)
    assert "keep 0 channels" in str(err.value) and "\n" not in str(err.value)
    assert net.stem.out_channels == width  # refused before anything was pruned


@pytest.mark.parametrize("width,kwargs,kept", [
    (3, {"ratio": 0.5}, 1), (6, {"ratio": 0.5, "round_to": 2}, 2), (8, {"ratio": 0.5, "importance": "l1"}, 4),
])
def test_kept_channel_counts(width, kwargs, kept):
    net = ChannelPruning(**kwargs).apply(tiny(width), TINY)
    assert net.stem.out_channels == net.fc.in_features == kept and net.fc.out_features == 10


def test_l1_and_l2_keep_the_largest_channels():
    net = tiny(4)
    with torch.no_grad():  # channel norms: 0 and 2 large, 1 and 3 small
        net.stem.weight.mul_(torch.tensor([10.0, 0.1, 10.0, 0.1]).view(4, 1, 1, 1))
    kept = net.stem.weight[[0, 2]].clone()
    for importance in ("l1", "l2"):
        pruned = ChannelPruning(ratio=0.5, importance=importance).apply(copy.deepcopy(net), TINY)
        assert torch.equal(pruned.stem.weight, kept), importance


def test_missing_example_is_refused():
    with pytest.raises(DLASError, match="example"):
        ChannelPruning(ratio=0.5).apply(tiny(8), StepContext())


def test_recipe_by_name_prunes_and_finetunes():
    recipe = Compression("channel", ["channel"], finetune_epochs=1, ratio=0.5)
    assert isinstance(recipe.steps[0], ChannelPruning) and recipe.steps[0].ratio == 0.5
    torch.manual_seed(0)
    net = make_model("resnet18", 10, 32)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    losses = []

    def finetune(model, epochs):  # one real SGD step: the pruned model trains
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        return {}

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())

    net, *_, log = recipe.apply(net, context=EXAMPLE, evaluate=evaluate, finetune=finetune)
    assert net.conv1.out_channels == 32 and net.fc.out_features == 10
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]))
    assert log[0]["step"] == "channel" and log[0]["finetuned"] is True


def test_config_builds_with_the_recipe_ratio(make_cfg):
    cfg = make_cfg("compress", ["compression=channel", "compression.ratio=0.3"])
    recipe = instantiate(cfg.compression)
    step = recipe.steps[0]
    assert recipe.name == "channel" and isinstance(step, ChannelPruning)
    assert step.ratio == 0.3 and step.importance == "l2" and step.round_to is None
    assert step.ignored_layers == []
