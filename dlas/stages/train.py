"""Stage 1: dataset + model + recipe -> trained weights (artifact `trained`)."""
from __future__ import annotations

import json
import logging

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from dlas.config import build
from dlas.errors import in_layer
from dlas.stages.keys import train_key
from dlas.store.artifacts import ArtifactStore
from dlas.training import fit

log = logging.getLogger(__name__)


def trained_model(cfg: DictConfig, datamodule, *, force: bool = False):
    """The trained net and its training metrics, from the store or trained now."""
    store = ArtifactStore(cfg.paths.artifacts)
    key = train_key(cfg)
    net = build(cfg, "model")
    out = store.path("trained", key)
    if store.exists("trained", key) and not force:
        net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
        return net, json.loads((out / "metrics.json").read_text()) | {"train_reused": True}
    log.info("training %s on %s (key %s)", cfg.model.name, cfg.dataset.name, key)
    pl.seed_everything(cfg.seed, workers=True)
    net = build(cfg, "model")  # rebuilt after seeding so the initial weights are reproducible
    trainer = build(cfg, "trainer")
    optimizer = build(cfg.optim, "optimizer")
    scheduler = build(cfg.optim, "scheduler") if cfg.optim.get("scheduler") else None
    with in_layer("model"):
        metrics = fit(net, datamodule, trainer, optimizer, scheduler)
    with store.write("trained", key, cfg) as tmp:
        torch.save(net.state_dict(), tmp / "model.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics))
    return net, metrics | {"train_reused": False}
