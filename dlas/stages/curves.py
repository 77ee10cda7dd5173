"""W&B runs of the training curves: the train stage and each fine-tuning of the compress stage.

Lightning's WandbLogger writes per-epoch (and every `log_every_n_steps`) loss, accuracy,
learning rate and throughput into a run of `job_type` train or compress, in the same group as
the sweep's point runs (dlas.sweep.wandb_runs), named by the stage's key; the run's id goes into
the stage's metrics, so a point's row (and its W&B run) names the runs of the stages it used,
reused ones included. The mode follows `logger.mode` (offline without an account).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from dlas.stages.force import Force
from dlas.sweep.wandb_runs import WandbRun


@dataclass
class StageLogging:
    trainer_args: dict = field(default_factory=lambda: {"logger": False})  # for the Trainer
    run_id: str | None = None  # the W&B run's id; None when W&B is disabled


@contextmanager
def stage_logging(cfg: DictConfig, job_type: str, key: str, force: Force
                  ) -> Iterator[StageLogging]:
    """A W&B run for one training of a stage, finished when the block ends (exit code 1 if
    it raised); inside, `trainer_args` attach it to a Trainer with the learning rate logged."""
    wandb_run = WandbRun(project=cfg.logger.project, entity=cfg.logger.get("entity"),
                         mode=cfg.logger.mode, group=force.sweep_name, name=f"{job_type} {key}",
                         config={"key": key, **OmegaConf.to_container(cfg, resolve=True)},
                         directory=cfg.paths.wandb, job_type=job_type)
    if wandb_run.run is None:
        yield StageLogging()
        return
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import WandbLogger

    # the run is made here and handed over: WandbLogger would otherwise reuse `wandb.run`,
    # the point's own run, and log the curves into it
    logger = WandbLogger(experiment=wandb_run.run, log_model=False)
    try:
        yield StageLogging({"logger": logger,
                            "callbacks": [LearningRateMonitor(logging_interval="epoch")]},
                           wandb_run.run.id)
    except BaseException:
        wandb_run.run.finish(exit_code=1)
        raise
    wandb_run.run.finish()
