"""Which tensors of a model the divergence report compares, and a graph that returns them.

The model is captured with torch.export and its graph's output is widened to
`(output, *probes)`; the same widened graph runs in PyTorch (the reference) and is compiled
by the point's codegen (the probes become extra Relax outputs), so both sides compute
exactly the model's operations and name the probes alike.

Probes, in graph order:
- int8 models: every `quantize_per_tensor` (the int8 tensor a conv/linear consumes: compared
  exactly, in its quantization steps) and every conv2d/linear output (float, after the int32
  accumulation and rescale: compared in steps of the quantize it flows into next, against
  PyTorch's layer applied to the *compiled* int8 input, so that a one-step flip upstream does
  not count against the layer: a layer row measures the layer's own arithmetic, an int8 row
  what the model carries);
- float32/float16 models: every conv2d/linear output, taken after a batch norm that directly
  follows it (the compiled model folds that batch norm into the conv, so the conv alone has
  no compiled counterpart);
- the model's output (for float models, unless it is already the last probe).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

LAYER_OPS = ("conv2d", "linear")
NORM_OPS = ("batch_norm", "_native_batch_norm_legit_no_training")
QUANTIZE, DEQUANTIZE = "quantize_per_tensor", "dequantize_per_tensor"


@dataclass
class Probe:
    node: str            # fx node name in the widened graph
    kind: str            # "int8" (exact, steps of `scale`), "layer" or "output"
    layer: str           # the conv/linear it belongs to (an int8 probe: the layers it feeds)
    via: list[str]       # ops computing it from earlier probes (cat, batch_norm, add, ...)
    scale: float | None  # quantization step, or None: steps relative to the tensor (see compare)
    input_probe: str | None = None  # int8 layer: the quantize probe its PyTorch twin is fed


def op_name(node: fx.Node) -> str:
    if node.op != "call_function":
        return ""
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def module_path(node: fx.Node) -> str:
    """The module the node came from (`features.3.conv.0`), or the node's name."""
    stack = node.meta.get("nn_module_stack") or {}
    path = list(stack.values())[-1][0] if stack else ""
    return path or node.name


def export_graph(net: torch.nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """`net` as an exported GraphModule (batch of `example`), int8 or float alike, without
    in-place ops."""
    with torch.no_grad():
        return functional(torch.export.export(net, (example,)).module())


def functional(gm: fx.GraphModule) -> fx.GraphModule:
    """In-place ops (`relu_` of `ReLU(inplace=True)`) replaced by their functional twins,
    later readers of the mutated tensor reading the new node. Otherwise a probe on a conv
    output would hold its post-ReLU values in PyTorch (mutated) and in Relax (the importer
    rebinds the mutated node), but not in a layer recomputed on the compiled input."""
    position = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        schema = target._schema
        first = schema.arguments[0] if schema.arguments else None
        if not (schema.name.endswith("_") and first is not None and first.alias_info is not None
                and first.alias_info.is_write):
            continue
        packet = getattr(torch.ops.aten, schema.name.split("::")[-1][:-1], None)
        twin = getattr(packet, target._overloadname, None) if packet is not None else None
        if twin is None:
            continue
        mutated = node.args[0]
        node.target = twin
        for user in list(mutated.users):
            if user is not node and position[user] > position[node]:
                user.replace_input_with(mutated, node)
    gm.recompile()
    return gm


def select(gm: fx.GraphModule, fmt: str) -> list[Probe]:
    """The probes of `gm` (see module doc), in graph order."""
    nodes = list(gm.graph.nodes)
    chosen: dict[fx.Node, Probe] = {}
    for node in nodes:
        name = op_name(node)
        if fmt == "int8" and name == QUANTIZE:
            users = [u for d in node.users for u in d.users if op_name(u) in LAYER_OPS]
            chosen[node] = Probe(node.name, "int8", ", ".join(module_path(u) for u in users)
                                 or "(no layer)", [], float(node.args[1]))
        elif name in LAYER_OPS:
            out, users = node, list(node.users)
            if fmt != "int8" and len(users) == 1 and op_name(users[0]) in NORM_OPS:
                out = users[0]
            source = node.args[0]
            fed = source.args[0] if op_name(source) == DEQUANTIZE else None
            chosen[out] = Probe(out.name, "layer", module_path(node), [],
                                _next_quantize_scale(node) if fmt == "int8" else None,
                                fed.name if fmt == "int8" and fed in chosen else None)
    output = next(n for n in nodes if n.op == "output")
    result = output.args[0][0] if isinstance(output.args[0], (tuple, list)) else output.args[0]
    order = {n: i for i, n in enumerate(nodes)}
    probes = sorted(chosen.items(), key=lambda item: order[item[0]])
    # the float value each int8 probe quantizes was compared through it: a segment ends there
    stops = set(chosen) | {n.args[0] for n in chosen if op_name(n) == QUANTIZE}
    for node, probe in probes:
        probe.via = _segment_ops(node, stops)
    if result in chosen and chosen[result].input_probe is None:
        chosen[result].kind = "output"  # the last layer's output is the model's
    else:  # the output as the model computes it, end to end
        probes.append((result, Probe(result.name, "output", "(model output)",
                                     _segment_ops(result, stops), None)))
    return [p for _, p in probes]


def _next_quantize_scale(node: fx.Node) -> float | None:
    """Step of the first quantize the layer's output reaches through non-layer ops (what its
    error is worth to the next int8 layer), None when it reaches none (the classifier)."""
    frontier, seen = list(node.users), set()
    while frontier:
        user = frontier.pop(0)
        if user in seen:
            continue
        seen.add(user)
        name = op_name(user)
        if name == QUANTIZE:
            return float(user.args[1])
        if name not in LAYER_OPS:
            frontier.extend(user.users)
    return None


def _segment_ops(node: fx.Node, stops: set[fx.Node]) -> list[str]:
    """Names of the ops between earlier probes and `node` (itself included), graph order."""
    if op_name(node) == QUANTIZE:  # its own input is where its segment ends, not a stop
        stops = stops - {node.args[0]}
    found, todo, seen = [], [node], set()
    while todo:
        current = todo.pop()
        if current in seen or (current is not node and current in stops):
            continue
        seen.add(current)
        if not op_name(current).startswith(("dequantize", "_guards")):
            found.append(current)
        todo.extend(a for a in current.all_input_nodes if a.op == "call_function")
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return [op_name(n) for n in sorted(found, key=order.get)]


def widen(gm: fx.GraphModule, probes: list[Probe]) -> fx.GraphModule:
    """`gm` returning `(output, *probe tensors)`: a plain positional graph (no pytree specs)."""
    graph = gm.graph
    by_name = {n.name: n for n in graph.nodes}
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0][0] if isinstance(output.args[0], (tuple, list)) else output.args[0]
    output.args = ((result, *(by_name[p.node] for p in probes)),)
    graph._codegen = fx.graph.CodeGen()  # the export's pytree codegen expects one output
    gm.recompile()
    return gm


def probe_graph(net: torch.nn.Module, example: torch.Tensor, fmt: str
                ) -> tuple[fx.GraphModule, list[Probe]]:
    """The widened graph of `net` and its probes."""
    gm = export_graph(net, example)
    probes = select(gm, fmt)
    return widen(gm, probes), probes
