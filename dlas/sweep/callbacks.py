"""Hydra callbacks that turn a multirun into a sweep with a summary and an honest exit code."""
from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlas.store.results import ResultsStore
from dlas.sweep.summary import summary_table


class SweepSummary(Callback):
    """At the end of a multirun: print one line per point and exit 1 if any point failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        rows = ResultsStore(config.paths.results).rows(sweep=config.hydra.sweep.dir)
        print(summary_table(rows), flush=True)
        if any(r["status"] == "failed" for r in rows):
            sys.exit(1)
