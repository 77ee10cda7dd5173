"""A real multirun through deploy.py: a progress line after every job, the summary at the end.

Its four jobs take seconds: one point already measured (reused), one unsupported (ImageNet
weights on 32x32 digits) and two that fail at once (a board whose RPC tracker is not there).
A sweep with a bad value in any point is refused before its first job.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from hydra import compose, initialize_config_dir

from dlas.cli import CONF_DIR
from dlas.sweep.progress import sweep_jobs
from dlas.sweep.callbacks import sweep_total
from dlas.sweep.task import run_point

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\[(\d+)/(\d+)\] ok (\d+)(?: \((\d+) reused\))? · unsupported (\d+) · "
                  r"failed (\d+) · elapsed \S+ · ETA (\S+)$", re.M)


def test_multirun_prints_progress_and_summary(make_cfg, tmp_path, free_port):
    # the weights=null/cpu point is in the results store already: the sweep reuses it
    measured = {"latency_ms_median": 1.0, "accuracy_torch": 0.9, "accuracy_compiled": 0.9}
    run_point(make_cfg(overrides=["debug=fast"]), lambda cfg, force=False: measured)
    # hydra.mode=MULTIRUN as experiment=smoke sets it: a sweep without -m
    out = subprocess.run([sys.executable, "deploy.py", "hydra.mode=MULTIRUN", "debug=fast",
                          "model.weights=null,DEFAULT", "hardware=local,hikey"],
                         cwd=ROOT, env={**os.environ, "DLAS_OUTPUTS": str(tmp_path),
                                        "DLAS_TRACKER_PORT": str(free_port)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr  # a point failed
    assert "sweep: 4 jobs" in out.stdout
    lines = [m.groups() for m in LINE.finditer(out.stdout)]
    assert [(done, total) for done, total, *_ in lines] == [(str(i), "4") for i in (1, 2, 3, 4)]
    assert lines[0][2:] == ("1", "1", "0", "0", "-")  # reused: no ETA from it
    assert lines[1][-1] != "-"  # the first computed job gives the mean
    assert lines[-1][2:6] == ("1", "1", "1", "2") and lines[-1][-1] == "0s"
    summary = out.stdout[out.stdout.index("sweep summary:"):]
    assert "4 points — 1 ok, 1 unsupported, 2 failed" in summary
    assert re.search(r"^  2 x failed \[hardware\] RPC key='hikey'", summary, re.M), summary
    assert re.search(r"^  1 x unsupported \[model\] model.weights='DEFAULT'", summary, re.M)
    assert "sweep took" in out.stdout


def test_a_bad_value_in_any_point_stops_the_sweep_before_its_first_job(tmp_path):
    out = subprocess.run([sys.executable, "deploy.py", "-m", "debug=fast", "seed=0,abc"],
                         cwd=ROOT, env={**os.environ, "DLAS_OUTPUTS": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: seed='abc' (valid: an integer >= 0) [sweep point: debug=fast seed=abc]"]
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "results.sqlite").exists()  # a config error is not a results row


def test_total_of_an_experiment_and_the_command_line():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("deploy", ["experiment=study_local"], return_hydra_config=True)
    cfg.hydra.overrides.task = ["experiment=study_local", "model=resnet18", "seed=1,2,3"]
    study_jobs = len(sweep_jobs(OmegaConf.to_container(cfg.hydra.sweeper.params)))
    assert sweep_total(cfg) == study_jobs // 2 * 3  # one of the two models, three seeds
    cfg.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweep_total(cfg) is None
