from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from dlas.data import DigitsDataModule
from dlas.models import make_model
from dlas.training import Classifier, evaluate, fit, set_threads


def trainer(**kwargs) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
                deterministic=True)
    return pl.Trainer(**{**args, **kwargs})


def small_cnn(num_classes: int = 10) -> nn.Module:
    # A few-thousand-parameter net so that whole epochs on digits take well under a second.
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


@pytest.fixture(scope="module")
def dm() -> DigitsDataModule:
    return DigitsDataModule(image_size=16, batch_size=64)


def test_fit_learns_digits(dm):
    torch.manual_seed(0)
    net = small_cnn()
    before = evaluate(net, dm.val_dataloader())
    adam = functools.partial(torch.optim.Adam, lr=1e-2)
    result = fit(net, dm, trainer(max_epochs=3), adam, seed=0)
    assert set(result) >= {"val_acc", "val_loss", "train_loss", "epochs", "steps", "train_seconds"}
    assert result["epochs"] == 3 and result["steps"] == 3 * 23 and result["train_seconds"] > 0
    assert not result["budget_hit"]  # stopped by its epochs
    # val_acc is that of the final weights, and training clearly beat the untrained net
    assert result["val_acc"] == pytest.approx(evaluate(net, dm.val_dataloader()), abs=1e-6)
    assert result["val_acc"] > max(0.5, before + 0.3)
    assert not net.training
    # BN statistics were recomputed over the last 8 training batches (not 69 running updates)
    assert int(net[1].num_batches_tracked) == 8


def test_fit_without_bn_recalibration_keeps_running_averages(dm):
    net = small_cnn()
    result = fit(net, dm, trainer(limit_train_batches=5), functools.partial(torch.optim.Adam, lr=1e-2),
                 bn_batches=0)
    assert result["steps"] == 5 and int(net[1].num_batches_tracked) == 5


class LrLog(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fit_with_limits_and_one_cycle(dm):
    torch.manual_seed(0)
    net = small_cnn()
    sched = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-2)
    log = LrLog()
    t = trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, callbacks=[log])
    result = fit(net, dm, t, functools.partial(torch.optim.SGD, lr=1e-3), sched)
    assert result["steps"] == 6 and result["epochs"] == 2
    # validation was limited, so val_acc is re-measured on the whole val split
    assert result["val_acc"] == pytest.approx(evaluate(net, dm.val_dataloader()), abs=1e-6)
    # total_steps filled in from the run's length: one whole cycle over the 6 steps
    assert t.lr_scheduler_configs[0].scheduler.total_steps == 6
    assert log.lrs[0] == pytest.approx(1e-2 / 25) and max(log.lrs) == pytest.approx(1e-2, rel=0.3)
    assert log.lrs[-1] == pytest.approx(1e-2 / 25 / 1e4)


def test_fit_time_budget_stops_and_still_reports(dm):
    net = small_cnn()
    result = fit(net, dm, trainer(max_epochs=1000, max_time={"seconds": 1}),
                 functools.partial(torch.optim.Adam, lr=1e-3))
    assert result["epochs"] < 1000 and 0 <= result["val_acc"] <= 1
    assert result["budget_hit"]  # the model depends on the machine's speed: marked


def test_fit_keeps_prune_masks(dm):
    torch.manual_seed(0)
    net = small_cnn()
    fit(net, dm, trainer(max_epochs=1, limit_train_batches=5), functools.partial(torch.optim.Adam, lr=1e-2))
    params = [(m, "weight") for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.7)
    masks = {id(m): m.weight_mask.clone() for m, _ in params}
    origs = {id(m): m.weight_orig.detach().clone() for m, _ in params}
    # fine-tuning: a new Trainer and a lower learning rate with weight decay (which moves
    # weight_orig everywhere, masked entries included)
    result = fit(net, dm, trainer(max_epochs=2, limit_train_batches=5),
                 functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1))
    assert 0 <= result["val_acc"] <= 1
    for m, _ in params:
        assert torch.equal(m.weight_mask, masks[id(m)])
        assert not torch.equal(m.weight_orig, origs[id(m)])  # it did train
        assert (m.weight[m.weight_mask == 0] == 0).all()
    acc = evaluate(net, dm.val_dataloader())
    for m, attr in params:
        prune.remove(m, attr)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    total = sum(m.weight.numel() for m, _ in params)
    assert zeros / total == pytest.approx(0.7, abs=0.01)
    assert evaluate(net, dm.val_dataloader()) == acc


def test_fit_real_model_pruned_one_step():
    # The fine-tuning path on a model-layer net (resnet18, CIFAR stem) with masks on every conv.
    torch.manual_seed(0)
    dm = DigitsDataModule(image_size=8, batch_size=8)
    net = make_model("resnet18", 10, 8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        prune.l1_unstructured(conv, "weight", amount=0.5)
    fit(net, dm, trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1),
        functools.partial(torch.optim.Adam, lr=1e-4))
    for conv in convs:
        assert (conv.weight_orig * conv.weight_mask)[conv.weight_mask == 0].abs().sum() == 0
        assert conv.weight_mask.mean() == pytest.approx(0.5, abs=0.01)


def test_evaluate_restores_mode_and_counts():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
        net.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    net.train()
    assert evaluate(net, DataLoader(TensorDataset(x, y), batch_size=3)) == 0.75
    assert net.training


def test_classifier_validates_in_float32_under_bf16():
    # Validation must score the float32 weights the deploy stage will run, not bf16 autocast.
    seen = []
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    net.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    module = Classifier(net, functools.partial(torch.optim.SGD, lr=0.1))
    trainer(precision="bf16-mixed").fit(module, loader, loader)
    assert (True, torch.bfloat16) in seen and (False, torch.float32) in seen
    assert (False, torch.bfloat16) not in seen


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads() >= 1
    finally:
        torch.set_num_threads(before)


def test_evaluate_feeds_a_half_net_half_inputs():
    torch.manual_seed(0)
    net = small_cnn().eval()
    x = torch.randn(32, 3, 16, 16)
    with torch.no_grad():
        y = net(x).argmax(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    assert evaluate(net, loader) == 1.0
    assert evaluate(net.half(), loader) >= 0.9  # float32 batches cast to float16


def test_same_config_same_weights_when_the_machine_is_busy(dm):
    """Training stops by its epochs (max_time is only a guard), so load cannot change the model."""
    import subprocess
    import sys

    def train():
        torch.manual_seed(0)
        net = small_cnn()
        result = fit(net, dm, trainer(max_epochs=2, limit_train_batches=8, max_time={"hours": 1}),
                     functools.partial(torch.optim.Adam, lr=1e-2), seed=0)
        return net.state_dict(), result

    quiet, first = train()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # the other core busy
    try:
        busy, second = train()
    finally:
        spin.kill()
    assert not first["budget_hit"] and not second["budget_hit"]
    assert first["steps"] == second["steps"] == 16
    assert all(torch.equal(quiet[name], busy[name]) for name in quiet)
