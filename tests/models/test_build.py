from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dlas.errors import DLASError, Unsupported
from dlas.models import MODELS, make_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_small_input_logits(name):
    torch.manual_seed(0)
    net = make_model(name, num_classes=7, image_size=32).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def _first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def _feature_side(net: nn.Module, size: int) -> int:
    """Spatial side of the last 4-d activation before global pooling."""
    sides = []
    hooks = [m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sides[-1]


def test_cifar_stems():
    r = make_model("resnet18", 10, 32)
    assert _first_conv(r).kernel_size == (3, 3) and _first_conv(r).stride == (1, 1)
    assert isinstance(r.maxpool, nn.Identity) and _feature_side(r, 32) == 4
    m = make_model("mobilenetv2", 10, 32)
    assert _first_conv(m).stride == (1, 1) and _feature_side(m, 32) == 4
    # ImageNet-sized input keeps the torchvision definitions: overall stride 32
    r224 = make_model("resnet18", 10, 224)
    assert _first_conv(r224).kernel_size == (7, 7) and isinstance(r224.maxpool, nn.MaxPool2d)
    assert _feature_side(r224, 224) == 7


def test_imagenet_size_logits():
    net = make_model("mobilenetv2", num_classes=1000, image_size=224).eval()
    assert _first_conv(net).stride == (2, 2)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_unknown_name():
    with pytest.raises(DLASError) as err:
        make_model("resnet19", 10, 32)
    msg = str(err.value)
    assert "resnet19" in msg and "resnet18" in msg and "mobilenetv2" in msg and err.value.layer == "model"


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"image_size": 4}, {"num_classes": "10"}])
def test_bad_sizes(kwargs):
    args = {"name": "resnet18", "num_classes": 10, "image_size": 32, **kwargs}
    with pytest.raises(DLASError, match="model."):
        make_model(**args)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = make_model("mobilenetv2", 10, 32).eval()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    torch.manual_seed(2)
    again = make_model("mobilenetv2", 10, 32, weights=str(path)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)
    # a Lightning checkpoint of the Classifier (keys prefixed "net.") loads too
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "l.ckpt")
    again = make_model("mobilenetv2", 10, 32, weights=str(tmp_path / "l.ckpt")).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(DLASError, match="no such file"):
        make_model("resnet18", 10, 32, weights=str(tmp_path / "missing.pt"))
    torch.save(make_model("resnet18", 5, 32).state_dict(), tmp_path / "five.pt")
    with pytest.raises(DLASError, match="five.pt"):
        make_model("resnet18", 10, 32, weights=str(tmp_path / "five.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DLASError, match="cannot be read"):
        make_model("resnet18", 10, 32, weights=str(tmp_path / "junk.pt"))


def test_torchvision_weight_names():
    with pytest.raises(DLASError, match="IMAGENET1K_V1"):
        make_model("resnet18", 1000, 224, weights="NOPE")
    # pretrained ImageNet weights do not fit a CIFAR stem or another head size
    with pytest.raises(Unsupported, match="num_classes=1000"):
        make_model("resnet18", 10, 32, weights="DEFAULT")


def test_torchvision_download_failure_is_a_dlas_error(monkeypatch, tmp_path):
    # Offline machine: an empty hub cache and a download that cannot connect.
    import urllib.error

    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DLASError, match="download of https://"):
        make_model("resnet18", 1000, 224, weights="IMAGENET1K_V1")
