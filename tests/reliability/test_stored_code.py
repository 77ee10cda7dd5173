"""No stored file runs code when loaded: a planted pickle in each artifact kind is refused
with its path, the stage computes the output again, and a compressed model round-trips
through the store (pruned channels, float16, int8) without full unpickling."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from dlas.compression.channel import ChannelPruning
from dlas.compression.storage import PROGRAM_TENSORS, WEIGHTS, load_model, save_model
from dlas.stages.force import NONE
from dlas.stages.produce import produce
from dlas.store.artifacts import ArtifactError, ArtifactStore, load_tensors
from tests.compression.test_int8 import quantize, small_cnn
from tests.reliability.payload import plant


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


EXAMPLE = torch.zeros(1, 3, 16, 16)


def test_channel_pruned_and_float16_models_round_trip_without_pickles(tmp_path):
    pruned = ChannelPruning(ratio=0.5).apply(net(), type("C", (), {"example": EXAMPLE})())
    assert pruned[0].out_channels == 8
    x = torch.randn(2, 3, 16, 16)
    (tmp_path / "p").mkdir()
    save_model(pruned, tmp_path / "p", EXAMPLE)
    back = load_model(tmp_path / "p", architecture=net)  # rebuilt unpruned, then reshaped
    assert back[0].out_channels == 8 and back[0].weight.shape == (8, 3, 3, 3)
    assert torch.equal(back(x), pruned(x))

    half = net().half()
    (tmp_path / "h").mkdir()
    save_model(half, tmp_path / "h", EXAMPLE)
    back = load_model(tmp_path / "h", architecture=net)
    assert back[0].weight.dtype == torch.float16
    assert torch.equal(back(x.half()), half(x.half()))


def test_a_model_of_another_architecture_is_refused_with_its_path(tmp_path):
    save_model(net(), tmp_path, EXAMPLE)
    with pytest.raises(ArtifactError, match="does not fit the configured architecture"):
        load_model(tmp_path, architecture=lambda: nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("kind", ["weights", "int8 program", "old whole-model pickle"])
def test_a_planted_pickle_in_a_compressed_model_does_not_run(kind, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "compressed"
    folder.mkdir()
    if kind == "weights":
        save_model(net(), folder, EXAMPLE)
        target = folder / WEIGHTS
    elif kind == "int8 program":
        save_model(quantize(small_cnn()), folder, EXAMPLE)
        target = folder / PROGRAM_TENSORS["state_dict"]
    else:  # what earlier versions stored: a whole pickled model
        target = folder / "model.pt"
    plant(target, marker)
    with pytest.raises(ArtifactError) as err:
        load_model(folder, architecture=net)
    assert not marker.exists()
    assert str(folder) in str(err.value) and "weights_only=False" not in str(err.value)
    if kind != "old whole-model pickle":  # (that one is refused as not of this format)
        assert "Unsupported global: GLOBAL exec" in str(err.value)


def test_random_bytes_name_the_file_without_advising_full_unpickling(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ArtifactError) as err:
        load_tensors(path)
    message = str(err.value)
    assert str(path) in message and "weights_only=False" not in message
    assert "\n" not in message


def test_an_unusable_stored_output_is_computed_again(tmp_path, caplog):
    """The stage flow: a planted pickle (or any damage) is said with its path, the output is
    recomputed and replaces the bad one; the payload never runs."""
    cfg = OmegaConf.create({"paths": {"artifacts": str(tmp_path / "artifacts")}})
    marker = tmp_path / "pwned"
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.ones(2)}

    def save(output, folder):
        torch.save(output, folder / "model.pt")

    def load(folder):
        return load_tensors(folder / "model.pt")

    produce(cfg, "train", "k", force=NONE, load=load, compute=compute, save=save)
    stored = ArtifactStore(cfg.paths.artifacts).path("trained", "k") / "model.pt"
    plant(stored, marker)
    with caplog.at_level(logging.WARNING):
        out, reused = produce(cfg, "train", "k", force=NONE, load=load, compute=compute, save=save)
    assert not reused and len(calls) == 2 and not marker.exists()
    assert str(stored) in caplog.text and "computing it again" in caplog.text
    assert torch.equal(load_tensors(stored)["w"], torch.ones(2))  # replaced by the good one
