"""scikit-learn's 8x8 handwritten digits as a small image-classification set (no download)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from dlas.data.base import ClassificationDataModule, check_fraction, check_int
from dlas.errors import DLASError

# Pixel mean/std of the upsampled [0,1] images; fixed so train, val and the deploy stage agree.
MEAN, STD = 0.5, 0.5


def digits_tensors(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float32 [N,3,S,S] normalised images and int64 labels."""
    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # values 0..16
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = ((x - MEAN) / STD).repeat(1, 3, 1, 1).contiguous()
    return x, torch.from_numpy(data.target.astype(np.int64))


class DigitsDataModule(ClassificationDataModule):
    """Digits upsampled to `image_size`, 3 channels, stratified train/val split fixed by `seed`."""

    name = "digits"

    def __init__(self, num_classes: int = 10, image_size: int = 32, batch_size: int = 64,
                 val_fraction: float = 0.2, seed: int = 0, num_workers: int = 0,
                 name: str = "digits", eval_samples: int | None = None):
        if name != "digits":
            raise DLASError("dataset.name", name, ["digits"], layer="dataset")
        if num_classes != 10:
            raise DLASError("dataset.num_classes", num_classes, [10],
                            reason="digits has exactly 10 classes", layer="dataset")
        super().__init__(num_classes, image_size, batch_size, seed, num_workers)
        self.val_fraction = check_fraction("dataset.val_fraction", val_fraction)
        # deploy measures accuracy on the first eval_samples validation samples (all: None);
        # slow targets (an emulated board) need fewer
        self.eval_samples = None if eval_samples is None else check_int(
            "dataset.eval_samples", eval_samples, 1)

    def eval_arrays(self, limit: int | None = None):
        return super().eval_arrays(limit if limit is not None else self.eval_samples)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x, y = digits_tensors(self.image_size)
        idx = np.arange(len(y))
        train_idx, val_idx = train_test_split(idx, test_size=self.val_fraction, stratify=y.numpy(),
                                              random_state=self.seed)
        # Sorted indices keep the val order stable and independent of the split's internal shuffle.
        train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
        self.train_set = TensorDataset(x[train_idx], y[train_idx])
        self.val_set = TensorDataset(x[val_idx], y[val_idx])
