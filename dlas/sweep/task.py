"""The task wrapper around every point: skip what is done, record every outcome, go on.

Whatever happens inside a point (an unsupported combination, a crash deep in TVM) ends as
one row in the results store with the layer and the reason, and the W&B run is finished
with the matching status. In a sweep the next point then runs; a single run re-raises so the
entry point can print one line and exit non-zero. A bad setting (ConfigError) is not a point
of the stack: it is raised without a row, and the entry point says it in one line.
"""
from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlas.errors import ConfigError, DLASError, Unsupported, first_line, layer_of
from dlas.hardware.profile import PROFILE
from dlas.stages.force import Force
from dlas.stages.keys import point_key
from dlas.store.results import LAYERS, ResultsStore
from dlas.sweep.environment import environment
from dlas.sweep.summary import row_line
from dlas.sweep.wandb_runs import WandbRun

log = logging.getLogger(__name__)


class PointFailed(Exception):
    """Raised after a failed point has been recorded, for single (non-sweep) runs."""

    def __init__(self, row: dict):
        self.row = row
        super().__init__(f"{row['status']} [{row['layer'] or '?'}] {row['reason']}")


def layer_values(cfg: DictConfig) -> dict:
    """The value of each layer as the results store records it."""
    values = {layer: cfg[layer].get("name") for layer in LAYERS}
    values["primitive"] = f"{cfg.primitive.name}-{cfg.primitive.get('format', 'dense')}"
    return values


def layer_config(cfg: DictConfig) -> dict:
    return {k: OmegaConf.to_container(cfg[k], resolve=True)
            for k in LAYERS + ("measure",) if cfg.get(k) is not None}


def run_point(cfg: DictConfig, stage: Callable[..., dict], *, plan: Callable | None = None,
              sweep: str | None = None, raise_on_failure: bool = True) -> dict:
    """Measure point `cfg` with `stage(cfg, [plan(cfg),] force=...)`, or reuse its row.

    A bad setting (ConfigError, from `plan` or from inside the stage) is raised without a row;
    every other outcome is recorded. A lock per point makes a second process that wants the
    same point (another sweep on the same outputs) wait for it and reuse its row."""
    store = ResultsStore.of(cfg.paths)
    key = point_key(cfg)
    force = Force.of(cfg.force, "compile", sweep)
    layers = layer_values(cfg)
    profile = bool(cfg.measure.get("profile", False))
    reused = _reusable(store, key, force, sweep, profile)
    if reused:
        return reused
    planned = []
    try:
        if plan is not None:
            planned.append(plan(cfg))
    except Unsupported as exc:  # a combination that cannot run is a point, recorded as such
        return _record(layer_config(cfg), store, key, layers, sweep, "unsupported", exc.layer,
                       str(exc), {}, time.time(), None, raise_on_failure)

    with store.lock(key):
        reused = _reusable(store, key, force, sweep, profile)  # measured while we waited
        if reused:
            return reused
        config = layer_config(cfg)
        wandb_run = WandbRun(project=cfg.logger.project, entity=cfg.logger.get("entity"),
                             mode=cfg.logger.mode, group=force.sweep_name,
                             job_type="deploy", name="/".join(str(v) for v in layers.values()),
                             config=config, directory=cfg.paths.wandb)
        started = time.time()
        status, layer, reason, metrics = "ok", None, None, {}
        try:
            metrics = stage(cfg, *planned, force=force)
        except ConfigError:
            wandb_run.finish("failed", {**layers, "status": "config error"})
            raise
        except KeyboardInterrupt:  # no row: an earlier row of the point stays as it was
            wandb_run.finish("failed", {**layers, "status": "interrupted"})
            raise
        except Unsupported as exc:
            status, layer, reason = "unsupported", exc.layer, str(exc)
        except DLASError as exc:  # (a point measured but refused keeps what was measured)
            status, layer, reason = "failed", exc.layer, str(exc)
            metrics = getattr(exc, "metrics", None) or {}
        except Exception as exc:  # a crash inside a library: record it, keep the traceback on disk
            status, layer = "failed", layer_of(exc)
            trace = Path(cfg.paths.root) / "errors" / f"{key}.log"
            trace.parent.mkdir(parents=True, exist_ok=True)
            trace.write_text(traceback.format_exc())
            reason = f"{type(exc).__name__}: {first_line(str(exc))} (traceback: {trace})"
        return _record(config, store, key, layers, sweep, status, layer, reason, metrics, started,
                       wandb_run, raise_on_failure)


def _reusable(store: ResultsStore, key: str, force: Force, sweep: str | None,
              profile: bool = False) -> dict | None:
    """The stored ok row of the point, when force does not ask to measure it again (a row
    this sweep measured counts as fresh) and it has the per-layer profile `profile` asks
    for; printed as reused."""
    done = store.get(key)
    if not done or done["status"] != "ok" or not force.reuses("measure", sweep and done["sweep"]):
        return None
    if profile and store.profile(key) is None:
        log.info("point %s measured without measure.profile: measuring it again", key)
        return None
    store.mark_seen(key, sweep)
    log.info("point %s already measured (ok): reused (force=measure would measure it again)",
             key)
    print(row_line(done | {"sweep": sweep}, reused=True), flush=True)
    return done


def _record(config, store, key, layers, sweep, status, layer, reason, metrics, started, wandb_run,
            raise_on_failure) -> dict:
    metrics = dict(metrics)
    profile = metrics.pop(PROFILE, None)  # (its own table: a list of dicts per layer)
    row = dict(key=key, sweep=sweep, status=status, layer=layer, reason=reason, **layers,
               config=config, metrics=metrics, started=started)
    store.record(key, status=status, layers=layers, sweep=sweep, layer=layer, reason=reason,
                 config=config, metrics=metrics, env=environment(metrics.get("target")),
                 started=started, profile=profile)
    if wandb_run is not None:
        wandb_run.finish(status, {**layers, "status": status, "layer": layer, "reason": reason,
                                  **metrics})
    print(row_line(row), flush=True)
    if status != "ok" and raise_on_failure:
        raise PointFailed(row)
    return row
