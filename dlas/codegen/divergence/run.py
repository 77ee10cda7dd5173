"""Running the widened graph: in PyTorch, and compiled, in process or through RPC."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import tvm
from torch import fx
from tvm import relax

from dlas.codegen.divergence.probes import Probe
from dlas.codegen.frontend import import_model
from dlas.errors import DLASError
from dlas.models.build import input_dtype


def _stack(per_sample: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-sample output lists -> one array per output, samples concatenated on axis 0."""
    return [np.concatenate(outs) for outs in zip(*per_sample, strict=True)]


def reference_outputs(gm: fx.GraphModule, x: np.ndarray, probes: list[Probe],
                      compiled: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The probes' values in PyTorch (float16 as float32), one sample at a time (the graph is
    exported for batch 1, as the compiled model is). With the `compiled` probe values, an
    int8 layer probe is PyTorch's layer applied to the compiled int8 input (Probe.input_probe)."""
    dtype = input_dtype(gm) or torch.float32
    index = {p.node: i for i, p in enumerate(probes)}
    nodes = {n.name: n for n in gm.graph.nodes}
    per_sample = []
    with torch.no_grad():
        for i in range(len(x)):
            recorder = _Recorder(gm)
            recorder.run(torch.from_numpy(x[i:i + 1]).to(dtype))
            values = []
            for p in probes:
                value = recorder.env[nodes[p.node]]
                if compiled is not None and p.input_probe is not None:
                    fed = torch.from_numpy(compiled[index[p.input_probe]][i:i + 1])
                    value = _forced(nodes[p.node], nodes[p.input_probe], fed, recorder.env)
                values.append(value.float().numpy() if value.dtype == torch.float16
                              else value.numpy())
            per_sample.append(values)
    return _stack(per_sample)


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps every node's value (self.env)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)

    def run(self, *args):
        self.env = {}
        return super().run(*args, initial_env=self.env)


def _forced(layer: fx.Node, quantized: fx.Node, value: torch.Tensor, env: dict) -> torch.Tensor:
    """`layer` recomputed with `value` in place of the int8 tensor `quantized` it reads."""
    local = dict(env)
    local[quantized] = value
    dequantize = layer.args[0]
    local[dequantize] = dequantize.target(*fx.node.map_arg(dequantize.args, local.__getitem__),
                                          **fx.node.map_arg(dequantize.kwargs, local.__getitem__))
    return layer.target(*fx.node.map_arg(layer.args, local.__getitem__),
                        **fx.node.map_arg(layer.kwargs, local.__getitem__))


def compile_graph(gm: torch.nn.Module, example: torch.Tensor, primitive, codegen, target,
                  hardware=None) -> tvm.runtime.Executable:
    """The widened graph through DLAS's import and the point's codegen and primitive."""
    mod = import_model(gm, example)
    try:
        return codegen.build(mod, primitive, target, hardware=hardware).executable
    except DLASError as err:  # a primitive's legalization error loses its layer in TVM
        err.layer = err.layer or "primitive"
        raise


def _outputs(vm: relax.VirtualMachine, x, dev) -> list[np.ndarray]:
    # set_input/invoke_stateful/get_outputs: the VM's way to return a tuple over RPC
    vm.set_input("main", tvm.runtime.tensor(x, dev))
    vm.invoke_stateful("main")
    return [o.numpy() for o in vm.get_outputs("main")]


def compiled_outputs(executable, x: np.ndarray, hardware=None) -> list[np.ndarray]:
    """Outputs of the compiled widened graph: on this machine's CPU in process
    (`hardware` None), or on `hardware` through its RPC session as deploy measures it."""
    if hardware is None:
        vm = relax.VirtualMachine(executable, tvm.cpu())
        return _stack([_outputs(vm, x[i:i + 1], tvm.cpu()) for i in range(len(x))])
    with tempfile.TemporaryDirectory(prefix="dlas-divergence-") as tmp, \
            hardware.session() as session:
        lib = hardware.export(executable, Path(tmp) / "probes.so")
        if getattr(session, "local", None) is not None:  # our loopback server: same files
            rlib = session.load_module(str(lib.resolve()))
        else:
            session.upload(str(lib), lib.name)
            rlib = session.load_module(lib.name)
        dev = session.device(hardware.runtime_device, 0)
        vm = relax.VirtualMachine(rlib, dev)
        return _stack([_outputs(vm, x[i:i + 1], dev) for i in range(len(x))])
