"""Sparse direct conv vs dense direct vs PyTorch on resnet18's 3x3 convs at 32x32.

Every distinct 3x3 conv of resnet18 (10 classes, 32x32 input) with a random weight at
`--sparsity` (unstructured; for BSR also a block-structured weight of the same sparsity,
whose zeros fall in whole (bo, bk) tiles), each built alone with Untuned + Direct and timed
on the Relax VM; PyTorch conv2d (eager, torch.set_num_threads(2)) as reference, timed
first, before TVM's thread pool exists (its workers spin after each parallel call and
then take the cores from PyTorch's threads: 10-50x slower torch numbers when interleaved).
TVM timings are interleaved round by round and the best round kept (shared machine).

    python benchmarks/direct_sparse.py [--sparsity 0.9] [--block 4 1] [--rounds 7]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
import tvm
from tvm import relax

from dlas.codegen import Untuned
from dlas.hardware.base import make_target
from dlas.models import make_model
from dlas.primitives import Direct


def resnet18_3x3_convs() -> dict[tuple, int]:
    """(C, O, H, W, stride) -> how many times it occurs."""
    net = make_model("resnet18", 10, 32).eval()
    found: dict[tuple, int] = {}

    def hook(m, inputs, _):
        _, c, h, w = inputs[0].shape
        key = (c, m.out_channels, h, w, m.stride[0])
        found[key] = found.get(key, 0) + 1

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    return found


def conv_module(c, h, w, weight, stride):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, h, w), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), strides=stride,
                                           padding=(1, 1, 1, 1)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def block_sparse(rng, shape, sparsity, block):
    o, k = shape[0], int(np.prod(shape[1:]))
    bo, bk = block
    keep = rng.random((o // bo, k // bk)) >= sparsity
    mask = np.repeat(np.repeat(keep, bo, 0), bk, 1).reshape(shape)
    return rng.standard_normal(shape).astype(np.float32) * mask


def best_ms(fn, rounds: int, calls: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--block", type=int, nargs=2, default=[4, 1])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    target = make_target({"kind": "llvm", "mcpu": "host"})
    rng = np.random.default_rng(0)
    block = tuple(args.block)
    names = ["dense", "csr", f"bsr{block}", f"bsr{block} blocky", "torch"]
    totals = dict.fromkeys(names, 0.0)
    layers = sorted(resnet18_3x3_convs().items())
    weights, inputs, torch_ms = {}, {}, {}
    for (c, o, h, w, stride), _ in layers:
        shape = (o, c, 3, 3)
        unstructured = rng.standard_normal(shape).astype(np.float32)
        unstructured[rng.random(shape) < args.sparsity] = 0
        weights[c, o, h, w, stride] = (unstructured, block_sparse(rng, shape, args.sparsity,
                                                                  block))
        inputs[c, o, h, w, stride] = x = rng.standard_normal((1, c, h, w)).astype(np.float32)
        wt, xtorch = torch.from_numpy(unstructured), torch.from_numpy(x)
        torch_ms[c, o, h, w, stride] = best_ms(
            lambda: F.conv2d(xtorch, wt, stride=stride, padding=1), args.rounds)
    print(f"{'C->O HxW s':>18} x#  " + "  ".join(f"{n:>16}" for n in names) + "   (ms)")
    for key, count in layers:
        c, o, h, w, stride = key
        unstructured, blocky = weights[key]
        x = inputs[key]
        xt = tvm.runtime.tensor(x)
        runs = {}
        for name, weight, prim in [
                ("dense", unstructured, Direct()),
                ("csr", unstructured, Direct(format="csr")),
                (names[2], unstructured, Direct(format="bsr", block=block)),
                (names[3], blocky, Direct(format="bsr", block=block))]:
            ex = Untuned().build(conv_module(c, h, w, weight, stride), prim, target).executable
            fn = relax.VirtualMachine(ex, tvm.cpu())["main"]
            ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), stride=stride,
                           padding=1).numpy()
            assert np.abs(fn(xt).numpy() - ref).max() <= 1e-4 * np.abs(ref).max()
            runs[name] = (lambda fn=fn: fn(xt))
        best = dict.fromkeys(names[:-1], float("inf"))
        for _ in range(args.rounds):
            for name in best:
                best[name] = min(best[name], best_ms(runs[name], 1))
        best["torch"] = torch_ms[key]
        for name in names:
            totals[name] += best[name] * count
        print(f"{c:>4}->{o:<4}{h:>3}x{w:<3}s{stride} {count:>2}  "
              + "  ".join(f"{best[n]:16.3f}" for n in names))
    print(f"{'total (x count)':>22}  " + "  ".join(f"{totals[n]:16.3f}" for n in names))
    print("speedup vs dense: " + ", ".join(f"{n} {totals['dense'] / totals[n]:.2f}x"
                                           for n in names[1:]))


if __name__ == "__main__":
    main()
