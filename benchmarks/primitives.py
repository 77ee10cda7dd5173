"""The conv2d primitives (every conf/primitive/*.yaml) x weight format, layer by layer and on
a whole pruned resnet18, against PyTorch.

    python benchmarks/primitives.py [--parts layers int8 model] [--primitives direct gemm ...]
                                    [--formats dense csr bsr auto] [--layers 0 3 ...]
                                    [--sparsity 0.9] [--model-sparsities 0.5 0.7 0.9 0.95]
                                    [--model resnet18] [--scope global|layer]
                                    [--weights out/artifacts/trained/<key>/model.pt] [--rounds 3]
                                    [--warmup 3] [--repeat 10] [--min-repeat-ms 50]

Parts:
- layers: each distinct conv2d of resnet18 at 32x32 (dlas/primitives/workloads.py; --layers
  picks by the index printed), float32, batch 1: dense weights for `dense`; for csr/bsr a
  random weight magnitude-pruned to --sparsity (0.9), the primitive's own sparsity_threshold
  deciding whether the layer goes sparse (the `how` column: sparse, dense or the fallback's
  reason). PyTorch: torch.nn.functional.conv2d on the same (pruned) weight, dense.
- int8: the same layers with int8 data and weights, int32 output (the stack's int8 graphs);
  the PyTorch row is its float32 conv of the same shapes (eager PyTorch has no int8 conv2d
  with int32 output on CPU), so it is a reference point, not a like-for-like rival.
- model: resnet18 or --model (digits size: 32x32, 10 classes; random weights, BN statistics
  randomised as in tests/codegen/test_models_compile.py, or --weights: a trained state_dict such as
  the one `python train.py` stores — the study's case, where global pruning's per-layer
  sparsities follow trained magnitudes) magnitude-pruned (conv and linear weights,
  dlas.compression.UnstructuredPruning; --scope global, or layer: every layer to the same
  sparsity, closer to the sparse-MobileNet papers, which prune the 1x1 convolutions evenly;
  global 0.9 zeroes mobilenetv2's whole classifier, trained or not) to each of
  --model-sparsities, each
  primitive x format through the Untuned build, next to PyTorch eager on the pruned net
  (format `auto`: each layer dense or csr by timing both on this CPU at compile time,
  dlas/codegen/auto_format.py, for the primitives that have csr);
  then (unless --no-profile) the per-layer profile of each build side by side: every conv
  layer's format and kernel time, timed alone on the target (dlas/hardware/profile.py).

DLAS latency: DLAS's own measurement (dlas/hardware/measure.py) through the local loopback
RPC server (dlas.hardware.LocalCPU; TVM threads = CPUs this process may use): each build is
exported to a shared library, loaded by the server, run --warmup times, then timed by
time_evaluator, --repeat repeats of at least --min-repeat-ms each. PyTorch runs in this
process (the TVM runtime lives in the server's process, so the two thread pools never share
one) with torch.set_num_threads(CPUs), timed the same way, and also with 1 thread (see
--torch-threads): on this shared 2-core VM under load, PyTorch's OpenMP spin barriers make
its 2-thread small convs 100x slower than 1 thread (3->64 32x32: 15-28 ms against 0.1 ms at
load 8); `x torch` is DLAS's median over the fastest PyTorch row's (below 1: DLAS faster). Printed: median, p90 and spread
(coefficient of variation) over the repeats, GMAC/s, ratio to PyTorch's median, and the
output's max |difference| to a float64 PyTorch reference over max |reference| (int8: exact
integers expected, so 0). A row whose build fails prints its error and the table goes on.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests" / "primitives"),
                str(ROOT / "tests" / "codegen")]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conv_reference import (magnitude_prune, make_primitive, primitive_configs,  # noqa: E402
                            primitive_formats, random_case, torch_reference)
from test_models_compile import rescale  # noqa: E402
from untuned_baseline import count_macs  # noqa: E402

from dlas.codegen import Untuned, import_model  # noqa: E402
from dlas.codegen.profile import kernel_library  # noqa: E402
from dlas.compression.unstructured import UnstructuredPruning  # noqa: E402
from dlas.errors import DLASError  # noqa: E402
from dlas.hardware import LocalCPU  # noqa: E402
from dlas.hardware.measure import Measurement, latency_stats  # noqa: E402
from dlas.hardware.profile import PROFILE, profile_calls  # noqa: E402
from dlas.models import MODELS, make_model  # noqa: E402
from dlas.models.weights import load_checkpoint  # noqa: E402
from dlas.primitives.base import AUTO, FORMATS  # noqa: E402
from dlas.primitives.workloads import conv2d_module, model_workloads  # noqa: E402
from dlas.report import profiles  # noqa: E402

CPUS = len(os.sched_getaffinity(0))


def torch_rows(fn, args, what: str, macs: int, idx: str = "") -> float:
    """Time fn() with each of --torch-threads, print a row each; the fastest median."""
    best = float("inf")
    for threads in args.torch_threads:
        torch.set_num_threads(threads)
        lat = torch_latency(fn, args.warmup, args.repeat, args.min_repeat_ms)
        print(row(idx, what, f"torch f32 {threads}thr", lat, macs, None), flush=True)
        best, idx, what = min(best, lat["latency_ms_median"]), "", ""
    torch.set_num_threads(CPUS)
    return best


def torch_latency(fn, warmup: int, repeat: int, min_repeat_ms: float) -> dict:
    """latency_stats of torch_times."""
    return latency_stats(torch_times(fn, warmup, repeat, min_repeat_ms), 0.1)


def torch_times(fn, warmup: int, repeat: int, min_repeat_ms: float) -> np.ndarray:
    """Each repeat's ms per fn() call, like time_evaluator: runs per repeat raised until one
    repeat lasts min_repeat_ms."""
    with torch.no_grad():
        for _ in range(max(warmup, 1)):
            fn()
        number, elapsed = 1, 0.0
        while True:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            elapsed = (time.perf_counter() - start) * 1e3
            if elapsed >= min_repeat_ms or number >= 1 << 20:
                break
            number *= 2 if elapsed == 0 else max(2, min(int(min_repeat_ms / elapsed) + 1, 64))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - start) * 1e3 / number)
    return np.asarray(times)


class Bench:
    """One RPC session; builds, exports and measures Relax modules through it."""

    def __init__(self, session, measure: Measurement, workdir: Path, target=None):
        self.session, self.measure, self.workdir, self.count = session, measure, workdir, 0
        self.target = target if target is not None else LocalCPU().target

    def run(self, mod, primitive, inputs: np.ndarray, codegen=None, profile: bool = False,
            **build_kwargs) -> tuple[dict, np.ndarray, dict, float]:
        """(latency stats, outputs, build stats, build seconds); codegen: Untuned() unless
        given (benchmarks/codegen.py passes AutoSchedule with its hardware=). profile: the
        build stats also hold the per-layer profile (`layer_profile`, dlas/hardware/profile.py)."""
        built = self.build(mod, primitive, codegen, **build_kwargs)
        result = self.measure.run(self.session, built.lib, inputs)
        if profile:
            self.profile(built)
        built.lib.unlink(missing_ok=True)
        return result.latency, result.logits, built.stats, built.compile_s

    def build(self, mod, primitive, codegen=None, **build_kwargs) -> Built:
        """The build exported to a library in the work folder (`lib`), timed (`compile_s`)."""
        codegen = codegen if codegen is not None else Untuned()
        start = time.perf_counter()
        built = codegen.build(mod, primitive, self.target, **build_kwargs)
        compile_s = time.perf_counter() - start
        self.count += 1
        lib = self.workdir / f"b{self.count}.so"
        built.executable.export_library(str(lib))
        return Built(built.executable, built.stats, built.profile, lib, compile_s)

    def profile(self, built: Built) -> None:
        """The per-layer profile into the build's stats (`layer_profile`)."""
        # (a path of its own: the server keeps a loaded library by path)
        kernels = built.lib.with_name(f"{built.lib.stem}_kernels.so")
        kernel_library(built.executable).export_library(str(kernels))
        built.stats[PROFILE] = profile_calls(self.measure, self.session, kernels,
                                             built.profile.calls, built.profile.constants)
        kernels.unlink(missing_ok=True)


class Built(NamedTuple):
    executable: object
    stats: dict
    profile: object  # dlas.codegen.profile.ProfilePlan
    lib: Path
    compile_s: float


def how(stats: dict) -> str:
    """How the conv layers were computed: sparse/dense counts and fallback reasons."""
    n, sparse, fallback = stats["conv_layers"], stats["sparse_layers"], stats["fallback_layers"]
    text = "sparse" if sparse == n else "dense" if not sparse else f"{sparse}/{n} sparse"
    if fallback:
        text += f", {fallback} fallback: " + "; ".join(f"{r} x{c}" for r, c in
                                                        stats["fallbacks"].items())
    return text


HEADER = (f"{'':4s} {'what':30s} {'primitive':18s} {'median ms':>9s} {'p90 ms':>8s} {'cv':>5s} "
          f"{'GMAC/s':>7s} {'x torch':>7s} {'compile s':>9s} {'max|diff|/max':>13s}  how")


def row(idx: str, what: str, name: str, lat: dict, macs: int, torch_ms: float | None,
        compile_s: float | None = None, rel: float | None = None, note: str = "") -> str:
    med = lat["latency_ms_median"]
    ratio = f"{med / torch_ms:7.2f}" if torch_ms else f"{'':7s}"
    comp = f"{compile_s:9.2f}" if compile_s is not None else f"{'':9s}"
    diff = f"{rel:13.1e}" if rel is not None else f"{'':13s}"
    return (f"{idx:4s} {what:30s} {name:18s} {med:9.3f} {lat['latency_ms_p90']:8.3f} "
            f"{lat['latency_cv']:5.2f} {macs / med / 1e6:7.2f} {ratio} {comp} {diff}  {note}")


def combos(args) -> list[tuple[str, object, str]]:
    configs = primitive_configs()
    missing = set(args.primitives or ()) - set(configs)
    if missing:
        raise SystemExit(f"--primitives: no conf/primitive/{sorted(missing)[0]}.yaml "
                         f"(have: {', '.join(configs)})")
    return [(name, cfg, fmt) for name, cfg in configs.items()
            if not args.primitives or name in args.primitives
            for fmt in _formats(cfg) if fmt in args.formats]


def _formats(cfg) -> tuple[str, ...]:
    have = primitive_formats(cfg)
    return have + ((AUTO,) if "csr" in have else ())


def bench_layers(bench: Bench, args, dtype: str) -> None:
    layers = list(dict.fromkeys(model_workloads("resnet18", 32)))
    picked = args.layers if args.layers is not None else range(len(layers))
    print(f"\n== resnet18@32 conv layers, {dtype}"
          + (" (int8 data/weights, int32 out; torch row: its float32 conv)" if dtype == "int8"
             else f" (csr/bsr weights magnitude-pruned to {args.sparsity})"))
    print(HEADER)
    print("-" * len(HEADER))
    for i in picked:
        wl = layers[i]
        x, dense_w = random_case(wl, dtype, 0.0, seed=i)
        sparse_w = magnitude_prune(dense_w, args.sparsity)
        tx, tw = (torch.from_numpy(a.astype(np.float32)) for a in (x, dense_w))
        torch_ms = torch_rows(lambda: F.conv2d(tx, tw, stride=wl.stride, padding=wl.padding,
                                               dilation=wl.dilation, groups=wl.groups),
                              args, wl.label(), wl.macs, str(i))
        for name, cfg, fmt in combos(args):
            w = dense_w if fmt == "dense" else sparse_w
            ref = torch_reference(wl, x, w)
            try:
                lat, out, stats, compile_s = bench.run(conv2d_module(wl, w, dtype),
                                                       make_primitive(cfg, fmt), x)
            except Exception as err:  # noqa: BLE001 -- one bad row must not end the table
                print(f"{i:<4d} {wl.label():30s} {name + '/' + fmt:18s} FAILED "
                      f"{type(err).__name__}: {str(err).splitlines()[0][:150]}", flush=True)
                continue
            rel = float(np.abs(out.reshape(ref.shape) - ref).max() / np.abs(ref).max())
            print(row("", "", f"{name}/{fmt}", lat, wl.macs, torch_ms, compile_s, rel,
                      how(stats)), flush=True)


def base_model(args) -> torch.nn.Module:
    """--model with --weights, or random weights (a bad --weights: one line, before any work)."""
    torch.manual_seed(0)
    base = make_model(args.model, 10, 32)
    try:
        return load_checkpoint(base, args.weights) if args.weights else rescale(base)
    except DLASError as err:
        raise SystemExit(f"error: --weights: {err}") from None


def bench_model(bench: Bench, args, base: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32)
    macs = count_macs(base, x)
    weights = f"weights {args.weights}" if args.weights else "random weights"
    print(f"\n== {args.model}@32 (10 classes, {weights}), {args.scope} unstructured magnitude "
          f"pruning of conv+linear weights; {macs / 1e6:.0f} M multiply-adds (conv + linear, dense)")
    print(HEADER)
    print("-" * len(HEADER))
    for sparsity in args.model_sparsities:
        net = copy.deepcopy(base)
        pruning = UnstructuredPruning(sparsity, scope=args.scope)
        net = pruning.finalize(pruning.apply(net)).eval()
        with torch.no_grad():
            ref = net(x).double().numpy()
        torch_ms = torch_rows(lambda: net(x), args, f"sparsity {sparsity}", macs)
        mod = import_model(net, x)
        builds = {}
        for name, cfg, fmt in combos(args):
            try:
                builds[f"{name}/{fmt}"] = bench.build(mod, make_primitive(cfg, fmt))
            except Exception as err:  # noqa: BLE001
                print(f"{'':4s} {'':30s} {name + '/' + fmt:18s} FAILED "
                      f"{type(err).__name__}: {str(err).splitlines()[0][:150]}", flush=True)
        # every build timed once per round, in turn: drift of the machine's load hits all
        times = {what: [] for what in builds}
        outs = {}
        for _ in range(args.rounds):
            for what, built in list(builds.items()):
                try:
                    result = bench.measure.run(bench.session, built.lib, x.numpy())
                except Exception as err:  # noqa: BLE001
                    print(f"{'':4s} {'':30s} {what:18s} FAILED {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:150]}", flush=True)
                    del builds[what]
                    continue
                times[what].append(result.times_ms)
                outs[what] = result.logits
        layer_profiles, model_ms = {}, {}
        for what, built in builds.items():
            lat = latency_stats(np.concatenate(times[what]), bench.measure.noisy_cv)
            rel = float(np.abs(outs[what].reshape(ref.shape) - ref).max() / np.abs(ref).max())
            rounds = "/".join(f"{np.median(t):.2f}" for t in times[what])
            print(row("", "", what, lat, macs, torch_ms, built.compile_s, rel,
                      f"{how(built.stats)}; round medians {rounds}"), flush=True)
            model_ms[what] = lat["latency_ms_median"]
            if args.profile:
                bench.profile(built)
                layer_profiles[what] = built.stats[PROFILE]
            built.lib.unlink(missing_ok=True)
        print(verdict(model_ms), flush=True)
        if layer_profiles:
            print(f"\nper-layer profile at sparsity {sparsity} (ms per kernel, each timed alone "
                  f"on the target: 1 warm-up call, {bench.measure.profile_repeat} repeats of >= "
                  f"{args.min_repeat_ms:g} ms):")
            table = profiles.side_by_side(profiles.long_table(layer_profiles), model_ms)
            print(profiles.text(table) + "\n", flush=True)


def verdict(model_ms: dict[str, float]) -> str:
    """Best sparse build over best dense, and each primitive's auto over its dense."""
    dense = {w: t for w, t in model_ms.items() if w.endswith("/dense")}
    sparse = {w: t for w, t in model_ms.items() if not w.endswith("/dense")}
    lines = []
    if dense and sparse:
        d, sp = min(dense, key=dense.get), min(sparse, key=sparse.get)
        lines.append(f"best sparse {sp} {sparse[sp]:.3f} ms / best dense {d} {dense[d]:.3f} ms "
                     f"= {sparse[sp] / dense[d]:.2f}x")
    for w, t in model_ms.items():
        if w.endswith(f"/{AUTO}") and w.replace(AUTO, "dense") in dense:
            lines.append(f"{w} / its dense = {t / dense[w.replace(AUTO, 'dense')]:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["layers", "int8", "model"],
                        choices=["layers", "int8", "model"])
    parser.add_argument("--primitives", nargs="+", default=None,
                        help="config names under conf/primitive (default: all)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS),
                        choices=[*FORMATS, AUTO])
    parser.add_argument("--model", default="resnet18", choices=list(MODELS),
                        help="part model's model (default resnet18)")
    parser.add_argument("--scope", default="global", choices=["global", "layer"],
                        help="part model: prune over the whole model or each layer alike")
    parser.add_argument("--weights", default=None,
                        help="a state_dict of --model for 10 classes at 32x32 (part model; "
                             "default: random weights)")
    parser.add_argument("--layers", nargs="+", type=int, default=None,
                        help="indices of resnet18@32's distinct conv layers (default: all 11)")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--model-sparsities", nargs="+", type=float,
                        default=[0.5, 0.7, 0.9, 0.95])
    parser.add_argument("--torch-threads", nargs="+", type=int, default=sorted({CPUS, 1}),
                        help=f"PyTorch thread counts to time (default: {CPUS} and 1)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="print the per-layer profile of each pruned model (part model)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="part model: each build timed this many times, builds in turn "
                             "(--repeat repeats each time)")
    parser.add_argument("--min-repeat-ms", type=float, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")  # torch.export / pruning chatter
    torch.set_num_threads(CPUS)
    base = base_model(args) if "model" in args.parts else None
    hardware = LocalCPU(session_timeout_s=0)  # one session for the whole run: no time limit
    measure = Measurement(warmup=args.warmup, repeat=args.repeat,
                          min_repeat_ms=args.min_repeat_ms)
    print(f"torch {torch.__version__}, threads: torch {args.torch_threads}, TVM (RPC server) "
          f"{hardware.num_threads}; target {hardware.target}; primitives x formats: "
          + ", ".join(f"{n}/{f}" for n, _, f in combos(args)))
    print(f"load average {os.getloadavg()[0]:.1f} on {CPUS} CPUs; "
          f"latency: {args.warmup} warm-up runs, {args.repeat} repeats of >= "
          f"{args.min_repeat_ms:g} ms; DLAS through the local RPC server")
    with tempfile.TemporaryDirectory(prefix="dlas-prim-bench-") as tmp, \
            hardware.session() as session:
        bench = Bench(session, measure, Path(tmp))
        for part in args.parts:
            if part == "model":
                bench_model(bench, args, base)
            else:
                bench_layers(bench, args, "int8" if part == "int8" else "float32")


if __name__ == "__main__":
    main()
