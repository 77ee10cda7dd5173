"""Tiny datasets written in the real on-disk formats, for the real loaders to read.

CIFAR-10: cifar-10-batches-py/ pickles with the keys of the original archive. ImageNet:
train/ and val/ folders of wnid-named class folders holding JPEGs. Pixel values are a
function of the label (plus noise) so tests can tell that images and labels stay paired.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def cifar_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 32x32x3 uint8 image whose red channel mean is about 20 * label."""
    img = rng.integers(0, 16, size=(32, 32, 3))
    img[..., 0] += 20 * label
    img[..., 1] += 100
    return img.astype(np.uint8)


def _batch(path: Path, label: str, n: int, offset: int, rng: np.random.Generator) -> None:
    labels = [(offset + i) % 10 for i in range(n)]
    hwc = np.stack([cifar_image(y, rng) for y in labels]) if n else np.zeros((0, 32, 32, 3), np.uint8)
    data = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-major rows, as in the archive
    entry = {"batch_label": label, "labels": labels, "data": data,
             "filenames": [f"img_{offset + i:05d}.png" for i in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def make_cifar10(root: str | Path, n_train: int = 100, n_test: int = 20, seed: int = 0) -> Path:
    """Write root/cifar-10-batches-py/ (5 train batches sharing n_train, a test batch, batches.meta)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [n_train // 5 + (i < n_train % 5) for i in range(5)]
    offset = 0
    for i, n in enumerate(sizes, 1):
        _batch(folder / f"data_batch_{i}", f"training batch {i} of 5", n, offset, rng)
        offset += n
    _batch(folder / "test_batch", "testing batch 1 of 1", n_test, 0, rng)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": max(sizes),
                     "num_vis": 3072}, f, protocol=2)
    return Path(root)


def make_imagenet(root: str | Path, classes: int = 3, per_class: int = 4, val_per_class: int = 2,
                  size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Write root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG; class k is tinted by k."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{1440764 + 1000 * k:08d}" for k in range(classes)]
    for split, n in (("train", per_class), ("val", val_per_class)):
        for k, wnid in enumerate(wnids):
            folder = Path(root) / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 16, size=(size[1], size[0], 3))
                img[..., 2] += int(200 * k / max(1, classes - 1))
                name = f"ILSVRC2012_{split}_{k:04d}{i:04d}.JPEG"
                Image.fromarray(img.astype(np.uint8)).save(folder / name, format="JPEG", quality=95)
    return Path(root)
