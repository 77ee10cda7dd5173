"""Layer-by-layer divergence of a compiled model from its PyTorch model (see README,
"Divergence report"): `python -m dlas.codegen.divergence layer=value ...`."""
import torch

from dlas.codegen.divergence.compare import (Row, compare, first_departure,
                                              first_layer_departure, report)
from dlas.codegen.divergence.probes import Probe, probe_graph
from dlas.codegen.divergence.run import compile_graph, compiled_outputs, reference_outputs
from dlas.models.build import input_dtype

__all__ = ["Probe", "Row", "compare", "compile_graph", "compiled_outputs", "divergence",
           "first_departure", "first_layer_departure", "probe_graph", "reference_outputs", "report"]


def divergence(net, x, primitive, codegen, target, *, fmt: str, rtol: float, hardware=None,
               compiled_net=None) -> list[Row]:
    """Rows of `net`'s probes on inputs `x` (float32 [N, C, H, W]): PyTorch vs `net`
    compiled with `codegen`/`primitive` for `target`, run on `hardware` (None: here, in
    process). `compiled_net` (default `net`) is what gets compiled: a test plants a fault
    in it and checks the report finds it."""
    example = torch.from_numpy(x[:1])  # the compiled model takes float32 (float16 too)
    typed = example.to(input_dtype(net) or torch.float32)
    gm, probes = probe_graph(net, typed, fmt)
    compiled_gm = gm if compiled_net is None else probe_graph(compiled_net, typed, fmt)[0]
    executable = compile_graph(compiled_gm, example, primitive, codegen, target, hardware)
    # output 0 is the model's own output; the probes follow
    compiled = compiled_outputs(executable, x, hardware)[1:]
    return compare(probes, reference_outputs(gm, x, probes, compiled), compiled, rtol)
