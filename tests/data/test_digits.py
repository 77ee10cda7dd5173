from __future__ import annotations

import numpy as np
import pytest
import torch

from dlas.data import DigitsDataModule
from dlas.errors import DLASError


@pytest.fixture(scope="module")
def dm() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=32)
    dm.setup("fit")
    return dm


def test_shapes_and_split_sizes(dm):
    assert dm.num_classes == 10 and dm.input_shape == (3, 32, 32)
    assert len(dm.train_set) + len(dm.val_set) == 1797
    assert len(dm.val_set) == 360  # ceil(0.2 * 1797), as train_test_split rounds the test side up
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # normalised to [-1, 1]; the three channels are the same grey image
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.max() > 0.5
    assert torch.equal(x[:, 0], x[:, 2])


def test_split_is_stratified_and_disjoint(dm):
    train = torch.stack([s[0] for s in dm.train_set]).flatten(1)
    val = torch.stack([s[0] for s in dm.val_set]).flatten(1)
    # no val image appears in train (digits has a few exact duplicates; allow only those)
    dup = (torch.cdist(val[:60], train) < 1e-6).any(1).sum()
    assert dup <= 1
    counts_val = np.bincount([int(s[1]) for s in dm.val_set], minlength=10)
    counts_all = np.bincount([int(s[1]) for s in dm.train_set], minlength=10) + counts_val
    np.testing.assert_allclose(counts_val / counts_val.sum(), counts_all / counts_all.sum(), atol=0.01)


def test_deterministic_split_and_order():
    a, b = DigitsDataModule(seed=0), DigitsDataModule(seed=0)
    xa, ya = a.eval_arrays()
    xb, yb = b.eval_arrays()
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    ba, bb = next(iter(a.train_dataloader())), next(iter(b.train_dataloader()))
    assert torch.equal(ba[1], bb[1])
    _, yc = DigitsDataModule(seed=1).eval_arrays()
    assert not np.array_equal(ya, yc)


def test_eval_arrays_match_val_loader(dm):
    x, y = dm.eval_arrays(limit=40)
    assert x.shape == (40, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (40,) and y.dtype == np.int64
    vx, vy = next(iter(dm.val_dataloader()))
    np.testing.assert_array_equal(x[:32], vx.numpy())
    np.testing.assert_array_equal(y[:32], vy.numpy())
    assert len(dm.eval_arrays(limit=10_000)[1]) == 360
    few = DigitsDataModule(eval_samples=7)  # deploy's accuracy pass on a slow target
    np.testing.assert_array_equal(few.eval_arrays()[1], y[:7])
    assert len(few.eval_arrays(limit=9)[1]) == 9


def test_other_image_size():
    dm = DigitsDataModule(image_size=8, val_fraction=0.5, batch_size=7)
    x, y = dm.eval_arrays(limit=3)
    assert dm.input_shape == (3, 8, 8) and x.shape == (3, 3, 8, 8)
    # at 8x8 the bilinear resize is the identity: pixel values are the original ones / 16, normalised
    from sklearn.datasets import load_digits
    raw = load_digits().images.astype(np.float32) / 16
    assert any(np.allclose(x[0, 0], (img - 0.5) / 0.5) for img in raw[:30])


@pytest.mark.parametrize("kwargs, what", [
    ({"val_fraction": 0.0}, "val_fraction"), ({"val_fraction": 1.0}, "val_fraction"),
    ({"val_fraction": "x"}, "val_fraction"), ({"image_size": 4}, "image_size"),
    ({"batch_size": 0}, "batch_size"), ({"num_classes": 5}, "num_classes"),
    ({"num_workers": -1}, "num_workers"), ({"image_size": 32.0}, "image_size"),
    ({"name": "mnist"}, "dataset.name"), ({"eval_samples": 0}, "dataset.eval_samples"),
])
def test_bad_arguments(kwargs, what):
    with pytest.raises(DLASError) as err:
        DigitsDataModule(**kwargs)
    assert err.value.layer == "dataset" and what in str(err.value)
    assert repr(next(iter(kwargs.values()))) in str(err.value)


def test_bad_eval_limit(dm):
    with pytest.raises(DLASError, match="limit"):
        dm.eval_arrays(limit=0)
