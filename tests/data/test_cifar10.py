"""torchvision's CIFAR-10 loader reading a generated cifar-10-batches-py/ folder."""
from __future__ import annotations

import pickle

import hydra
import numpy as np
import pytest
import torch

from dlas.data import CIFAR10DataModule
from dlas.data.cifar10 import MEAN, STD
from dlas.errors import DLASError
from tests.data.fakedata import make_cifar10


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_cifar10(tmp_path_factory.mktemp("cifar"), n_train=100, n_test=20)


def red_label(x: np.ndarray) -> np.ndarray:
    """Recover the label from the red channel of normalised images (fakedata: mean ~ 20*label+7.5)."""
    red = (x[:, 0] * STD[0] + MEAN[0]) * 255
    return np.rint((red.mean(axis=(1, 2)) - 7.5) / 20).astype(np.int64)


def test_splits_shapes_and_labels(root):
    dm = CIFAR10DataModule(data_dir=str(root), verify=False, batch_size=16, val_fraction=0.1)
    dm.setup("fit")
    assert dm.input_shape == (3, 32, 32)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 20)
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    assert dm.test_set.classes[3] == "cat"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # eval arrays come from the test batch by default, images still paired with their labels
    xt, yt = dm.eval_arrays()
    assert xt.shape == (20, 3, 32, 32) and xt.dtype == np.float32 and xt.flags.c_contiguous
    np.testing.assert_array_equal(yt, np.arange(20) % 10)
    np.testing.assert_array_equal(red_label(xt), yt)
    vx, vy = next(iter(dm.test_dataloader()))
    np.testing.assert_array_equal(xt[:16], vx.numpy())
    np.testing.assert_array_equal(yt[:16], vy.numpy())


def test_val_split_and_determinism(root):
    a = CIFAR10DataModule(data_dir=str(root), verify=False, eval_split="val", val_fraction=0.2)
    b = CIFAR10DataModule(data_dir=str(root), verify=False, eval_split="val", val_fraction=0.2)
    xa, ya = a.eval_arrays()
    xb, yb = b.eval_arrays(limit=5)
    assert len(ya) == 20 and len(yb) == 5
    np.testing.assert_array_equal(xa[:5], xb)
    np.testing.assert_array_equal(red_label(xa), ya)
    # the val samples are the train batches' own, at the split's indices (labels = index % 10)
    np.testing.assert_array_equal(ya, np.asarray(a.val_set.indices) % 10)
    c = CIFAR10DataModule(data_dir=str(root), verify=False, eval_split="val", val_fraction=0.2, seed=1)
    c.setup()
    assert c.val_set.indices != a.val_set.indices
    assert CIFAR10DataModule(data_dir=str(root), verify=False, eval_samples=7).eval_arrays()[0].shape[0] == 7


def test_train_augmentation_is_crop_and_flip(root):
    dm = CIFAR10DataModule(data_dir=str(root), verify=False)
    dm.setup()
    i = dm.train_set.indices[0]
    plain = dm.val_set.dataset[i][0]
    torch.manual_seed(0)
    augmented = torch.stack([dm.train_set[0][0] for _ in range(8)])
    assert augmented.shape == (8, 3, 32, 32)
    assert not all(torch.equal(a, plain) for a in augmented)  # augmentation moved pixels
    # each one is a shifted (by <= 4 px, zero padded), maybe mirrored copy: its inner 24x24
    # is a 24x24 window of the plain image or of its mirror
    for a in augmented:
        assert any(torch.equal(a[:, 4:28, 4:28], img[:, dy:dy + 24, dx:dx + 24])
                   for img in (plain, plain.flip(-1)) for dy in range(9) for dx in range(9))
    no_aug = CIFAR10DataModule(data_dir=str(root), verify=False, augment=False)
    no_aug.setup()
    assert torch.equal(no_aug.train_set[0][0], plain)


def test_resize_to_other_image_size(root):
    dm = CIFAR10DataModule(data_dir=str(root), verify=False, image_size=64)
    x, _ = dm.eval_arrays(limit=2)
    assert dm.input_shape == (3, 64, 64) and x.shape == (2, 3, 64, 64)
    assert next(iter(dm.train_dataloader()))[0].shape[1:] == (3, 64, 64)


def test_md5_check_rejects_a_non_original_copy(root):
    with pytest.raises(DLASError, match="verify=false") as err:
        CIFAR10DataModule(data_dir=str(root), verify=True).setup()
    assert "cifar-10-batches-py" in str(err.value) and err.value.layer == "dataset"


def test_missing_and_malformed_folders(tmp_path, root):
    with pytest.raises(DLASError, match="download=true") as err:
        CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"), verify=False).setup()
    assert str(tmp_path / "nowhere") in str(err.value) and "data_batch_1" in str(err.value)
    bad = make_cifar10(tmp_path / "bad", n_train=10, n_test=5)
    (bad / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DLASError, match="lacks test_batch"):
        CIFAR10DataModule(data_dir=str(bad), verify=False).setup()
    (bad / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DLASError, match="malformed"):
        CIFAR10DataModule(data_dir=str(bad), verify=False).setup()
    with open(bad / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"labels": [0, 1]}, f)  # no "data" key
    with pytest.raises(DLASError, match="malformed"):
        CIFAR10DataModule(data_dir=str(bad), verify=False).setup()


@pytest.mark.parametrize("kwargs, what", [
    ({"data_dir": None}, "data_dir"), ({"num_classes": 100}, "num_classes"),
    ({"eval_split": "train"}, "eval_split"), ({"val_fraction": 1.5}, "val_fraction"),
    ({"eval_samples": 0}, "eval_samples"), ({"name": "cifar100"}, "dataset.name"),
])
def test_bad_arguments(kwargs, what):
    kwargs = {"data_dir": "/x", **kwargs}
    with pytest.raises(DLASError) as err:
        CIFAR10DataModule(**kwargs)
    assert what in str(err.value) and err.value.layer == "dataset"


def test_through_the_config(make_cfg, root):
    cfg = make_cfg("deploy", ["dataset=cifar10", f"dataset.data_dir={root}", "dataset.verify=false",
                              "dataset.batch_size=8"])
    assert cfg.model.num_classes == 10 and cfg.model.image_size == 32
    dm = hydra.utils.instantiate(cfg.dataset)
    assert isinstance(dm, CIFAR10DataModule)
    x, y = dm.eval_arrays(limit=4)
    assert x.shape == (4, 3, 32, 32)
    missing = make_cfg("deploy", ["dataset=cifar10"])
    with pytest.raises(DLASError, match="cifar-10-batches-py"):
        hydra.utils.instantiate(missing.dataset).setup()
