"""Untuned against auto-scheduled (MetaSchedule) code per primitive, next to PyTorch eager,
torch.compile and ONNX Runtime, on this CPU in one run.

    python benchmarks/codegen.py [--models resnet18,mobilenetv2] [--primitives direct,gemm,spatial_pack]
                                 [--trials 64,200,1000 | 0] [--trials-per-task N] [--database-dir DIR]
                                 [--int8] [--mcpu host|haswell|...] [--threads N] [--baseline-threads 2,1]
                                 [--warmup 3] [--repeat 15] [--min-repeat-ms 50]
                                 [--rounds 5] [--settle 0] [--csv FILE]

Models as DLAS builds them for the digits dataset (32x32 input, 10 classes; random weights with
BN statistics randomised as in tests/codegen/test_models_compile.py, via benchmarks/models.py's
`make`), eval, batch 1. Rows per model and precision:
- ONNX Runtime (torch.onnx.export(dynamo=True), ORT_ENABLE_ALL), torch eager and
  torch.compile (default mode; `build s` is its first call), each with every
  --baseline-threads count (default: the CPUs, and 1: on a loaded 2-core VM a spinning
  2-thread pool can lose to 1 thread);
- per primitive (conf/primitive/<name>.yaml, dense): DLAS `untuned`, then `autoschedule` at
  each --trials budget (total trials over the model's tasks; per task at most
  --trials-per-task, default the budget itself). Each budget tunes into its own database,
  <database-dir>/trials<N>/<target>/, so a row shows what that budget reaches, and a re-run
  with the same folder tunes nothing (`tuning s` then is the fixed cost of the tuning
  machinery only; `reused` in the note).
- with --int8: the same for int8: DLAS's int8 compression (dlas.compression.int8, PT2E
  post-training, symmetric per-channel weights / per-tensor activations, calibrated on 8
  random N(0,1) batches) through each primitive, against ORT int8 static QDQ
  (quant_pre_process, then quantize_static: per_channel, activations QUInt8, weights QInt8,
  calibrated on the same random inputs). torch.compile has no int8 row. Per primitive, an
  extra first row `untuned plain` (int8_dot=false): the generic int8 compute DLAS used
  before its int8 convs ran on the CPU's integer dot products, for the speedup in the same
  run; the note says which path (`int8_path`) the convs took.

Latency: every row of a model and precision is built first (tuning included), then all are timed
in --rounds interleaved rounds (odd rounds in reverse order): a machine whose speed drifts (a
shared VM's two-thread pools run ~1.9x slower for seconds at a time) slows every row alike;
--settle S idles S seconds before the rounds of a table with tuned rows (after minutes of
tuning, a shared VM can run everything ~2x slower for a while). DLAS through the local loopback
RPC server (dlas.hardware.LocalCPU, as deploy.py measures), the others in this process, all
timed the same way (per round --warmup calls, then --repeat repeats of >= --min-repeat-ms each):
median ± standard deviation over all repeats, CV, and `best rnd`, the fastest round's median
(drift only adds time). The ratios are paired: per round, the two rows' round medians (timed
seconds apart, in the same state of the machine), then the median of those ratios over the
rounds. `x untuned`: the primitive's untuned time over the row's (above 1: faster); `x ORT`: the
ORT row with the fastest best rnd (same precision) over the row's (>= 1: at or below ORT).
`max|diff|`: max |output - PyTorch output| / max |PyTorch output| (int8: against the PT2E
graph in PyTorch). A row that fails prints its error and the table goes on. The goals of
DLAS issue 14 are checked at the end.
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

from codegen_table import HEADER, Table, goals, lat_fields, paired_ratio

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["resnet18", "mobilenetv2"]
PRIMITIVES = ["direct", "gemm", "spatial_pack", "winograd"]
SIZE = 32  # conf/dataset/digits.yaml image_size (10 classes)
CALIBRATION = 8  # random batches for both int8 calibrations


def names_arg(valid: list[str]):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in names if t not in valid]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)}: not one of {', '.join(valid)}")
        return names
    return parse


def trials_arg(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = [-1]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text}: comma-separated integers >= 1")
    return values


def budgets_arg(text: str) -> list[int]:
    """--trials: budgets >= 1, or 0 for untuned rows only (no tuning)."""
    return [] if text.strip() == "0" else trials_arg(text)


def parse_args() -> argparse.Namespace:
    """Argument parsing only: `--help` must not pay for importing torch and TVM."""
    primitives = sorted(p.stem for p in (ROOT / "conf" / "primitive").glob("*.yaml"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=names_arg(MODELS), default=MODELS,
                        help=f"comma-separated (default: {','.join(MODELS)})")
    parser.add_argument("--primitives", type=names_arg(primitives), default=PRIMITIVES,
                        help=f"conf/primitive configs, comma-separated (default: {','.join(PRIMITIVES)})")
    parser.add_argument("--trials", type=budgets_arg, default=[64, 200, 1000],
                        help="autoschedule budgets, total trials per model (default: 64,200,1000; "
                             "0: untuned rows only)")
    parser.add_argument("--trials-per-task", type=int, default=None,
                        help="at most this many trials for one task (default: the budget)")
    parser.add_argument("--database-dir", default=str(ROOT / "outputs" / "benchmarks" / "tuning"),
                        help="tuning databases, kept across runs (default: outputs/benchmarks/tuning)")
    parser.add_argument("--int8", action="store_true",
                        help="also DLAS int8 compression vs ONNX Runtime int8 QDQ")
    parser.add_argument("--mcpu", default="host",
                        help="LLVM CPU DLAS compiles for, run on this CPU (default: host; e.g. "
                             "haswell: AVX2 only, the avx2 int8 path)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for DLAS (TVM's pool; default: the CPUs this process may use)")
    parser.add_argument("--baseline-threads", type=trials_arg,
                        default=sorted({len(os.sched_getaffinity(0)), 1}, reverse=True),
                        help="thread counts for the PyTorch and ONNX Runtime rows, comma-separated "
                             "(default: the CPUs this process may use, and 1)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--min-repeat-ms", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timing rounds over all of a model's rows, interleaved (default: 5)")
    parser.add_argument("--settle", type=float, default=0,
                        help="seconds idle after a table's rows are built (tuning included), "
                             "before its timing rounds (default: 0)")
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    return parser.parse_args()


def _one_line(err: BaseException) -> str:
    from dlas.errors import first_line

    return f"{type(err).__name__}: {first_line(str(err), 160)}"


# -- one model, one precision --------------------------------------------------------------------

def bench_precision(ctx, model: str, precision: str, net, x, table: Table) -> None:
    """Every row's code first (baselines; per primitive DLAS untuned and at every budget),
    then all of them timed in --rounds interleaved rounds (odd rounds in reverse order), so
    the machine's drift falls on every row alike; then the rows."""
    import numpy as np
    import torch
    from onnx_baseline import export_onnx, ort_session, quantize_onnx
    from conv_reference import make_primitive, primitive_configs
    from primitives import torch_times

    from dlas.codegen import AutoSchedule, import_model
    from dlas.hardware.measure import latency_stats

    args, bench, hardware, tmp = ctx.args, ctx.bench, ctx.hardware, ctx.tmp
    timing = (args.warmup, args.repeat, args.min_repeat_ms)
    base = {"model": model, "precision": precision}
    with torch.no_grad():
        ref = net(x).double().numpy()

    def rel(out) -> float:
        return float(np.abs(out.reshape(ref.shape) - ref).max() / np.abs(ref).max())

    entries = []  # (row, timer): timer() -> (each repeat's ms, the output or None)

    def baseline(method: str, make_fn, threads: int) -> None:
        try:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            fn = make_fn()
            with torch.no_grad():
                out = fn()  # first call: torch.compile compiles here
            out = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
            build_s = time.perf_counter() - start
        except Exception as err:  # noqa: BLE001 -- one failed row must not end the table
            table.add({**base, "method": method, "error": _one_line(err)})
            return
        finally:
            torch.set_num_threads(args.threads)

        def timer():
            torch.set_num_threads(threads)
            try:
                return torch_times(fn, *timing), None
            finally:
                torch.set_num_threads(args.threads)

        entries.append(({**base, "method": method, "build_s": build_s, "rel_diff": rel(out)},
                        timer))

    samples = [torch.randn(1, 3, SIZE, SIZE).numpy() for _ in range(CALIBRATION)]
    onnx_path = tmp / f"{model}-{precision}.onnx"

    def ort_fn(threads: int):
        fp32 = tmp / f"{model}-fp32.onnx"
        if not fp32.exists():
            export_onnx(ctx.nets[model], x, fp32)
        if precision == "int8" and not onnx_path.exists():
            quantize_onnx(fp32, onnx_path, samples)
        session = ort_session(fp32 if precision == "fp32" else onnx_path, threads)
        feed = {"x": x.numpy()}
        return lambda: session.run(None, feed)[0]

    # every baseline at each --baseline-threads count: on a shared VM a 2-thread pool that
    # spin-waits can lose badly to 1 thread under load; x ORT is against ORT's fastest row
    ort_method = "onnxruntime" + (" int8 QDQ" if precision == "int8" else "")
    for threads in args.baseline_threads:
        baseline(f"{ort_method} {threads}thr", lambda t=threads: ort_fn(t), threads)
    for threads in args.baseline_threads:
        if precision == "fp32":
            baseline(f"torch eager {threads}thr", lambda: (lambda: net(x)), threads)
            baseline(f"torch.compile {threads}thr",
                     lambda: (lambda c=torch.compile(net): c(x)), threads)
        else:
            baseline(f"torch eager (PT2E int8) {threads}thr", lambda: (lambda: net(x)), threads)

    mod = import_model(net, x)
    configs = primitive_configs()
    for prim in args.primitives:
        # int8: first the generic int8 compute (int8_dot=False), the path before DLAS used the
        # CPU's integer dot products, so both show side by side in one run
        plain = [("plain", None)] if precision == "int8" else []
        for variant, trials in [*plain, ("", None), *(("", t) for t in args.trials)]:
            row = {**base, "method": f"dlas {prim} " + ("untuned" if trials is None
                                                        else "autoschedule")
                   + (" plain" if variant else ""), "trials": trials, "primitive": prim}
            overrides = {"int8_dot": False} if variant else {}
            if trials is None:
                codegen, kwargs = None, {}
            else:
                codegen = AutoSchedule(trials=trials,
                                       trials_per_task=args.trials_per_task or trials,
                                       database_dir=str(Path(args.database_dir) / f"trials{trials}"))
                kwargs = {"hardware": hardware}
            try:
                built = bench.build(mod, make_primitive(configs[prim], "dense", **overrides),
                                    codegen, **kwargs)
            except Exception as err:  # noqa: BLE001
                table.add({**row, "error": _one_line(err)})
                continue
            stats, build_s = built.stats, built.compile_s
            note = (f"int8_path {stats['int8_path']} ({stats['int8_dot_layers']} of "
                    f"{stats['conv_layers']} convs); " if "int8_path" in stats else "")
            if trials is not None:
                build_s -= stats["tuning_s"]
                note += (f"{stats['tuned_tasks']} tuned/{stats['reused_tasks']} reused of "
                        f"{stats['tasks']} tasks x{stats['task_budget']}, "
                        f"{stats['tuning_trials']} trials ({stats['tuning_failed_trials']} failed), "
                        f"{stats['improved_tasks']} of {stats['checked_tasks']} checked tasks "
                        f"improved over the default side by side (geomean "
                        f"{stats['improved_speedup_geomean']:.2f}x, max "
                        f"{stats['improved_speedup_max']:.2f}x); ")
                if stats.get("schedule_note"):
                    note += stats["schedule_note"] + "; "

            def timer(lib=built.lib):
                result = bench.measure.run(bench.session, lib, x.numpy())
                return result.times_ms, result.logits

            entries.append(({**row, "build_s": build_s, "tuning_s": stats.get("tuning_s"),
                             "note": note}, timer))

    if args.settle > 0 and any(row.get("trials") for row, _ in entries):
        time.sleep(args.settle)
    times: list[list] = [[] for _ in entries]
    for r in range(args.rounds):
        for i in (range(len(entries)) if r % 2 == 0 else reversed(range(len(entries)))):
            row, timer = entries[i]
            if "error" in row:
                continue
            try:
                repeats, out = timer()
            except Exception as err:  # noqa: BLE001
                row["error"] = _one_line(err)
                continue
            times[i].append(repeats)
            if out is not None:
                row["rel_diff"] = rel(out)
    rows = []
    for (row, _), repeats in zip(entries, times):
        if "error" not in row:
            medians = [float(np.median(t)) for t in repeats]
            row.update(lat_fields(latency_stats(np.concatenate(repeats), 0.1)),
                       best_ms=min(medians), round_medians=medians)
            row["note"] = (row.get("note", "") + "round medians "
                           + "/".join(f"{m:.3f}" for m in medians))
        rows.append(row)
    ok = [r for r in rows if "error" not in r]
    ort = min((r for r in ok if r["method"].startswith("onnxruntime")),
              key=lambda r: r["best_ms"], default=None)
    untuned = {r["primitive"]: r for r in ok
               if r["method"].endswith(" untuned") and r["method"].startswith("dlas")}
    for row in rows:
        if "error" not in row:
            if row.get("trials") is not None and row["primitive"] in untuned:
                row["x_untuned"] = paired_ratio(untuned[row["primitive"]], row)
            if ort and not row["method"].startswith("onnxruntime"):
                row["x_ort"] = paired_ratio(ort, row)
        table.add(row)


def int8_net(net, x):
    """DLAS's int8 compression step (post-training), calibrated on random inputs."""
    import torch

    from dlas.compression import StepContext
    from dlas.compression.int8 import Int8Quantization

    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, SIZE, SIZE, generator=gen), torch.zeros(8, dtype=torch.long))
               for _ in range(CALIBRATION)]
    context = StepContext(example=x, train_batches=lambda: iter(batches))
    step = Int8Quantization(calibration_batches=CALIBRATION)
    return step.finalize(step.apply(copy.deepcopy(net), context))


class Context:
    pass


def main() -> None:
    args = parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests" / "primitives"),
                    str(ROOT / "tests" / "codegen")]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore")  # torch.export / onnx / quantization chatter
    import onnxruntime
    import torch
    import tvm
    from models import make
    from primitives import Bench

    from dlas.hardware import LocalCPU
    from dlas.hardware.measure import Measurement

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    logging.getLogger("dlas.codegen.autoschedule").setLevel(logging.INFO)  # tuning progress
    torch.set_num_threads(args.threads)
    hardware = LocalCPU(num_threads=args.threads,  # its own loopback tracker + RPC server
                        target={"kind": "llvm", "mcpu": args.mcpu},
                        session_timeout_s=0)  # one session for hours of tuning: no limit
    start = time.perf_counter()
    print(f"torch {torch.__version__}, tvm {tvm.__version__}, onnxruntime "
          f"{onnxruntime.__version__}; DLAS {args.threads} threads, PyTorch/ORT "
          f"{','.join(map(str, args.baseline_threads))}; target "
          f"{hardware.target}; load average {os.getloadavg()[0]:.1f} on "
          f"{len(os.sched_getaffinity(0))} CPUs; database {args.database_dir}")
    print(f"latency: {args.rounds} interleaved rounds of {args.warmup} warm-up calls and "
          f"{args.repeat} repeats of >= {args.min_repeat_ms:g} ms; median ± std of all repeats; "
          "best rnd: the fastest round's median; x untuned / x ORT: their time over the row's, "
          "paired round by round, median over the rounds (above 1: the row is faster)")
    table = Table(args.csv)
    ctx = Context()
    ctx.args, ctx.hardware, ctx.nets = args, hardware, {}
    measure = Measurement(warmup=args.warmup, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms)
    with tempfile.TemporaryDirectory(prefix="dlas-codegen-bench-") as tmp, \
            hardware.session() as session:
        ctx.tmp, ctx.bench = Path(tmp), Bench(session, measure, Path(tmp),
                                                  hardware.target)
        print(HEADER)
        print("-" * len(HEADER), flush=True)
        for model in args.models:
            net, x = make(model, SIZE)
            ctx.nets[model] = net
            bench_precision(ctx, model, "fp32", net, x, table)
            if args.int8:
                try:
                    q = int8_net(net, x)
                except Exception as err:  # noqa: BLE001
                    table.add({"model": model, "precision": "int8", "method": "dlas int8",
                               "error": _one_line(err)})
                    continue
                bench_precision(ctx, model, "int8", q, x, table)
    goals(table.rows)
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
