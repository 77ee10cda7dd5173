"""Initial weights for a built model: a local state_dict checkpoint or a torchvision name."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm

from dlas.errors import DLASError, Unsupported, first_line


def _state_dict_of(obj) -> dict:
    # Accept a plain state_dict and Lightning checkpoints of dlas.training.Classifier (keys "net.*").
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if obj and all(k.startswith("net.") for k in obj):
            obj = {k[len("net."):]: v for k, v in obj.items()}
    if not isinstance(obj, dict):
        raise DLASError("model.weights", type(obj).__name__, "a state_dict (dict of tensors)",
                        reason="checkpoint holds no state_dict", layer="model")
    return obj


def load_checkpoint(net: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict saved with torch.save(net.state_dict(), path) into `net`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DLASError("model.weights", str(path), "an existing checkpoint file or a torchvision "
                        "weights name such as DEFAULT", reason="no such file", layer="model")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a checkpoint"
        raise DLASError("model.weights", str(path), "a file written by torch.save(state_dict)",
                        reason=f"cannot be read: {first_line(exc)}", layer="model") from exc
    try:
        net.load_state_dict(_state_dict_of(obj))
    except RuntimeError as exc:
        raise DLASError("model.weights", str(path), "a checkpoint of the same model and num_classes",
                        reason=first_line(exc) + " " + _first_problem(exc),
                        layer="model") from exc
    return net


def _first_problem(exc: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
    return lines[0][:200] if lines else ""


def load_torchvision(net: nn.Module, tv_name: str, weights: str, num_classes: int,
                     small_input: bool) -> nn.Module:
    """Load torchvision pretrained `weights` (e.g. DEFAULT, IMAGENET1K_V1); downloads once
    into the torch hub cache, so an offline machine needs the file there already."""
    enum = tvm.get_model_weights(tv_name)
    try:
        entry = enum[weights]
    except KeyError:
        raise DLASError("model.weights", weights, ["DEFAULT", *enum.__members__, "a checkpoint path"],
                        reason="neither a file nor a torchvision weights name", layer="model") from None
    classes = len(entry.meta["categories"])
    if small_input or num_classes != classes:
        raise Unsupported("model.weights", weights, reason=f"torchvision {tv_name} weights need "
                          f"num_classes={classes} and image_size > 64 (ImageNet stem), got "
                          f"num_classes={num_classes}", layer="model")
    try:
        state = entry.get_state_dict(progress=False, check_hash=False)
    except OSError as exc:  # URLError is an OSError: no network and nothing in the cache
        raise DLASError("model.weights", weights, f"a file under {torch.hub.get_dir()} or network "
                        "access", reason=f"download of {entry.url} failed ({exc}); put the file "
                        "in the torch hub cache or use a local checkpoint", layer="model") from exc
    net.load_state_dict(state)
    return net
