"""W&B runs of the training curves: the train stage and each fine-tuning of the compress stage.

Lightning's WandbLogger writes per-epoch (and every `log_every_n_steps`) loss, accuracy,
learning rate and throughput into a run of `job_type` train or compress, in the same group as
the sweep's point runs (dlas.sweep.tracking), named by the stage's key; the run's id goes into
the stage's metrics, so a point's row (and its W&B run) names the runs of the stages it used,
reused ones included. The mode follows `logger.mode` (offline without an account).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from dlas.stages.force import Force
from dlas.sweep.tracking import resolve_mode


def stage_logging(cfg: DictConfig, job_type: str, key: str, force: Force) -> dict:
    """Trainer arguments that log a stage's training to W&B: `logger` and `callbacks`
    (learning rate per epoch); {"logger": False} when W&B is disabled."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return {"logger": False}
    import wandb  # imported lazily: startup cost only when logging
    from pytorch_lightning.loggers import WandbLogger

    directory = Path(cfg.paths.wandb)
    directory.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(project=cfg.logger.project, entity=cfg.logger.get("entity"),
                         group=force.sweep_name, job_type=job_type, name=f"{job_type} {key}",
                         save_dir=str(directory), offline=mode == "offline", log_model=False,
                         config={"key": key, **OmegaConf.to_container(cfg, resolve=True)},
                         reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
    return {"logger": logger, "callbacks": [LearningRateMonitor(logging_interval="epoch")]}


def finish(logging: dict) -> dict:
    """End the stage's W&B run; its id for the stage's metrics ({} when not logging)."""
    logger = logging.get("logger")
    if not logger:
        return {}
    run = logger.experiment
    run.finish()
    return {"run_id": run.id}
