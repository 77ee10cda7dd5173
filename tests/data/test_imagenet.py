"""ImageFolder-layout ImageNet read from generated train/ and val/ wnid folders of JPEGs."""
from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from dlas.data import ImageNetDataModule
from dlas.data.imagenet import MEAN, STD
from dlas.errors import DLASError
from tests.data.fakedata import make_imagenet


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"), classes=3, per_class=4, val_per_class=3)


def blue_label(x: np.ndarray) -> np.ndarray:
    """Recover the class from the blue tint of normalised images (fakedata: +100 per class)."""
    blue = (x[:, 2] * STD[2] + MEAN[2]) * 255
    return np.rint((blue.mean(axis=(1, 2)) - 7.5) / 100).astype(np.int64)


def test_shapes_labels_and_default_224_transform(root):
    dm = ImageNetDataModule(data_dir=str(root), num_classes=3, batch_size=4)
    dm.setup()
    assert dm.input_shape == (3, 224, 224) and len(dm.classes) == 3
    assert dm.classes[0].startswith("n") and len(dm.classes[0]) == 9
    assert (len(dm.train_set), len(dm.val_set)) == (12, 9)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 224, 224) and y.dtype == torch.int64
    xv, yv = dm.eval_arrays()
    assert xv.shape == (9, 3, 224, 224) and xv.dtype == np.float32
    assert sorted(yv.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(blue_label(xv), yv)


def test_eval_subset_is_random_and_deterministic(root):
    kw = dict(data_dir=str(root), num_classes=3, image_size=32, resize_size=36)
    a, b = ImageNetDataModule(**kw, eval_samples=4), ImageNetDataModule(**kw, eval_samples=4)
    xa, ya = a.eval_arrays()
    xb, yb = b.eval_arrays()
    assert xa.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    full = ImageNetDataModule(**kw)
    full.setup()
    assert len(full.val_set) == 9 and a.val_set.indices == full.val_set.indices[:4]
    assert full.val_set.indices != sorted(full.val_set.indices)  # shuffled, not class by class
    other = ImageNetDataModule(**kw, seed=1)
    other.setup()
    assert other.val_set.indices != full.val_set.indices


def test_train_transform_random_resized_crop(root):
    dm = ImageNetDataModule(data_dir=str(root), num_classes=3, image_size=32, resize_size=36)
    dm.setup()
    torch.manual_seed(0)
    crops = torch.stack([dm.train_set[0][0] for _ in range(4)])
    assert crops.shape == (4, 3, 32, 32)
    assert not torch.equal(crops[0], crops[1])
    plain = ImageNetDataModule(data_dir=str(root), num_classes=3, image_size=32, resize_size=36,
                               augment=False)
    plain.setup()
    assert torch.equal(plain.train_set[0][0], plain.train_set[0][0])


def test_torchvision_meta_bin_layout(tmp_path):
    root = make_imagenet(tmp_path, classes=2, per_class=2, val_per_class=2)
    wnids = sorted(p.name for p in (root / "val").iterdir())
    torch.save(({w: (f"class {w}",) for w in wnids}, []), root / "meta.bin")
    dm = ImageNetDataModule(data_dir=str(root), num_classes=2, image_size=32, resize_size=32)
    dm.setup()
    assert dm.classes == wnids and type(dm.train_set).__name__ == "ImageNet"
    assert dm.train_set.classes[0] == ("class " + wnids[0],)


def test_class_count_and_folder_errors(tmp_path, root):
    with pytest.raises(DLASError, match="num_classes=1000") as err:
        ImageNetDataModule(data_dir=str(root)).setup()
    assert "[3]" not in str(err.value) and "valid: 3" in str(err.value)
    with pytest.raises(DLASError, match="train is not a folder") as err:
        ImageNetDataModule(data_dir=str(tmp_path / "nowhere"), num_classes=3).setup()
    assert str(tmp_path / "nowhere") in str(err.value)
    lopsided = make_imagenet(tmp_path / "lop", classes=3, per_class=1, val_per_class=1)
    for f in (lopsided / "val").iterdir():
        if f.name.endswith("2764"):
            for img in f.iterdir():
                img.unlink()
            f.rmdir()
    with pytest.raises(DLASError, match="train/ has 3 classes and val/ 2"):
        ImageNetDataModule(data_dir=str(lopsided), num_classes=3).setup()
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DLASError, match="empty/train"):
        ImageNetDataModule(data_dir=str(empty), num_classes=3).setup()


@pytest.mark.parametrize("kwargs, what", [
    ({"data_dir": None}, "data_dir"), ({"num_classes": 1}, "num_classes"),
    ({"resize_size": 100}, "resize_size"), ({"eval_samples": 0}, "eval_samples"),
    ({"name": "imagenet21k"}, "dataset.name"),
])
def test_bad_arguments(kwargs, what):
    with pytest.raises(DLASError) as err:
        ImageNetDataModule(**{"data_dir": "/x", **kwargs})
    assert what in str(err.value) and err.value.layer == "dataset"


def test_through_the_config(make_cfg, root):
    cfg = make_cfg("deploy", ["dataset=imagenet", f"dataset.data_dir={root}", "dataset.num_classes=3",
                              "dataset.eval_samples=5"])
    assert cfg.model.num_classes == 3 and cfg.model.image_size == 224
    dm = hydra.utils.instantiate(cfg.dataset)
    x, y = dm.eval_arrays()
    assert x.shape == (5, 3, 224, 224) and np.array_equal(blue_label(x), y)
    with pytest.raises(DLASError, match="num_classes=1000"):
        hydra.utils.instantiate(make_cfg("deploy", ["dataset=imagenet", f"dataset.data_dir={root}"]).dataset).setup()
