"""Sweeps through Hydra's launchers, on real points: joblib (2 jobs at once on this machine)
and submitit_slurm (a one-node SLURM cluster in a private network namespace, set up by
one_node_slurm.sh; skipped, saying why, without its apt packages or root).

Cheap on purpose: the points differ only in `measure.repeat`, so they share one trained model
and one compiled library, which the two concurrent jobs compute once (one waits for the
other's lock); the SLURM sweep reuses the joblib sweep's outputs and only measures.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlas.store import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TINY = ["debug=fast", "dataset.eval_samples=40"]
SLURM_TOOLS = ("slurmctld", "slurmd", "sinfo", "sbatch", "munged", "unshare", "ip")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("launchers")


def _run(args, outputs: Path, timeout: int, prefix=()) -> str:
    proc = subprocess.run([*prefix, sys.executable, "deploy.py", "-m", *args, *TINY], cwd=ROOT,
                          env={**os.environ, "DLAS_OUTPUTS": str(outputs)}, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def test_joblib_sweep_with_two_jobs_computes_shared_stages_once(outputs):
    out = _run(["measure.repeat=2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
               outputs, timeout=900)
    assert "sweep summary: 2 points — 2 ok, 0 unsupported, 0 failed" in out, out[-3000:]
    # the two jobs ran at once: both needed the model and the library, each was made once
    assert len(list((outputs / "artifacts" / "trained").glob("[!.]*"))) == 1
    assert len(list((outputs / "artifacts" / "compiled").glob("[!.]*"))) == 1
    rows = ResultsStore(outputs / "results.sqlite").rows()
    assert sorted(r["metrics"]["latency_repeats"] for r in rows) == [2, 3]
    assert {r["metrics"]["compile_reused"] for r in rows} == {False, True}
    assert all(r["metrics"]["rpc_server"].startswith("127.0.0.1:") for r in rows)
    assert sorted(p.stem for p in (outputs / "rows").glob("*.json")) == sorted(
        r["key"] for r in rows)  # each row also handed over as its file


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in SLURM_TOOLS),
                    reason="a one-node SLURM cluster needs root and the apt packages slurmctld "
                           "slurmd slurm-client munge (and unshare, ip); .ci/run installs them")
def test_submitit_slurm_sweep_hands_rows_over_to_the_heads_store(outputs, tmp_path):
    head = tmp_path / "head"  # the head's local disk; outputs/ stands for the shared filesystem
    out = _run(["measure.repeat=4,5", "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=debug", "paths.rows_only=true",
                f"paths.results={head / 'results.sqlite'}"], outputs, timeout=900,
               prefix=["unshare", "--net", "bash", str(HERE / "one_node_slurm.sh"),
                       str(tmp_path / "slurm")])
    assert "sweep summary: 2 points — 2 ok, 0 unsupported, 0 failed" in out, out[-3000:]
    rows = ResultsStore(head / "results.sqlite").rows()
    # every row of the outputs folder: the joblib sweep's (taken in at the start) and its own
    assert sorted(r["metrics"]["latency_repeats"] for r in rows) == [2, 3, 4, 5][-len(rows):]
    rows = [r for r in rows if r["metrics"]["latency_repeats"] >= 4]
    assert len(rows) == 2
    # measured by SLURM array tasks, which wrote row files only; the head took them in
    assert all(r["env"]["slurm_job_id"] and r["env"]["slurm_array_task_id"] for r in rows)
    assert all((outputs / "rows" / f"{r['key']}.json").is_file() for r in rows)
    # the library is the joblib sweep's (or, run alone, compiled by one of the two jobs)
    assert sum(not r["metrics"]["compile_reused"] for r in rows) <= 1
    assert len(list((outputs / "artifacts" / "compiled").glob("[!.]*"))) == 1
