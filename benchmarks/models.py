"""The model layer's networks through DLAS's untuned build, against PyTorch eager.

    python benchmarks/models.py [--models resnet18 vgg16 ...] [--sizes 32 224]
                                [--repeat 10] [--threads 2]

Per model and input size (32x32 -> 10 classes with the CIFAR adaptations, 224x224 -> 1000
classes as torchvision defines them; random weights rescaled as in
tests/codegen/test_models_compile.py, eval, batch 1): parameters, multiply-adds, PyTorch
eager latency (in a child process: its OpenMP pool and TVM's would fight over the cores),
DLAS untuned latency (through the local TVM RPC server, as deploy.py measures: warm-up,
then repeats of >= 50 ms; target llvm with mcpu host), compile time (export + import + build), max |logit difference| / max |logit|.
Latency: median and p10-p90 over the repeats. This also covers the combinations too slow
for the test suite (vgg16 and densenet161 at 224).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests" / "codegen")]

import torch  # noqa: E402
import tvm  # noqa: E402
from test_models_compile import SIZES, rescale  # noqa: E402
from primitives import Bench  # noqa: E402
from untuned_baseline import count_macs  # noqa: E402

from dlas.codegen import import_model  # noqa: E402
from dlas.hardware import LocalCPU  # noqa: E402
from dlas.hardware.base import make_target  # noqa: E402
from dlas.hardware.measure import Measurement  # noqa: E402
from dlas.models import MODELS, make_model  # noqa: E402
from dlas.primitives import Direct  # noqa: E402


def make(name: str, size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = rescale(make_model(name, SIZES[size], size))
    return net, torch.randn(1, 3, size, size)


def _torch_worker(conn, name: str, size: int, threads: int, repeat: int) -> None:
    torch.set_num_threads(threads)
    net, x = make(name, size)
    with torch.no_grad():
        for _ in range(2):
            net(x)  # warm-up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            net(x)
            times.append((time.perf_counter() - start) * 1e3)
    conn.send(times)


def torch_times(name: str, size: int, threads: int, repeat: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_torch_worker, args=(child, name, size, threads, repeat))
    proc.start()
    times = conn.recv()
    proc.join(timeout=30)
    return times


def dlas_row(bench: Bench, name: str, size: int) -> dict:
    net, x = make(name, size)
    with torch.no_grad():
        ref = net(x).numpy()
    start = time.perf_counter()
    mod = import_model(net, x)
    import_s = time.perf_counter() - start
    latency, out, _, build_s = bench.run(mod, Direct(), x.numpy())
    return {"params": sum(p.numel() for p in net.parameters()), "macs": count_macs(net, x),
            "compile_s": import_s + build_s, "dlas": latency,
            "rel_diff": float(np.abs(out - ref).max() / np.abs(ref).max())}


def fmt(times: list[float]) -> str:
    t = sorted(times)
    p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10]
    return f"{statistics.median(t):9.2f} {p10:8.2f}-{p90:<8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    # On a loaded machine PyTorch's OpenMP spin barriers degrade badly with >1 thread (resnet50
    # at 32x32: 131 ms with 1 thread, 4396 ms with 2, under load 4 on 2 cores): measure eager
    # with --torch-threads 1 there.
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch eager threads (default: --threads)")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, tvm {tvm.__version__}, threads {args.threads} "
          f"(torch eager {args.torch_threads or args.threads}), "
          f"target {make_target({'kind': 'llvm', 'mcpu': 'host'})}")
    header = (f"{'model':16s} {'size':>4s} {'params M':>8s} {'GMAC':>6s} "
              f"{'torch ms':>9s} {'p10-p90':>17s} {'dlas ms':>9s} {'min-p90':>17s} "
              f"{'compile s':>9s} {'max|diff|/max|logit|':>20s}")
    print(header)
    print("-" * len(header))
    hardware = LocalCPU(num_threads=args.threads)  # its own loopback tracker + RPC server
    measure = Measurement(repeat=args.repeat)
    with tempfile.TemporaryDirectory(prefix="dlas-models-bench-") as tmp, \
            hardware.session() as session:
        bench = Bench(session, measure, Path(tmp))
        for size in args.sizes:
            for name in args.models:
                # eager first, in a child process: TVM's pool and torch's OpenMP would fight
                eager = torch_times(name, size, args.torch_threads or args.threads, args.repeat)
                row = dlas_row(bench, name, size)
                lat = row["dlas"]
                print(f"{name:16s} {size:4d} {row['params'] / 1e6:8.2f} {row['macs'] / 1e9:6.3f} "
                      f"{fmt(eager)} {lat['latency_ms_median']:9.2f} "
                      f"{lat['latency_ms_min']:8.2f}-{lat['latency_ms_p90']:<8.2f} "
                      f"{row['compile_s']:9.1f} {row['rel_diff']:20.2e}", flush=True)


if __name__ == "__main__":
    main()
