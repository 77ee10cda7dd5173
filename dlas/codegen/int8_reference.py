"""The integer reference of an int8 model: what DLAS's compiled int8 code computes, in
PyTorch, from the model's own graph and stored tensors (no TVM).

PyTorch's Q/DQ model convolves dequantized floats; the compiled model (quantized.py, the
primitives' int8 computes) accumulates the int8 values in int32 and rescales once. The two
differ by float rounding, which flips some activations by one step at the next quantize and
deep nets carry on (research/int8-numerics.md). This reference runs the graph node by node
with the lowering's arithmetic, in the lowering's order, so a compiled model equals it bit
for bit (measured: the tiny structures of tests/codegen, mobilenetv2 and densenet161):

- quantize_per_tensor: q = round_half_even(x * float32(1/s)) [+ zp], clipped, int8
  (relax round is round-half-to-even, as torch.round);
- dequantize_per_tensor / _per_channel: float32(q [- zp]) * float32(s);
- conv2d / linear whose operands are both symmetric dequantizes (symmetric_operands):
  acc = the exact integer sum of x_q * W_q (in float32 where no partial sum can reach
  2^24, float64 otherwise; the compiled int32 accumulator, with or without the +128 shift
  and its compensation, holds the same integer), then
  y = float32(acc) * requantize_scale(s_x, s_w) [+ bias];
- batch_norm (inference; PT2E leaves those it cannot fold into a conv): x * scale + shift,
  scale and shift computed in float64 and stored as float32 (graph.py folds them so);
- `a * b + c` of those two (rescale + bias, scale + shift) is one fused multiply-add,
  rounded once, where the target has FMA (`fma=True`): TVM's LLVM contracts a multiply
  feeding an add in one kernel (AllowFPOpFusion=Fast) and the epilogue fuses them; a
  target without FMA rounds twice. (The fused form is computed in float64 from the float32
  operands: the product is exact, and the sum's rounding before float32 could differ from
  one rounding only on a float64 tie, ~2^-29 of elements. A bias-free layer whose output
  is then added to another tensor would fuse too; PT2E leaves none: a conv with a folded
  batch norm has a bias, and densenet's bias-free convs feed a concatenation.)
- global average pooling (adaptive_avg_pool2d to 1x1, mean over H, W): a float32 sum in
  row-major order, then a division by the count, as TVM's reduction computes it (PyTorch
  sums in another order: last-bit differences in 2/3 of the outputs, which can flip a
  classifier input by one step);
- sigmoid / silu: 1 / (1 + exp(-x)) [* x] in float32 with exp correctly rounded (computed
  in float64): TVM calls libm's expf, which is correctly rounded in all but ~3e-4 of the
  inputs (PyTorch's vectorised exp differs in ~4e-3);
- every other op (add, relu, relu6, cat, max/avg pooling 2x2, flatten, ...): PyTorch's
  float32 op, which the compiled code computes bit for bit alike.
What is left (the ~3e-4 of sigmoid inputs libm rounds otherwise, a float64 tie) differs
by one float32 ulp, which flips the next quantize only within an ulp of a rounding boundary
(~1e-5 of such values): a flip reaching the logits moves them by ~1e-3 x max|logit|, past
deploy's int8_reference_rtol, so sigmoid-heavy models (efficientnet_b0) could, rarely, see
it; none measured yet.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import fx

QUANTIZE = "quantize_per_tensor"
DEQUANTIZE = "dequantize_per_tensor"
DEQUANTIZE_CHANNEL = "dequantize_per_channel"
LAYERS = ("conv2d", "linear")
GLOBAL_POOLS = ("adaptive_avg_pool2d", "mean")
SIGMOIDS = ("sigmoid", "silu", "silu_")
BATCH_NORMS = ("batch_norm", "_native_batch_norm_legit_no_training")
FLOAT32_EXACT = 2 ** 24  # integers float32 holds exactly (float64: 2^53)


def op_name(node) -> str:
    """`conv2d` of aten.conv2d.default, `quantize_per_tensor` of its torchao op; '' otherwise."""
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return ""
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def inverse_scale(scale: float) -> np.float32:
    """The factor a quantize multiplies by (one float32 constant)."""
    return np.float32(1.0 / scale)


def requantize_scale(s_x: float, s_w: np.ndarray) -> np.ndarray:
    """s_x * s_w[o] as the compiled rescale holds it: float32, s_x rounded to float32 first."""
    return (np.float32(s_x) * np.asarray(s_w, np.float32)).astype(np.float32)


def bn_scale_shift(gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of an inference batch norm, in float64 (gamma/beta None:
    no affine part)."""
    scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + float(eps))
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    shift = -np.asarray(mean, np.float64) * scale
    if beta is not None:
        shift = shift + np.asarray(beta, np.float64)
    return scale, shift


def symmetric_operands(node: fx.Node, value) -> tuple | None:
    """(x_q node, s_x, W_q node, s_w node) of a conv2d/linear whose input is a symmetric
    per-tensor dequantize and weight a symmetric per-output-channel one; None otherwise (the
    layer stays float). `value(node)` gives a get_attr/placeholder tensor as numpy."""
    x, w = node.args[0], node.args[1]
    if op_name(x) != DEQUANTIZE or op_name(w) != DEQUANTIZE_CHANNEL:
        return None
    if x.args[2] != 0 or w.args[3] != 0 or np.any(value(w.args[2])):
        return None
    return x.args[0], float(x.args[1]), w.args[0], w.args[1]


class IntegerReference(fx.Interpreter):
    """Runs an int8 GraphModule (PT2E Q/DQ graph) with the lowering's arithmetic."""

    def __init__(self, gm: fx.GraphModule, fma: bool = True):
        super().__init__(gm)
        self.fma = fma
        self._node: fx.Node | None = None
        self._int8: dict[fx.Node, torch.Tensor] = {}  # dequantize -> its int8 operand

    def run_node(self, n: fx.Node):
        self._node = n
        return super().run_node(n)

    def call_function(self, target, args, kwargs):
        name = op_name(self._node)
        if name == QUANTIZE:
            x, scale, zero_point, qmin, qmax = args[:5]
            q = torch.round(x.float() * float(inverse_scale(scale)))
            if zero_point:
                q = q + float(zero_point)
            return q.clamp(qmin, qmax).to(torch.int8)
        if name in (DEQUANTIZE, DEQUANTIZE_CHANNEL):
            self._int8[self._node] = args[0]  # (the interpreter frees it once dequantized)
        if name == DEQUANTIZE:
            x, scale, zero_point = args[:3]
            d = x.float() - float(zero_point) if zero_point else x.float()
            return d * float(np.float32(scale))
        if name in LAYERS:
            integer = self._integer_layer(self._node, args, kwargs)
            if integer is not None:
                return integer
        if name in BATCH_NORMS:
            return self._batch_norm(target, args, kwargs)
        if name in GLOBAL_POOLS and _global_pool(name, args, kwargs):
            return _sequential_mean(args[0], keepdim=name == "adaptive_avg_pool2d" or
                                    bool(args[2] if len(args) > 2 else kwargs.get("keepdim")))
        if name in SIGMOIDS:
            x = args[0]
            sigmoid = 1.0 / (1.0 + torch.exp(-x.double()).float())
            if name == "sigmoid":
                return sigmoid
            return x.mul_(sigmoid) if name == "silu_" else x * sigmoid
        return super().call_function(target, args, kwargs)

    def _constant(self, node: fx.Node) -> np.ndarray:
        return (self.fetch_attr(node.target) if node.op == "get_attr" else self.env[node]).numpy()

    def _integer_layer(self, node, args, kwargs):
        operands = symmetric_operands(node, self._constant)
        if operands is None:
            return None
        _, s_x, _, s_w = operands
        xq, wq = (self._int8[a] for a in node.args[:2])
        # exact in float32 when no partial sum can reach 2^24 (max|x| * sum|w[o]| below it:
        # every partial sum is then an integer float32 holds), float64 otherwise (2^53)
        bound = xq.abs().max().item() * wq.abs().flatten(1).sum(1, dtype=torch.int64).max().item()
        dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
        xq, wq = xq.to(dtype), wq.to(dtype)
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if op_name(node) == "conv2d":
            acc = torch.ops.aten.conv2d.default(xq, wq, None, *args[3:])
            shape = (1, -1, 1, 1)
        else:
            acc = xq @ wq.T
            shape = (1, -1)
        acc = acc.double()
        scale = torch.from_numpy(requantize_scale(s_x, self._constant(s_w)))
        if bias is None:
            return acc.float() * scale.reshape(shape)
        return self._multiply_add(acc.float(), scale.reshape(shape), bias.reshape(shape))

    def _multiply_add(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """a * b + c in float32: rounded once (fma) or twice."""
        if self.fma:
            return (a.double() * b.double() + c.double()).float()
        return a * b + c

    def _batch_norm(self, target, args, kwargs):
        names = [a.name for a in target._schema.arguments]
        bound = dict(zip(names, args)) | kwargs
        if bound.get("training"):
            return super().call_function(target, args, kwargs)
        x = bound["input"]
        as_np = (lambda t: None if t is None else t.detach().double().numpy())
        scale, shift = bn_scale_shift(as_np(bound.get("weight")), as_np(bound.get("bias")),
                                      as_np(bound["running_mean"]), as_np(bound["running_var"]),
                                      bound["eps"])
        shape = [1] * x.dim()
        shape[1] = -1
        out = self._multiply_add(x, torch.from_numpy(scale.astype(np.float32)).reshape(shape),
                                 torch.from_numpy(shift.astype(np.float32)).reshape(shape))
        if op_name(self._node) == "batch_norm":
            return out
        return out, torch.empty(0), torch.empty(0)  # the decomposed form's (out, mean, rstd)


def _global_pool(name: str, args, kwargs) -> bool:
    """An average over the whole H, W of an NCHW tensor."""
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return False
    if name == "adaptive_avg_pool2d":
        return list(args[1]) in ([1, 1], [1])
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    return dims is not None and sorted(d % 4 for d in dims) == [2, 3]


def _sequential_mean(x: torch.Tensor, keepdim: bool) -> torch.Tensor:
    """Mean over H, W: float32 sum in row-major order, divided by the count."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    acc = flat[..., 0].clone()
    for i in range(1, h * w):
        acc = acc + flat[..., i]
    mean = acc / (h * w)
    return mean.reshape(n, c, 1, 1) if keepdim else mean


def integer_reference(net: fx.GraphModule, x: np.ndarray, *, fma: bool = True,
                      batch: int = 64) -> np.ndarray:
    """The int8 model's logits [N, classes] on inputs `x` [N, C, H, W] (float32), as DLAS's
    compiled code computes them for a target with (`fma`) or without FMA (see module doc)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            result = IntegerReference(net, fma).run(torch.from_numpy(x[start:start + batch]))
            result = result[0] if isinstance(result, (tuple, list)) else result
            out.append(result.float().numpy().reshape(len(x[start:start + batch]), -1))
    return np.concatenate(out)
