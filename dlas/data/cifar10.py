"""CIFAR-10 through torchvision's own loader: 45k/5k train/val split of the train batches, test split for accuracy."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.datasets import CIFAR10

from dlas.data.base import ClassificationDataModule, check_fraction, check_int
from dlas.errors import DLASError, first_line

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
FOLDER = CIFAR10.base_folder  # "cifar-10-batches-py"
EXPECTED = (f"{FOLDER}/data_batch_1..5, test_batch, batches.meta "
            "(or set dataset.download=true when online)")


class UncheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR10 without the md5 checks, for copies that are not the original archive
    (re-encoded, subsets, generated test data); the loading code path is torchvision's own."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def dataset_arrays(dataset: Dataset, limit: int | None, input_shape) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` samples (all if None) as x float32 [N,C,H,W], y int64 [N]."""
    n = len(dataset) if limit is None else min(check_int("eval limit", limit, 1), len(dataset))
    xs, ys = [], []
    for i in range(n):
        x, y = dataset[i]
        xs.append(torch.as_tensor(x, dtype=torch.float32))
        ys.append(int(y))
    x = torch.stack(xs).numpy() if xs else np.zeros((0, *input_shape), np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(ys, dtype=np.int64)


class CIFAR10DataModule(ClassificationDataModule):
    """CIFAR-10 from `data_dir` (holding cifar-10-batches-py/), downloaded there if `download`.

    The train batches are split into train/val by a permutation fixed by `seed` (val_fraction
    0.1 gives the usual 45k/5k); `eval_split` picks which split the deploy stage measures
    (`test`: the 10k test batch, the number papers report). `verify=false` skips torchvision's
    md5 checks so that non-original copies load.
    """

    name = "cifar10"

    def __init__(self, data_dir: str | None = None, download: bool = False, verify: bool = True,
                 num_classes: int = 10, image_size: int = 32, batch_size: int = 128,
                 val_fraction: float = 0.1, eval_split: str = "test", augment: bool = True,
                 eval_samples: int | None = None, seed: int = 0, num_workers: int = 0,
                 name: str = "cifar10"):
        if name != "cifar10":
            raise DLASError("dataset.name", name, ["cifar10"], layer="dataset")
        if num_classes != 10:
            raise DLASError("dataset.num_classes", num_classes, [10],
                            reason="CIFAR-10 has exactly 10 classes", layer="dataset")
        if eval_split not in ("test", "val"):
            raise DLASError("dataset.eval_split", eval_split, ["test", "val"], layer="dataset")
        if data_dir is None or str(data_dir) == "":
            raise DLASError("dataset.data_dir", data_dir, "a folder holding " + EXPECTED,
                            reason="no data folder given", layer="dataset")
        super().__init__(num_classes, image_size, batch_size, seed, num_workers)
        self.data_dir = Path(data_dir).expanduser()
        self.download, self.verify, self.augment = bool(download), bool(verify), bool(augment)
        self.val_fraction = check_fraction("dataset.val_fraction", val_fraction)
        self.eval_split = eval_split
        self.eval_samples = None if eval_samples is None else check_int(
            "dataset.eval_samples", eval_samples, 1)
        self.test_set: Dataset | None = None

    def make_transform(self, train: bool) -> transforms.Compose:
        steps = [] if self.image_size == 32 else [transforms.Resize(self.image_size)]
        if train and self.augment:
            steps += [transforms.RandomCrop(self.image_size, padding=4 * self.image_size // 32),
                      transforms.RandomHorizontalFlip()]
        return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def _load(self, train: bool) -> CIFAR10:
        cls = CIFAR10 if self.verify else UncheckedCIFAR10
        folder = self.data_dir / FOLDER
        if not self.download:
            missing = [n for n, _ in cls.train_list + cls.test_list + [[cls.meta["filename"], 0]]
                       if not (folder / n).is_file()]
            if len(missing) == 7:
                missing = ["all of them"]  # no folder, or the wrong one: keep the line short
            if missing:
                raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                                reason=f"{folder} lacks {', '.join(missing)}", layer="dataset")
        try:
            ds = cls(str(self.data_dir), train=train, download=self.download,
                     transform=self.make_transform(False))
        except RuntimeError as err:  # torchvision: not found or corrupted (md5), or download failed
            reason = first_line(err)
            if self.verify and not self.download:  # the files exist (checked above): md5 differs
                reason = ("files differ from the original archive (md5 check); set "
                          "dataset.verify=false for a copy that is not the original")
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"{folder}: {reason}", layer="dataset") from err
        except Exception as err:  # unpicklable file, wrong keys or shapes
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"{folder} is malformed ({type(err).__name__}: {err})",
                            layer="dataset") from err
        labels = np.asarray(ds.targets)
        if len(labels) == 0 or labels.min() < 0 or labels.max() >= self.num_classes:
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"{folder} has labels outside 0..{self.num_classes - 1}",
                            layer="dataset")
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full = self._load(train=True)
        n_val = max(1, round(self.val_fraction * len(full)))
        if n_val >= len(full):
            raise DLASError("dataset.val_fraction", self.val_fraction,
                            f"a fraction leaving training samples out of {len(full)}", layer="dataset")
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(self.seed))
        # Sorted indices: the val order is stable and the split is the only random choice.
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        train_view = copy.copy(full)  # shares the arrays, differs only in the transform
        train_view.transform = self.make_transform(train=True)
        self.train_set = Subset(train_view, train_idx.tolist())
        self.val_set = Subset(full, val_idx.tolist())
        self.test_set = self._load(train=False)

    def test_dataloader(self) -> DataLoader:
        self._ready()
        return self._loader(self.test_set, shuffle=False)

    def eval_arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first `limit` samples of `eval_split` (test or val) as float32/int64 arrays."""
        self._ready()
        dataset = self.test_set if self.eval_split == "test" else self.val_set
        return dataset_arrays(dataset, limit if limit is not None else self.eval_samples,
                              self.input_shape)
