"""Train and evaluate a net with a caller-built Lightning Trainer."""
from __future__ import annotations

import os
import signal
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from dlas.models.build import input_dtype
from dlas.training.module import Classifier, OptimizerFactory, SchedulerFactory


def set_threads(num_threads: int | None = None) -> int:
    """Use one intra-op thread per CPU this process may run on, unless told otherwise.

    More threads than cores only adds contention; fewer leaves a core idle.
    """
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    num_threads = max(1, int(num_threads or 1))
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


@torch.no_grad()
def evaluate(net: nn.Module, dataloader: DataLoader) -> float:
    """Top-1 accuracy of `net` over `dataloader`, in eval mode; the net's mode is restored.

    Inputs are cast to the net's input dtype (dlas.models.input_dtype), so a float16 net
    (compression step fp16) is evaluated on float16 inputs."""
    dtype = input_dtype(net)
    was_training = net.training
    net.eval()
    correct = total = 0
    try:
        for x, y in dataloader:
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    finally:
        net.train(was_training)
    return correct / total if total else float("nan")


def fit(net: nn.Module, datamodule: pl.LightningDataModule, trainer: pl.Trainer,
        optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None, *,
        seed: int | None = None, num_threads: int | None = None, bn_batches: int = 8) -> dict:
    """Train `net` in place with `trainer` (max_epochs/max_time decide how long).

    Returns val_acc (of the final weights, over the datamodule's val loader), val_loss (if
    validation ran at the last epoch), epochs (the last one partial if max_time stopped it),
    steps (optimizer steps) and train_seconds. Works on nets carrying torch.nn.utils.prune
    masks: their forward pre-hooks keep pruned weights at zero while weight_orig is trained. `seed` (if given) seeds Python/NumPy/torch for the
    run itself; seed before building the net to make its initial weights reproducible too.
    `bn_batches`: BatchNorm statistics are recomputed from that many recent training
    batches before validation and at the end (see Classifier). The net ends in eval mode.
    """
    set_threads(num_threads)
    if seed is not None:
        pl.seed_everything(seed, workers=True, verbose=False)
    # Lightning keeps each submodule's mode as it finds it: a net left in eval mode by an
    # earlier stage (fine-tuning after compression) would train with frozen batch-norm.
    net.train()
    module = Classifier(net, optimizer, scheduler, bn_batches)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Lightning answers Ctrl-C with sys.exit(1) and ignores SIGINT from then on: give the
        # caller its KeyboardInterrupt back (a sweep stops cleanly and says how to resume)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None
    train_seconds = time.perf_counter() - start
    epochs = int(trainer.current_epoch)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # Reuse the last epoch's validation when it saw the final weights; otherwise (stopped
    # mid-epoch by max_time, validation skipped) measure the final weights now.
    # (limit_val_batches: an int counts batches, a float is a fraction; only 1.0 is all of them)
    whole_val = isinstance(trainer.limit_val_batches, float) and trainer.limit_val_batches >= 1.0
    fresh = whole_val and module.last_val_epoch == epochs - 1 and "val_acc" in metrics
    if not fresh:
        metrics["val_acc"] = evaluate(net, datamodule.val_dataloader())
        metrics.pop("val_loss", None)
    net.eval()
    result = {"val_acc": metrics["val_acc"], "epochs": epochs, "steps": int(trainer.global_step),
              "train_seconds": train_seconds, "budget_hit": _time_ran_out(trainer)}
    if "val_loss" in metrics:
        result["val_loss"] = metrics["val_loss"]
    if "train_loss" in metrics:
        result["train_loss"] = metrics["train_loss"]
    return result


def _time_ran_out(trainer: pl.Trainer) -> bool:
    """Whether `max_time` (Lightning's Timer) stopped the run before its epochs/steps were done."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None:
        return False
    remaining = timer.time_remaining("train")
    return remaining is not None and remaining <= 0
