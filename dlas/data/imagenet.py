"""ImageNet (or any ImageFolder-layout subset of it): train/ and val/ folders of class subfolders."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder, ImageNet

from dlas.data.base import ClassificationDataModule, check_int
from dlas.errors import DLASError, first_line

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXPECTED = "a folder with train/ and val/, each holding one subfolder of images per class (wnid)"


class ImageNetDataModule(ClassificationDataModule):
    """ImageFolder train/val under `data_dir`; torchvision's ImageNet class if `meta.bin` is there.

    Eval: resize to `resize_size` (256), centre crop `image_size` (224); training: random
    resized crop + flip. `eval_samples` keeps a random subset of val fixed by `seed` (a
    prefix of a sorted ImageFolder would be one or two classes only), in shuffled order.
    `num_classes` must equal the number of class folders (set it for a subset of ImageNet).
    """

    name = "imagenet"

    def __init__(self, data_dir: str | None = None, num_classes: int = 1000, image_size: int = 224,
                 resize_size: int = 256, batch_size: int = 64, eval_samples: int | None = None,
                 augment: bool = True, seed: int = 0, num_workers: int = 0, name: str = "imagenet"):
        if name != "imagenet":
            raise DLASError("dataset.name", name, ["imagenet"], layer="dataset")
        if data_dir is None or str(data_dir) == "":
            raise DLASError("dataset.data_dir", data_dir, EXPECTED,
                            reason="no data folder given", layer="dataset")
        super().__init__(num_classes, image_size, batch_size, seed, num_workers)
        self.resize_size = check_int("dataset.resize_size", resize_size, self.image_size)
        self.eval_samples = None if eval_samples is None else check_int(
            "dataset.eval_samples", eval_samples, 1)
        self.data_dir = Path(data_dir).expanduser()
        self.augment = bool(augment)
        self.classes: list[str] = []

    def make_transform(self, train: bool) -> transforms.Compose:
        if train and self.augment:
            steps = [transforms.RandomResizedCrop(self.image_size), transforms.RandomHorizontalFlip()]
        else:
            steps = [transforms.Resize(self.resize_size), transforms.CenterCrop(self.image_size)]
        return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def _load(self, split: str) -> ImageFolder:
        folder = self.data_dir / split
        if not folder.is_dir():
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"{folder} is not a folder", layer="dataset")
        transform = self.make_transform(split == "train")
        try:
            if (self.data_dir / "meta.bin").is_file():  # torchvision's own ImageNet layout
                return ImageNet(str(self.data_dir), split=split, transform=transform)
            return ImageFolder(str(folder), transform=transform)
        except (FileNotFoundError, RuntimeError) as err:  # no class folders / no images in them
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"{folder}: {first_line(err)}", layer="dataset") from err

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._load("train"), self._load("val")
        if train.classes != val.classes:
            raise DLASError("dataset.data_dir", str(self.data_dir), EXPECTED,
                            reason=f"train/ has {len(train.classes)} classes and val/ "
                                   f"{len(val.classes)}, or their names differ", layer="dataset")
        if len(train.classes) != self.num_classes:
            raise DLASError("dataset.num_classes", self.num_classes, [len(train.classes)],
                            reason=f"{self.data_dir} has {len(train.classes)} class folders",
                            layer="dataset")
        self.classes = list(getattr(train, "wnids", train.classes))
        order = torch.randperm(len(val), generator=torch.Generator().manual_seed(self.seed))
        if self.eval_samples is not None:
            order = order[:self.eval_samples]
        self.train_set, self.val_set = train, Subset(val, order.tolist())

    def eval_arrays(self, limit=None):
        return super().eval_arrays(limit if limit is not None else self.eval_samples)
