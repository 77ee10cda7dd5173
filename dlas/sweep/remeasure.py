"""`remeasure=N`: re-time the stored compiled libraries of a sweep's points, without compiling.

A latency measured while the machine was busy can be redone cheaply: each point whose row is
ok and whose library is stored (and is the one its compile stage exported: SHA-256) is timed
again in N rounds, interleaved (round 1 times every point, then round 2...), so slow drift of
the machine spreads over all points instead of falling on the last ones. The row's latency
statistics become those of every round's repeats pooled; the row keeps each round's median,
the fastest of them, their spread ((max - min) / median) and the 1-minute load average around
each measurement. The fastest round is the figure to compare points by on a machine whose
speed drifts: on a shared 2-core VM a 2-thread pool was seen running ~1.9x slower for seconds
at a time, whatever the library, so one point's rounds can all fall in fast moments and the
other's in slow ones.
Points not measured yet are left to the sweep's jobs, which compile and measure them as usual.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from dlas.errors import ConfigError, in_layer
from dlas.hardware.measure import latency_stats
from dlas.stages.deploy import LIB, Plan, plan, stored_library
from dlas.stages.keys import compile_key, point_key
from dlas.store.artifacts import ArtifactError, ArtifactStore
from dlas.store.results import ResultsStore

log = logging.getLogger(__name__)
DEFAULT_ROUNDS = 3  # remeasure=true


def rounds_of(value) -> int:
    """The `remeasure` setting as a number of rounds (0: off)."""
    if value is None or value is False:
        return 0
    if value is True:
        return DEFAULT_ROUNDS
    if isinstance(value, int) and value >= 0:
        return value
    raise ConfigError("remeasure", value, "false, true (3 rounds) or a number of rounds >= 0")


@dataclass
class _Point:
    key: str
    row: dict
    lib: Path
    planned: Plan
    sample: np.ndarray
    times: list = field(default_factory=list)   # per round: each repeat's time (ms)
    load: list = field(default_factory=list)    # per round: load average around it


def _stored(cfg: DictConfig, store: ResultsStore, key: str) -> _Point | None:
    row = store.get(key)
    folder = ArtifactStore(cfg.paths.artifacts).path("compiled", compile_key(cfg))
    lib = folder / LIB
    if row is None or row["status"] != "ok" or not lib.is_file():
        log.info("remeasure: point %s has no measured row and stored library yet: its job "
                 "compiles and measures it", key)
        return None
    try:
        stored_library(folder)
    except ArtifactError as exc:  # (deploy's own check before it reuses a library)
        log.warning("remeasure: %s: point %s is compiled again by its job", exc, key)
        return None
    planned = plan(cfg)
    x, _ = planned.datamodule.eval_arrays(cfg.dataset.get("eval_samples"))
    return _Point(key, row, lib, planned, x[:1])


def remeasure(cfgs: list[DictConfig], rounds: int, sweep: str | None = None) -> list[str]:
    """Re-time every stored point of `cfgs` in `rounds` interleaved rounds and rewrite its
    row (as measured by `sweep`); the keys of the points re-timed."""
    if not cfgs or rounds < 1:
        return []
    store = ResultsStore.of(cfgs[0].paths, head=True)  # (run by the sweep's head)
    jobs = {}  # jobs that are one point (e.g. csr of a dense model) are timed once
    for cfg in cfgs:
        jobs.setdefault(point_key(cfg), cfg)
    points = [p for p in (_stored(cfg, store, key) for key, cfg in jobs.items()) if p is not None]
    start = time.perf_counter()
    for r in range(rounds):
        for i, point in enumerate(points):
            hardware = point.planned.hardware
            before = os.getloadavg()[0]
            with in_layer("hardware"), hardware.session() as session:
                result = point.planned.measure.run(session, str(point.lib), point.sample,
                                                   device=hardware.runtime_device)
            point.times.append(result.times_ms)
            point.load.append((before + os.getloadavg()[0]) / 2)
            log.info("remeasure round %d/%d, point %d/%d (%s): median %.3f ms, load %.2f",
                     r + 1, rounds, i + 1, len(points), point.key,
                     float(np.median(result.times_ms)), point.load[-1])
    for point in points:
        medians = [float(np.median(t)) for t in point.times]
        pooled = latency_stats(np.concatenate(point.times), point.planned.measure.noisy_cv)
        metrics = {**point.row["metrics"], **pooled,
                   "latency_round_medians": medians, "latency_round_best": min(medians),
                   "latency_round_spread":
                       (max(medians) - min(medians)) / float(np.median(medians)),
                   "load_avg_rounds": point.load, "remeasured_at": time.time()}
        store.record(point.key, status="ok", layers=point.row, sweep=sweep,
                     config=point.row["config"], metrics=metrics, env=point.row.get("env"),
                     started=point.row["started"],
                     profile=store.profile(point.key))  # (of the same library: kept)
    log.info("remeasure: %d points x %d rounds in %.0f s (nothing compiled)", len(points),
             rounds, time.perf_counter() - start)
    return [p.key for p in points]
