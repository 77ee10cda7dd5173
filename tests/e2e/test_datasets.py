"""deploy.run on the generated CIFAR-10 and ImageNet folders: the real loaders through every stage."""
from __future__ import annotations

import pytest

import deploy
from tests.data.fakedata import make_cifar10, make_imagenet

pytestmark = pytest.mark.slow


def test_point_on_cifar10_folder(make_cfg, tmp_path):
    root = make_cifar10(tmp_path / "cifar", n_train=60, n_test=24)
    cfg = make_cfg(overrides=["dataset=cifar10", f"dataset.data_dir={root}", "dataset.verify=false",
                              "dataset.batch_size=16", "debug=fast", "model=resnet18"])
    row = deploy.run(cfg)
    m = row["metrics"]
    assert row["status"] == "ok", row["reason"]
    assert row["dataset"] == "cifar10"
    assert m["eval_samples"] == 24  # the whole test batch
    assert m["logit_rel_diff"] < 1e-3
    assert abs(m["accuracy_compiled"] - m["accuracy_torch"]) <= 1 / 24
    assert m["latency_ms_median"] > 0


def test_point_on_imagenet_folder(make_cfg, tmp_path):
    # 32 px crops and 3 classes keep it fast; the code path (ImageFolder, crops, subset) is ImageNet's
    root = make_imagenet(tmp_path / "imagenet", classes=3, per_class=6, val_per_class=4)
    cfg = make_cfg(overrides=["dataset=imagenet", f"dataset.data_dir={root}", "dataset.num_classes=3",
                              "dataset.image_size=32", "dataset.resize_size=36",
                              "dataset.eval_samples=10", "dataset.batch_size=6", "debug=fast"])
    row = deploy.run(cfg)
    m = row["metrics"]
    assert row["status"] == "ok", row["reason"]
    assert row["dataset"] == "imagenet" and m["eval_samples"] == 10
    assert m["logit_rel_diff"] < 1e-3
    assert abs(m["accuracy_compiled"] - m["accuracy_torch"]) <= 1 / 10
