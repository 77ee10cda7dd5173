"""Hydra callbacks that turn a multirun into a sweep with progress, a summary and an honest exit code."""
from __future__ import annotations

import os
import sys
import time

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dlas.store.results import ResultsStore
from dlas.sweep.intake import RowIntake
from dlas.sweep.objectives import row_of
from dlas.sweep.progress import Progress, duration, sweep_jobs
from dlas.sweep.summary import summary_table

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_total(config: DictConfig) -> int | None:
    """How many jobs this multirun launches: the BasicSweeper's expansion of the experiment's
    `hydra.sweeper.params` and the command line; a search sweeper's trial budget; else None."""
    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        trials = sweeper.get("n_trials")  # e.g. the Optuna sweeper
        return int(trials) if isinstance(trials, int) else None
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() \
        else None
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    return len(sweep_jobs(params, list(config.hydra.overrides.task),
                          sweeper.get("max_batch_size"), loader))


def sweep_configs(config: DictConfig):
    """The config of each job of a BasicSweeper multirun, as its launcher composes them."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    sweeper = config.hydra.sweeper
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    for overrides in sweep_jobs(params, list(config.hydra.overrides.task),
                                sweeper.get("max_batch_size"), loader):
        yield overrides, loader.load_sweep_config(config, list(overrides))


class CheckPoints(Callback):
    """Before the first job of a multirun, the entry point's check of every point's settings:
    a bad value anywhere in the sweep stops it with one line before any work, instead of
    failing when the sweep reaches it. Search sweepers (points not known in advance) check
    each point when it runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from dlas.cli import CHECKS, fail
        from dlas.errors import ConfigError

        check = CHECKS.get(config.hydra.job.config_name)
        if check is None or config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return
        for overrides, job in sweep_configs(config):
            try:
                check(job)
            except ConfigError as exc:  # (Hydra turns a callback's exception into a warning)
                fail(f"{exc} [sweep point: {' '.join(overrides)}]", 2)


class RemeasurePoints(Callback):
    """`deploy.py -m ... remeasure=N`: before the jobs run, re-time every stored point of the
    sweep in N interleaved rounds (dlas.sweep.remeasure); the jobs then find their rows
    measured by this sweep, and compile and measure only the points not stored yet."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if (config.hydra.job.config_name != "deploy" or not config.get("remeasure")
                or config.hydra.sweeper.get("_target_") != BASIC_SWEEPER):
            return
        from dlas.sweep.remeasure import remeasure, rounds_of

        jobs = [job for _, job in sweep_configs(config)]
        remeasure(jobs, rounds_of(config.remeasure), sweep=config.hydra.sweep.dir)


class SweepSummary(Callback):
    """A progress line after every job of a multirun; at its end one line per point, the
    failures by layer and reason, and exit 1 if any point failed.

    Progress is counted in the process that started the multirun (the basic launcher runs jobs
    there); a launcher that runs jobs in other processes gets a line when rows from its jobs
    are taken in (RowIntake) and the end summary, read from the results store."""

    def __init__(self):
        self.progress: Progress | None = None
        self.intake: RowIntake | None = None
        self.started = self.job_started = 0.0
        self.pid = None

    def __getstate__(self) -> dict:  # launchers pickle callbacks for their workers
        return {**self.__dict__, "intake": None}  # (the head's thread stays in the head)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            total = sweep_total(config)
        except Exception:  # an expansion Hydra itself will refuse: it says why when it sweeps
            total = None
        self.progress, self.started, self.pid = Progress(total), time.time(), os.getpid()
        print(f"sweep: {total if total is not None else 'an open number of'} jobs "
              f"-> {config.hydra.sweep.dir}", flush=True)
        self.intake = RowIntake(ResultsStore.of(config.paths, head=True)).start()

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        self.job_started = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        if self.progress is None or os.getpid() != self.pid:
            return  # a single run, or a job in a launcher's worker process
        status, reused = "failed", False
        row = row_of(job_return.return_value) if job_return.status == JobStatus.COMPLETED \
            else None
        if isinstance(row, dict) and row.get("status"):
            status = row["status"]
            # run_point returns the stored row of a point it skipped: started before this job
            reused = (row.get("started") or self.job_started) < self.job_started
        now = time.time()
        self.progress.add(status, now - self.job_started, reused)
        print(self.progress.line(now - self.started), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        store = ResultsStore.of(config.paths, head=True)
        if self.intake is not None:
            self.intake.stop()
        rows = store.rows(sweep=config.hydra.sweep.dir)
        print(summary_table(rows), flush=True)
        if self.started:
            print(f"sweep took {duration(time.time() - self.started)}", flush=True)
        if any(r["status"] == "failed" for r in rows):
            sys.exit(1)
