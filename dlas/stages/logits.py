"""Deploy's check of a compiled model's logits, and the agreement figures of its row.

The gate compares the compiled model with a reference that computes the same arithmetic, so
that a miscompile fails the point and rounding never does:
- int8: the integer reference (codegen/int8_reference.py: int32 accumulation, the same
  rescale, rounding and clipping, in the lowering's order), within `int8_reference_rtol`
  x max|logit|. PyTorch's Q/DQ model convolves dequantized floats: its distance from the
  compiled model (float rounding flipping activations by one step, carried through deep
  nets) is measured and recorded, never a reason to refuse the point.
- float32 / float16: PyTorch's model itself, within `logit_rtol.<format>` x max|logit|.
"""
from __future__ import annotations

import numpy as np
import torch

from dlas.codegen.int8_reference import integer_reference
from dlas.errors import DLASError
from dlas.models.build import input_dtype


def logits_of(net, x: np.ndarray) -> np.ndarray:
    """PyTorch's logits of `net` on `x` (a float16 net takes float16 inputs), float32 numpy."""
    with torch.no_grad():
        return net(torch.from_numpy(x).to(input_dtype(net) or torch.float32)).float().numpy()


def distance(logits: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """(max |logits - ref|, that / max|ref|, share of samples with the same argmax)."""
    diff = float(np.abs(logits - ref).max())
    return diff, diff / (float(np.abs(ref).max()) or 1.0), \
        float((logits.argmax(1) == ref.argmax(1)).mean())


def logit_check(logits: np.ndarray, x: np.ndarray, y: np.ndarray, net, fmt: str, *,
                rtol: float, reference_rtol: float, fma: bool, float_net=None,
                reference_samples: int | None = None) -> dict:
    """The row's accuracy and agreement metrics; raises DLASError (layer codegen, metrics
    attached) when the compiled logits leave their reference (see module doc). `fma`: the
    target contracts multiply-adds (int8 reference); `float_net`: the float32 model an int8
    one was quantized from (its accuracy on the same samples: int8's cost);
    `reference_samples`: the first N samples are run through the integer reference (a
    miscompile shows on every sample; None: all)."""
    ref = logits_of(net, x)
    diff, rel, agreement = distance(logits, ref)
    metrics = {"eval_samples": len(y), "number_format": fmt,
               "accuracy_torch": float((ref.argmax(1) == y).mean()),
               "accuracy_compiled": float((logits.argmax(1) == y).mean()),
               "logit_max_abs_diff": diff, "logit_rel_diff": rel,
               "prediction_agreement": agreement}
    gate = ("PyTorch", rel, rtol, f"logit_rtol.{fmt}")
    if fmt == "int8":
        n = len(x) if reference_samples is None else min(len(x), int(reference_samples))
        integer = integer_reference(net, x[:n], fma=fma)
        r_diff, r_rel, r_agreement = distance(logits[:n], integer)
        metrics.update(reference_max_abs_diff=r_diff, reference_rel_diff=r_rel,
                       reference_agreement=r_agreement, reference_samples=n,
                       reference_exact=float((logits[:n] == integer).all(1).mean()))
        gate = ("the integer reference", r_rel, reference_rtol, "int8_reference_rtol")
        if float_net is not None:
            metrics["accuracy_float"] = float((logits_of(float_net, x).argmax(1) == y).mean())
    against, value, limit, setting = gate
    if value > limit:
        # import and lowering are both the compiler's (a misread batch-norm eps was the import's);
        # the failed row keeps the measured metrics, and the divergence report finds the layer
        err = DLASError("compiled logits", f"max |diff| / max|logit| {value:.3g}",
                        layer="codegen",
                        reason=f"differ from {against} by more than {setting}={limit:g}; "
                               "`python -m dlas.codegen.divergence` with this point's "
                               "overrides names the first layer that departs")
        err.metrics = metrics
        raise err
    return metrics
