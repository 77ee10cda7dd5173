"""What every DLAS datamodule shares: argument checks, loaders, and the eval set as arrays."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dlas.values import integer, number


def check_int(what: str, value, minimum: int) -> int:
    return integer(what, value, minimum, layer="dataset")


def check_fraction(what: str, value) -> float:
    return number(what, value, 0, 1, low_open=True, high_open=True,
                  valid="a number strictly between 0 and 1", layer="dataset")


class ClassificationDataModule(pl.LightningDataModule):
    """Image classification data with a train split and a validation split.

    Subclasses fill `self.train_set` and `self.val_set` in `setup()` with datasets of
    (image tensor [C,H,W] float32, int label) and set `num_classes` and `input_shape`.
    The validation split doubles as the eval set of the deploy stage (`eval_arrays`).
    """

    name = "base"

    def __init__(self, num_classes: int, image_size: int, batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0, channels: int = 3):
        super().__init__()
        self.num_classes = check_int("dataset.num_classes", num_classes, 2)
        self.image_size = check_int("dataset.image_size", image_size, 8)
        self.batch_size = check_int("dataset.batch_size", batch_size, 1)
        self.seed = check_int("dataset.seed", seed, 0)
        self.num_workers = check_int("dataset.num_workers", num_workers, 0)
        self.input_shape = (channels, self.image_size, self.image_size)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _ready(self) -> None:
        if self.train_set is None or self.val_set is None:
            self.setup("fit")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        # A seeded generator makes the shuffle order a function of `seed` alone.
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, generator=generator,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self._ready()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self._ready()
        return self._loader(self.val_set, shuffle=False)

    def eval_arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first `limit` validation samples (all if None) as x float32 [N,C,H,W], y int64 [N]."""
        if limit is not None:
            limit = check_int("eval limit", limit, 1)
        self._ready()
        n = len(self.val_set) if limit is None else min(limit, len(self.val_set))
        xs, ys = [], []
        for i in range(n):
            x, y = self.val_set[i]
            xs.append(torch.as_tensor(x, dtype=torch.float32))
            ys.append(int(y))
        x = torch.stack(xs).numpy() if xs else np.zeros((0, *self.input_shape), np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), np.asarray(ys, dtype=np.int64)
