"""Two processes on one outputs folder (two sweeps, two launcher workers): a stage output and
a point are computed once, the other process waits and reuses them, and the point belongs
to both sweeps."""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlas.cli import CONF_DIR
from dlas.stages.force import NONE
from dlas.stages.produce import produce
from dlas.store.results import ResultsStore
from dlas.sweep.task import run_point


def _stage_output(root: str, counter: str, start: float):
    time.sleep(max(0.0, start - time.time()))  # both processes ask at the same moment
    cfg = OmegaConf.create({"paths": {"artifacts": root}})

    def compute():
        with open(counter, "a") as f:
            f.write("computed\n")
        time.sleep(1.0)
        return "output"

    out, reused = produce(cfg, "train", "k", force=NONE, compute=compute,
                          load=lambda folder: (folder / "f").read_text(),
                          save=lambda output, folder: (folder / "f").write_text(output))
    assert out == "output"


def _point(root: str, counter: str, sweep: str, start: float):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("deploy", [f"paths.root={root}", "logger.mode=disabled"])
    time.sleep(max(0.0, start - time.time()))

    def stage(cfg, force):
        with open(counter, "a") as f:
            f.write("measured\n")
        time.sleep(1.0)
        return {"latency_ms_median": 1.0}

    run_point(cfg, stage, sweep=sweep)


def _run_together(target, *args_per_process):
    ctx = mp.get_context("fork")  # two processes, as two sweeps are (fork: no second start-up)
    procs = [ctx.Process(target=target, args=args) for args in args_per_process]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_a_stage_output_is_computed_once_by_concurrent_processes(tmp_path):
    counter = tmp_path / "count"
    start = time.time() + 3
    _run_together(_stage_output, *[(str(tmp_path / "artifacts"), str(counter), start)] * 2)
    assert counter.read_text().count("computed") == 1


def test_a_point_is_measured_once_by_two_sweeps_and_belongs_to_both(tmp_path):
    counter = tmp_path / "count"
    start = time.time() + 3  # after both have composed their configs
    _run_together(_point, (str(tmp_path), str(counter), "sweep-a", start),
                  (str(tmp_path), str(counter), "sweep-b", start))
    assert counter.read_text().count("measured") == 1
    store = ResultsStore(Path(tmp_path) / "results.sqlite")
    assert len(store.rows()) == 1
    assert store.rows(sweep="sweep-a") == store.rows(sweep="sweep-b") == store.rows()
