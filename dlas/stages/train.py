"""Stage 1: dataset + model + recipe -> trained weights (artifact `trained`)."""
from __future__ import annotations

import json
import logging

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from dlas.config import make
from dlas.errors import first_line, in_layer
from dlas.stages.curves import stage_logging
from dlas.stages.force import NONE, Force
from dlas.stages.keys import train_key
from dlas.stages.produce import produce
from dlas.store.artifacts import ArtifactError, load_tensors, read_json
from dlas.training import fit

log = logging.getLogger(__name__)
WEIGHTS = "model.pt"


def trained_model(cfg: DictConfig, datamodule, *, force: Force = NONE):
    """The trained net and its training metrics, from the store or trained now."""
    key = train_key(cfg)

    def load(out):
        net = make(cfg, "model", weights=None)  # the architecture: the weights are stored
        try:
            net.load_state_dict(load_tensors(out / WEIGHTS))
        except (RuntimeError, TypeError, AttributeError) as exc:  # not this model's weights
            raise ArtifactError(str(out / WEIGHTS), reason="does not fit the configured model: "
                                + first_line(exc, 200)) from None
        return net, read_json(out / "metrics.json")

    def compute():
        log.info("training %s on %s (key %s)", cfg.model.name, cfg.dataset.name, key)
        pl.seed_everything(cfg.seed, workers=True)
        net = make(cfg, "model")  # built after seeding so the initial weights are reproducible
        optimizer = make(cfg.optim, "optimizer")
        scheduler = make(cfg.optim, "scheduler") if cfg.optim.get("scheduler") else None
        with in_layer("model"), stage_logging(cfg, "train", key, force) as logging:
            trainer = make(cfg, "trainer", **logging.trainer_args)
            metrics = fit(net, datamodule, trainer, optimizer, scheduler)
        if metrics["budget_hit"]:
            log.warning("training %s stopped by trainer.max_time after %d epochs: the model "
                        "depends on this machine's speed (its rows say budget_hit)",
                        cfg.model.name, metrics["epochs"])
        # the key and W&B run go into every row built on this model: its run links them
        return net, metrics | {"train_key": key, "train_run_id": logging.run_id}

    def save(output, tmp):
        net, metrics = output
        torch.save(net.state_dict(), tmp / WEIGHTS)
        (tmp / "metrics.json").write_text(json.dumps(metrics))

    (net, metrics), reused = produce(cfg, "train", key, force=force, load=load, compute=compute,
                                     save=save)
    return net, metrics | {"train_reused": reused}
