"""A search against the full grid of the same space: hypervolume of each front.

    python benchmarks/search.py [--trials 12] [--seeds 3] [--sampler tpe] [-- DEPLOY OVERRIDES]

The overrides define the grid (default `experiment=study_local`, 32 points, about an hour on
2 cores the first time). The grid runs first as a basic multirun (points already in the results
store are reused, so a second run costs seconds); then, for each seed, DLAS's Optuna sweeper
searches the same space with `--trials` trials (points it reaches are answered from the grid's
rows: the search and the grid compare the same measurements), and report.py compares the
searched front with the grid's. Prints one line per seed: the grid's and the search's
hypervolume and their ratio (one seed is one draw of the sampler: use several).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> str:
    print("$ python " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: some point failed (the summary says which)
        sys.exit(f"failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sampler", default="tpe", help="tpe (the sweeper's), nsgaii, random")
    parser.add_argument("overrides", nargs="*", default=["experiment=study_local"])
    args = parser.parse_args()
    grid = run(["deploy.py", "-m", *args.overrides])
    sweep = re.search(r"^sweep: .* -> (\S+)", grid, re.M).group(1)
    print(grid[grid.find("sweep summary"):].split("\n")[0], flush=True)
    lines = []
    for seed in range(args.seeds):
        found = run(["deploy.py", "-m", "hydra/sweeper=dlas_optuna",
                     f"hydra/sweeper/sampler={args.sampler}", *args.overrides,
                     f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.seed={seed}"])
        study = re.search(r"^search: study (\S+) in (\S+):", found, re.M)
        report = run(["report.py", f"report.sweep={sweep}", f"report.search={study.group(1)}",
                      f"report.out=${{paths.root}}/benchmarks/search/{study.group(1)}",
                      "report.wandb=false", *[o for o in args.overrides if o.startswith("paths.")]])
        out = Path(re.search(r"^report: (\S+) ", report, re.M).group(1)).parent
        table = pd.read_csv(out / "search_vs_grid.csv")
        grid_hv, search_hv = table["hypervolume"]
        lines.append(f"{seed:>4}  {study.group(1):<20} {table['points'][1]:>6} {grid_hv:>12.5g} "
                     f"{search_hv:>12.5g} {search_hv / grid_hv:>8.1%}")
    print(f"\ngrid: sweep {sweep} ({table['points'][0]} measured points); search: "
          f"{args.trials} trials per seed, sampler {args.sampler}\n"
          f"seed  study                points  grid HV      search HV    of grid\n"
          + "\n".join(lines))


if __name__ == "__main__":
    main()
