from __future__ import annotations

import torch
import torch.nn as nn

from dlas.training import recalibrate_batchnorm


def net_with_stale_bn() -> nn.Sequential:
    torch.manual_seed(0)
    # A conv that shrinks activations 1000x, like MobileNetV2's fan_out-initialised depthwise
    # convs: BN's initial running_var=1 is then far from the real variance.
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(1e-3)
        conv.bias.zero_()
    return nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def test_recalibration_matches_batch_statistics():
    net = net_with_stale_bn()
    bn = net[1]
    bn.momentum = 0.3
    batches = [torch.randn(5, 3, 6, 6) + i for i in range(3)]
    net.train()
    assert recalibrate_batchnorm(net, batches) == 1
    acts = torch.cat([net[0](x) for x in batches])
    # equal-weight average of the per-batch means and unbiased variances
    means = torch.stack([net[0](x).mean((0, 2, 3)) for x in batches]).mean(0)
    vars_ = torch.stack([net[0](x).var((0, 2, 3), unbiased=True) for x in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, means.detach())
    torch.testing.assert_close(bn.running_var, vars_.detach())
    assert acts.var() < 1e-2  # the stale running_var (1.0) was far off
    # modes and momentum restored: the net was in train mode, dropout included
    assert net.training and net[3].training and bn.momentum == 0.3


def test_recalibration_fixes_eval_collapse():
    net = net_with_stale_bn()
    x = torch.randn(16, 3, 6, 6)
    net.eval()
    with torch.no_grad():
        stale = net(x)
        # train-mode BN (batch statistics) with dropout off is what eval should reproduce
        net[1].train()
        reference = net(x)
        net[1].eval()
    assert (stale - reference).abs().max() > 1e-2 * reference.abs().max()
    recalibrate_batchnorm(net, [x])
    with torch.no_grad():
        out = net(x)
    assert not net.training
    # unbiased running var vs the biased var used in train mode: equal up to n/(n-1), n=576
    torch.testing.assert_close(out, reference, rtol=2e-3, atol=2e-3 * reference.abs().max().item())


def test_no_batchnorm_or_no_batches_is_a_no_op():
    lin = nn.Linear(2, 2)
    assert recalibrate_batchnorm(lin, [torch.randn(3, 2)]) == 0
    net = net_with_stale_bn()
    assert recalibrate_batchnorm(net, []) == 0 and net[1].running_var.eq(1).all()
