"""The GPU check: is every combination of the stack right on this machine's CUDA GPU?

    python benchmarks/gpu_check.py [--outputs DIR] [--tuned-trials N] [--skip-tuned]

1. `deploy.py experiment=gpu_check`: resnet18 and mobilenetv2 x every primitive x dense/CSR/BSR
   weights x float32/float16/int8, untuned, on hardware=local_cuda (54 points);
2. the dense points again with `codegen=autoschedule_quick` and --tuned-trials measured
   candidates per model (MetaSchedule on the GPU);
3. one line per point: ok / unsupported / failed, compiled accuracy against PyTorch's, latency.

Sized for about 10 minutes on a machine with one NVIDIA GPU (untested there so far: no GPU was
lent to a session yet). Without a GPU every point fails at once with "no CUDA GPU on this
host": the table then shows that, in seconds. Outputs go to --outputs (default
outputs/gpu_check), so the check never mixes with a study's results store.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep(outputs: Path, *overrides: str) -> float:
    start = time.perf_counter()
    env = {**os.environ, "DLAS_OUTPUTS": str(outputs)}
    # a failing point is a row (the sweep goes on and exits 1): the table below shows it
    subprocess.run([sys.executable, str(ROOT / "deploy.py"), *overrides, "logger.mode=disabled"],
                   cwd=ROOT, env=env, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs" / "gpu_check")
    parser.add_argument("--tuned-trials", type=int, default=32)
    parser.add_argument("--skip-tuned", action="store_true")
    args = parser.parse_args()
    from dlas.store.results import ResultsStore
    from dlas.sweep.summary import row_line, summary_table

    times = {"untuned": sweep(args.outputs, "experiment=gpu_check")}
    if not args.skip_tuned:
        # the experiment's axes, narrowed to the dense points: its trained models are reused
        times["tuned"] = sweep(args.outputs, "experiment=gpu_check", "compression=none,fp16,int8",
                               "grid.format=dense", "codegen=autoschedule_quick",
                               f"codegen.trials={args.tuned_trials}")
    rows = ResultsStore(args.outputs / "results.sqlite").rows(hardware="local_cuda")
    print("\nGPU check: " + ", ".join(f"{k} sweep {v:.0f} s" for k, v in times.items()))
    for row in sorted(rows, key=lambda r: (r["codegen"], r["model"], r["compression"],
                                           r["primitive"])):
        print(row_line(row))
    print(summary_table(rows))
    return 0 if rows and all(r["status"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
