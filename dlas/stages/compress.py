"""Stage 2: trained model + compression recipe (+ fine-tuning) -> compressed model."""
from __future__ import annotations

import json
import logging
import time

import torch
from omegaconf import DictConfig

from dlas.compression import StepContext, model_metrics, stored_bytes
from dlas.compression.storage import load_model, save_model
from dlas.config import make
from dlas.errors import in_layer
from dlas.stages.curves import stage_logging
from dlas.stages.force import NONE, Force
from dlas.stages.keys import compress_key
from dlas.stages.produce import produce
from dlas.stages.train import trained_model
from dlas.store.artifacts import ArtifactStore, read_json
from dlas.training import evaluate, fit

log = logging.getLogger(__name__)


def check(cfg: DictConfig, input_shape) -> None:
    """Refuse settings the architecture cannot take (a layer left without channels...) on an
    untrained copy, before any training; a stored compressed model has proven its settings."""
    if ArtifactStore(cfg.paths.artifacts).exists("compressed", compress_key(cfg)):
        return
    with in_layer("compression"):
        make(cfg, "compression").check(make(cfg, "model", weights=None),
                                        torch.zeros(1, *input_shape))


def final_accuracy(steps: list[dict], trained: float | None, evaluate) -> float:
    """The compressed net's accuracy over the whole val set without evaluating it again:
    the recipe's last step evaluated the final net (its entry), an empty recipe keeps the
    trained weights (their val_acc); `evaluate()` only when neither is known."""
    if steps:
        return steps[-1].get("acc_finalized", steps[-1]["acc_after_finetune"])
    return trained if trained is not None else evaluate()


def compressed_model(cfg: DictConfig, datamodule, *, force: Force = NONE):
    """The compressed net (eval mode) and its metrics, from the store or computed now."""
    key = compress_key(cfg)
    compression = make(cfg, "compression")  # validates the recipe even when reusing
    example = torch.zeros(1, *datamodule.input_shape)

    def load(out):
        net = load_model(out, architecture=lambda: make(cfg, "model", weights=None))
        return net, read_json(out / "metrics.json")

    def compute():  # (the recipe was checked against the architecture by the entry: check())
        net, train_metrics = trained_model(cfg, datamodule, force=force)
        val = datamodule.val_dataloader()
        start = time.perf_counter()
        log.info("compressing with %s (key %s)", compression.name, key)

        runs = []

        def finetune(model, epochs):
            optimizer = make(cfg.optim, "optimizer", lr=cfg.optim.finetune_lr)
            with stage_logging(cfg, "compress", key, force) as logging:
                trainer = make(cfg, "trainer", max_epochs=epochs, **logging.trainer_args)
                result = fit(model, datamodule, trainer, optimizer)
            runs.append(logging.run_id)
            return result

        with in_layer("compression"):
            context = StepContext(example=example, train_batches=datamodule.train_dataloader)
            net, structure, steps = compression.apply(net, context=context,
                                                      evaluate=lambda m: evaluate(m, val),
                                                      finetune=finetune)
        net.eval()
        metrics = {
            "accuracy_trained": train_metrics.get("val_acc"),
            "accuracy_compressed": final_accuracy(steps, train_metrics.get("val_acc"),
                                                  lambda: evaluate(net, val)),
            "compress_s": time.perf_counter() - start,
            "compression_steps": steps,  # (not "steps": the training metrics count optimizer steps)
            **{k: v for k, v in train_metrics.items() if k != "val_acc"},
            # parameters/MACs of the architecture, bytes of the weights as stored (int8: 1 each)
            **model_metrics(structure, example), "size_bytes": stored_bytes(net),
        }
        metrics["compress_key"] = key
        metrics["compression_base"] = compression.base()  # (the report pairs points by it)
        if any(runs):
            metrics["compress_run_ids"] = ",".join(filter(None, runs))
        # a model that depends on the machine's speed (training or a fine-tuning stopped by
        # trainer.max_time) is marked, and so is every row built on it
        metrics["budget_hit"] = bool(train_metrics.get("budget_hit")) or any(
            step.get("budget_hit") for step in steps)
        if steps:
            metrics["acc_before_finetune"] = steps[-1]["acc_before_finetune"]
            metrics["acc_after_finetune"] = steps[-1]["acc_after_finetune"]
        return net, metrics

    def save(output, tmp):
        net, metrics = output
        save_model(net, tmp, example)
        (tmp / "metrics.json").write_text(json.dumps(metrics))

    (net, metrics), reused = produce(cfg, "compress", key, force=force, load=load,
                                     compute=compute, save=save)
    return net, metrics | {"compress_reused": reused}
