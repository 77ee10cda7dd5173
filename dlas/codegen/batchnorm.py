"""Batch norms into Relax with their own epsilon.

TVM 0.27's ExportedProgram importer sends `aten.batch_norm.default` to a branch written for
the decomposed `_native_batch_norm_legit*` forms, which reads `momentum` from position 5
and `eps` from position 6. `batch_norm`'s signature is (input, weight, bias, running_mean,
running_var, training, momentum, eps, cudnn_enabled): the importer takes `training` as the
momentum and the momentum (0.1) as epsilon. Only undecomposed programs reach that branch
(DLAS imports every program with `run_ep_decomposition=False`: frontend.py); in int8 ones only
batch norms PT2E could not fold into a conv survive there (densenet's after each
concatenation), so densenet161's int8 model ran with epsilon 0.1 instead of 1e-5
(research/int8-numerics.md; fixed upstream by apache/tvm#18486, not in the 0.27 wheel).

`convert_map` reads every argument by its real position; `check_epsilons` compares each
imported batch norm's epsilon with its torch node's, so a misread is an error at import
instead of a logit mismatch far downstream.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import fx
from tvm import relax
from tvm.ir import Op

from dlas.errors import DLASError

BATCH_NORM = "batch_norm.default"
# torch ops that import as one relax.nn.batch_norm each (the inference forms; a training
# batch norm in an exported inference graph is refused below)
BATCH_NORM_OPS = ("batch_norm", "_native_batch_norm_legit_no_training",
                  "_native_batch_norm_legit_functional", "_native_batch_norm_legit")


def _arguments(node: fx.Node) -> dict:
    """The node's arguments by name, defaults filled in, from the op's own schema."""
    schema = node.target._schema
    bound = dict(zip((a.name for a in schema.arguments), node.args))
    for arg in schema.arguments:
        if arg.name not in bound:
            bound[arg.name] = node.kwargs.get(arg.name, arg.default_value)
    return bound


def batch_norm(node: fx.Node, importer) -> relax.Var:
    """`aten.batch_norm.default` (inference) -> relax.nn.batch_norm with the node's eps."""
    a = _arguments(node)
    if a["training"]:
        raise DLASError("batch_norm training", True, "False (an inference graph)",
                        layer="codegen", reason=f"node {node.name} normalises with batch "
                                                "statistics; export the model in eval mode")
    x = importer.env[a["input"]]
    channels = int(importer.shape_of(x)[1])
    dtype = x.ty.dtype.dtype

    def operand(name: str, fill: float) -> relax.Expr:
        value = a[name]
        return importer.env[value] if value is not None else \
            relax.const(np.full(channels, fill), dtype=dtype)

    bn = importer.block_builder.emit(relax.op.nn.batch_norm(
        x, operand("weight", 1.0), operand("bias", 0.0),
        operand("running_mean", 0.0), operand("running_var", 1.0), axis=1,
        epsilon=float(a["eps"]), center=a["bias"] is not None, scale=a["weight"] is not None,
        momentum=float(a["momentum"]), training=False))
    return importer.block_builder.emit(bn[0])


def convert_map() -> dict:
    """Entries for the importer's `custom_convert_map`."""
    return {BATCH_NORM: batch_norm}


def torch_epsilons(program: torch.export.ExportedProgram) -> list[tuple[str, float]]:
    """(node name, eps) of each batch norm of the program, in graph order."""
    found = []
    for node in program.graph.nodes:
        name = getattr(node.target, "__name__", "") if node.op == "call_function" else ""
        if name.split(".")[0] in BATCH_NORM_OPS:
            found.append((node.name, float(_arguments(node)["eps"])))
    return found


def relax_epsilons(mod) -> list[float]:
    """The epsilon of each relax.nn.batch_norm of `mod`'s main, in binding order."""
    found = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, Op) \
                and expr.op.name == "relax.nn.batch_norm":
            found.append(float(expr.attrs.epsilon))

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def check_epsilons(program: torch.export.ExportedProgram, mod) -> None:
    """Raise (layer codegen) unless the imported batch norms have the program's epsilons."""
    want, got = torch_epsilons(program), relax_epsilons(mod)
    if len(want) != len(got):
        raise DLASError("imported batch norms", len(got), f"{len(want)}, one per torch node",
                        layer="codegen")
    for (name, eps), imported in zip(want, got):
        if not np.isclose(eps, imported, rtol=1e-6, atol=0):
            raise DLASError("imported batch_norm epsilon", imported, f"{eps:g} as in torch",
                            layer="codegen", reason=f"the Relax importer misread node {name}")
