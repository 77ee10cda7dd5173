"""How a compressed model is kept in the artifact store, so that loading it runs no code.

Outputs folders are copied between colleagues and cluster nodes, so a stored file is data,
never a program: nothing here unpickles more than tensors (`torch.load(weights_only=True)`).
- An nn.Module: its tensors (`weights.pt`, a state_dict) and its structure
  (`structure.json`: the plain attributes of every module, e.g. channel counts after channel
  pruning). Loading builds the architecture from the config, sets the attributes, gives each
  parameter the stored shape and dtype (pruned channels, float16) and loads the tensors.
- An int8 graph (a torch.export GraphModule): the ExportedProgram as torch.export serializes
  it (`program.json`, the graph as JSON) with its tensors in weights-only files beside it.
  `torch.export.load` is not used: it falls back to full unpickling for tensors it cannot
  read weights-only.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from dlas.errors import first_line
from dlas.store.artifacts import ArtifactError, load_tensors, read_json

WEIGHTS, STRUCTURE = "weights.pt", "structure.json"
PROGRAM = "program.json"
PROGRAM_TENSORS = {"state_dict": "program_weights.pt", "constants": "program_constants.pt",
                   "example_inputs": "program_inputs.pt"}
_PLAIN = (bool, int, float, str, type(None))


def save_model(model: nn.Module, folder: Path, example: torch.Tensor) -> list[Path]:
    """Write `model` into `folder`; returns the files written."""
    folder = Path(folder)
    if isinstance(model, torch.fx.GraphModule):
        return _save_program(model, folder, example)
    structure = {name: _plain_attributes(module) for name, module in model.named_modules()}
    (folder / STRUCTURE).write_text(json.dumps(structure))
    torch.save(model.state_dict(), folder / WEIGHTS)
    return [folder / STRUCTURE, folder / WEIGHTS]


def load_model(folder: Path, architecture: Callable[[], nn.Module]) -> nn.Module:
    """The model stored in `folder`, in eval mode. `architecture()` builds the (unpruned,
    float) model the config names; only a stored nn.Module needs it."""
    folder = Path(folder)
    if (folder / PROGRAM).is_file():
        return _load_program(folder)
    structure = read_json(folder / STRUCTURE)
    state = load_tensors(folder / WEIGHTS)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(str(folder / WEIGHTS), reason="holds no state_dict of tensors")
    net = architecture()
    try:
        _restore_structure(net, structure, state)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, AttributeError, TypeError) as exc:
        raise ArtifactError(str(folder), reason="does not fit the configured architecture: "
                               + first_line(exc)) from exc
    return net.eval()


def _plain_attributes(module: nn.Module) -> dict:
    """The module's own settings that are plain values (sizes, groups, eps...), JSON-ready."""
    out = {}
    for attr, value in vars(module).items():
        if attr.startswith("_") or attr == "training":
            continue
        if isinstance(value, _PLAIN) or (isinstance(value, tuple | list)
                                         and all(isinstance(v, _PLAIN) for v in value)):
            out[attr] = value
    return out


def _restore_structure(net: nn.Module, structure: dict, state: dict) -> None:
    modules = dict(net.named_modules())
    if not isinstance(structure, dict) or set(structure) != set(modules):
        raise KeyError("the stored modules differ from the architecture's")
    for name, attrs in structure.items():
        module = modules[name]
        for attr, value in attrs.items():
            current = getattr(module, attr, None)
            if attr not in vars(module) or not isinstance(current, _PLAIN + (tuple, list)):
                continue  # only settings the architecture itself has, as plain values
            setattr(module, attr, tuple(value) if isinstance(current, tuple) else value)
    for full, tensor in state.items():
        owner, _, leaf = full.rpartition(".")
        module = modules.get(owner)
        if module is None:
            raise KeyError(f"no module {owner!r} for tensor {full!r}")
        if leaf in module._parameters and module._parameters[leaf] is not None:
            old = module._parameters[leaf]
            if old.shape != tensor.shape or old.dtype != tensor.dtype:
                module._parameters[leaf] = nn.Parameter(torch.empty_like(tensor),
                                                        requires_grad=old.requires_grad)
        elif leaf in module._buffers and module._buffers[leaf] is not None:
            old = module._buffers[leaf]
            if old.shape != tensor.shape or old.dtype != tensor.dtype:
                module._buffers[leaf] = torch.empty_like(tensor)


def _save_program(model: torch.fx.GraphModule, folder: Path, example: torch.Tensor) -> list[Path]:
    from torch._export.serde.serialize import serialize

    from dlas.compression.int8 import export_dynamic_batch

    artifact = serialize(export_dynamic_batch(model, example))
    (folder / PROGRAM).write_bytes(artifact.exported_program)
    written = [folder / PROGRAM]
    for part, name in PROGRAM_TENSORS.items():
        (folder / name).write_bytes(getattr(artifact, part))  # torch.save's bytes
        written.append(folder / name)
    return written


def _load_program(folder: Path) -> torch.fx.GraphModule:
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    from dlas.compression.int8 import allow_train_eval, pt2e_api

    tensors = {}
    for part, name in PROGRAM_TENSORS.items():
        path = folder / name
        value = {} if path.is_file() and not path.stat().st_size else load_tensors(path)
        if not isinstance(value, dict | tuple):
            raise ArtifactError(str(folder / name), reason="holds no tensors")
        tensors[part] = value  # the deserializer takes loaded containers as they are
    pt2e_api()  # registers the quantized_decomposed ops the program refers to
    try:
        program = deserialize(SerializedArtifact((folder / PROGRAM).read_bytes(), **tensors))
    except Exception as exc:  # a damaged or foreign graph: torch's errors come in many types
        raise ArtifactError(str(folder / PROGRAM), reason="not a readable exported program: "
                               + first_line(exc, 200)) from exc
    model = allow_train_eval(program.module())
    model.eval()
    return model
