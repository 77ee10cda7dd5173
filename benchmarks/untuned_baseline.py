"""DLAS's untuned build (direct primitive + default schedules) against TVM's own untuned build.

    python benchmarks/untuned_baseline.py [--models resnet18 mobilenet_v2] [--rounds 5]
                                          [--targets llvm znver5] [--threads 2]

For each model (random init, eval, 1x3x32x32): TVM's default `tvm.compile` pipeline (it
schedules nothing), DLAS `Untuned` + `Direct` (both per target), and PyTorch eager (in a
child process: its OpenMP pool and TVM's would fight over the cores), measured in
interleaved rounds (each: warm-up, then `time_evaluator` repeats) so that load from other
processes hits every method alike. Prints median and spread (p10-p90 over all repeats),
achieved multiply-adds per second, compile time (export + import + build), max |logit
difference| to PyTorch, and scheduled/unscheduled PrimFuncs.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402
import tvm  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program  # noqa: E402

from dlas.codegen import Untuned, import_model  # noqa: E402
from dlas.primitives import Direct  # noqa: E402

TARGETS = {
    "llvm": lambda: tvm.target.Target("llvm"),
    "znver5": lambda: tvm.target.Target({"kind": "llvm", "mcpu": "znver5"}),
    "host": lambda: tvm.target.Target.from_device(tvm.cpu()),
}


def build_model(name: str) -> torch.nn.Module:
    """resnet18: CIFAR stem (3x3 stride-1 conv1, no max-pool); resnet18_tv: torchvision's
    unchanged (ImageNet stem, 1/16 of the work at 32x32: tvm.md's 16.7 ms figure)."""
    if name == "resnet18":
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    else:
        net = getattr(torchvision.models, name.removesuffix("_tv"))(num_classes=10)
    return net.eval()


def count_macs(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the conv2d and linear layers for one input."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


def vm_timer(executable, x: np.ndarray, repeat: int):
    vm = relax.VirtualMachine(executable, tvm.cpu())
    inp = tvm.runtime.tensor(x, tvm.cpu())
    out = vm["main"](inp).numpy()
    evaluator = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat,
                                  min_repeat_ms=50)

    def run() -> list[float]:
        vm["main"](inp)  # warm-up
        return [t * 1e3 for t in evaluator(inp).results]

    return out, run


def _torch_worker(conn, name: str, threads: int, repeat: int) -> None:
    """PyTorch eager in its own process: its OpenMP pool and TVM's thread pool would
    otherwise fight over the same two cores (we saw 100x slowdowns in one process)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_model(name)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        while conn.recv() == "run":
            net(x)  # warm-up
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(10):
                    net(x)
                times.append((time.perf_counter() - start) / 10 * 1e3)
            conn.send(times)


class TorchTimer:
    def __init__(self, name: str, threads: int, repeat: int):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_torch_worker, args=(child, name, threads, repeat),
                                daemon=True)
        self.proc.start()

    def __call__(self) -> list[float]:
        self.conn.send("run")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(timeout=30)


def bench_model(name: str, targets: list[str], rounds: int, repeat: int,
                threads: int) -> list[dict]:
    torch.manual_seed(0)
    net = build_model(name)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = net(x).numpy()
    macs = count_macs(net, x)
    start = time.perf_counter()
    mod = import_model(net, x)
    import_s = time.perf_counter() - start

    rows, timers = [], {}
    for tname in targets:
        target = TARGETS[tname]()
        for method in ("tvm default", "dlas direct+untuned"):
            start = time.perf_counter()
            if method == "tvm default":  # export + import + build, as TVM users do it
                ex = tvm.compile(_tvm_import(net, x), target=target)
                stats = ""
            else:
                codegen = Untuned()
                ex, built = codegen.build(mod, Direct(), target)
                stats = f"{built['scheduled_funcs']}/{built['unscheduled_funcs']}"
            compile_s = time.perf_counter() - start
            out, timers[(method, tname)] = vm_timer(ex, x.numpy(), repeat)
            rows.append({"model": name, "method": method, "target": tname,
                         "compile_s": compile_s + (import_s if "dlas" in method else 0.0),
                         "diff": float(np.abs(out - ref).max()), "sched": stats, "times": []})
    timers[("pytorch eager", "-")] = torch_timer = TorchTimer(name, threads, repeat)
    rows.append({"model": name, "method": "pytorch eager", "target": "-", "compile_s": 0.0,
                 "diff": 0.0, "sched": "", "times": []})
    for _ in range(rounds):  # interleaved, so background load is shared fairly
        for row in rows:
            row["times"] += timers[(row["method"], row["target"])]()
    torch_timer.close()
    for row in rows:
        row["ref"], row["macs"] = float(np.abs(ref).max()), macs
    return rows


def _tvm_import(net, x) -> tvm.IRModule:
    """The module exactly as TVM users get it (no DLAS clean-up) for TVM's default build."""
    program = torch.export.export(net, (x,))
    return from_exported_program(program, keep_params_as_input=False,
                                 unwrap_unit_return_tuple=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet18_tv", "mobilenet_v2"])
    parser.add_argument("--targets", nargs="+", default=["llvm", "znver5"], choices=list(TARGETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, tvm {tvm.__version__}, threads {args.threads}, "
          f"host target {TARGETS['host']()}")
    header = (f"{'model':13s} {'method':20s} {'target':7s} {'median ms':>9s} {'p10-p90 ms':>13s} "
              f"{'GMAC/s':>6s} {'compile s':>9s} {'max|diff|':>9s} {'sched/unsched':>13s}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        rows = bench_model(name, args.targets, args.rounds, args.repeat, args.threads)
        for row in rows:
            t = sorted(row["times"])
            p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10]
            med = statistics.median(t)
            print(f"{row['model']:13s} {row['method']:20s} {row['target']:7s} "
                  f"{med:9.3f} {p10:6.2f}-{p90:6.2f} {row['macs'] / med / 1e6:6.1f} "
                  f"{row['compile_s']:9.2f} {row['diff']:9.1e} {row['sched']:>13s}", flush=True)
        print(f"{'':13s} ({rows[0]['macs'] / 1e6:.0f} M multiply-adds; max |logit| "
              f"{rows[0]['ref']:.3g}; {len(rows[0]['times'])} samples each)")


if __name__ == "__main__":
    main()
