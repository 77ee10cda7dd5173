"""The report mirrored in W&B: one run (job_type "report") in the sweep's group, with every
table as a wandb.Table, every figure as a wandb.Image and the observations' verdicts in its
summary. The mode follows the per-point runs (dlas.sweep.wandb_runs): offline unless this
machine is logged in, `disabled` logs nothing; never a prompt."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dlas.store.results import LAYERS
from dlas.sweep.wandb_runs import resolve_mode

log = logging.getLogger(__name__)


def group_of(info: dict, df: pd.DataFrame) -> str | None:
    """The W&B group of the points' runs: the sweep folder's name (as WandbRun names it)."""
    sweep = info.get("sweep")
    if sweep is None:
        sweeps = {s for s in df["sweep"].dropna().unique()}
        sweep = sweeps.pop() if len(sweeps) == 1 else None
    return Path(sweep).name if sweep else None


def layer_config(df: pd.DataFrame, info: dict) -> dict:
    """Config keyed by layer (a value, or the list of values the report covers), so the W&B UI
    groups and filters the report run like the point runs."""
    config = {}
    for layer in LAYERS:
        values = sorted(df[f"{layer}_name"].dropna().astype(str).unique())
        config[layer] = values[0] if len(values) == 1 else values
    config["report"] = {"where": info["where"], "sweep": info["sweep"], "points": info["points"],
                        **{f"points_{s}": n for s, n in info["status"].items()}}
    return config


def log_summary(report, df: pd.DataFrame, *, project: str, mode: str, directory: str,
                entity: str | None = None) -> str | None:
    """Log the report; returns the run's folder (offline) or URL (online), None if disabled."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    import wandb  # imported lazily: startup cost only when logging

    Path(directory).mkdir(parents=True, exist_ok=True)
    group = group_of(report.info, df)
    run = wandb.init(project=project, entity=entity, group=group, job_type="report",
                     name=f"report/{group or 'all'}", config=layer_config(df, report.info),
                     dir=directory, mode=mode, reinit="create_new",
                     settings=wandb.Settings(silent=True, console="off"))
    try:
        data = {}
        for name, table in report.tables.items():
            # W&B tables take plain values: NaN/None cells become None, columns of mixed types pass
            plain = table.astype(object).where(table.notna(), None)
            data[f"tables/{Path(name).stem}"] = wandb.Table(dataframe=plain,
                                                            allow_mixed_types=True)
        for fid, png in report.figures.items():
            data[f"figures/{fid}"] = wandb.Image(str(png), caption=fid)
        run.log(data)
        run.summary.update({f"observations/{o.slug}": o.verdict for o in report.observations})
        run.summary.update({f"observations/{o.slug}_statistic": o.statistic
                            for o in report.observations})
        run.summary.update({f"points_{s}": n for s, n in report.info["status"].items()})
    finally:
        run.finish()
    if mode == "offline":
        log.info("W&B report run saved offline in %s (upload later with `wandb sync`)", run.dir)
        return str(Path(run.dir).parent)
    return run.url
