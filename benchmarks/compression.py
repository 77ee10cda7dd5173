"""The compression layer's techniques through the whole stack, per model, against no compression.

    python benchmarks/compression.py [--models resnet18 mobilenetv2] [--techniques none,int8 ...]
                                     [--epochs N] [--outputs DIR]

Per model (on digits) and technique, one point of `deploy.py` (train -> compress -> compile ->
measure through the local TVM RPC server), a table row: accuracy after the compression step
and before / after its fine-tuning (the last step's, so the int8 step's for channel_int8 and
unstructured_int8), PyTorch and compiled accuracy on the evaluation split, size as stored
(int8 weights 1 byte, float16 2), bytes of the weights as compiled, parameters and
multiply-adds of the architecture, DLAS latency on this CPU (median ± standard deviation over
the timed repeats) and its ratio to `none` of the same model, measured in this run.

Trained, compressed and compiled models are kept in the artifact store under --outputs
(default $DLAS_OUTPUTS, else a new temporary folder, printed): every technique reuses the
model's one training run, and a second run with the same folder reuses everything but the
latency measurement, which is always taken anew. A failing technique prints its error in its
row (full traceback under <outputs>/errors/) and the table goes on.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from dlas.cli import CONF_DIR, group_options  # noqa: E402
from dlas.errors import DLASError  # noqa: E402

# technique -> the deploy.py overrides that select it
TECHNIQUES: dict[str, list[str]] = {
    "none": ["compression=none"],
    "unstructured": ["compression=unstructured", "compression.ratio=0.5"],
    **{f"channel_{r}": ["compression=channel", f"compression.ratio={r}"]
       for r in ("0.3", "0.5", "0.7")},
    "int8": ["compression=int8"],
    "fp16": ["compression=fp16"],
    "channel_int8": ["compression=channel_int8", "compression.ratio=0.5"],
    "unstructured_int8": ["compression=unstructured_int8", "compression.ratio=0.5"],
}
MODELS = ["resnet18", "mobilenetv2"]

HEADER = (f"{'model':11s} {'technique':17s} {'acc pre-ft':>10s} {'post-ft':>7s} {'torch':>6s} "
          f"{'compiled':>8s} {'size MiB':>8s} {'wts MiB':>7s} {'params M':>8s} {'MMAC':>7s} "
          f"{'latency ms':>17s} {'vs none':>7s}")


def make_cfg(model: str, technique: str, outputs: str, epochs: int | None):
    overrides = [f"paths.root={outputs}", "logger.mode=disabled", "dataset=digits",
                 f"model={model}", *TECHNIQUES[technique],
                 "trainer.enable_progress_bar=false"]  # not part of the train key: reuse holds
    if epochs is not None:
        overrides.append(f"trainer.max_epochs={epochs}")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="deploy", overrides=overrides)


def run_point(model: str, technique: str, outputs: str, epochs: int | None) -> dict:
    """The point's metrics, or {"error": one line} if any stage failed."""
    from dlas.stages.deploy import deploy  # heavy (torch, TVM)

    try:
        # force=False: stored train/compress/compile artifacts are reused; measuring always runs
        return deploy(make_cfg(model, technique, outputs, epochs))
    except DLASError as exc:
        return {"error": f"[{exc.layer or '?'}] {exc}"}
    except Exception as exc:  # a crash inside a library: one line here, the traceback on disk
        trace = Path(outputs) / "errors" / f"compression-{model}-{technique}.log"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(traceback.format_exc())
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"error": f"{type(exc).__name__}: {first} (traceback: {trace})"}


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def row_text(model: str, technique: str, m: dict, reference_ms: float | None) -> str:
    head = f"{model:11s} {technique:17s}"
    if "error" in m:
        return f"{head} error: {m['error']}"
    med, std = m["latency_ms_median"], m.get("latency_ms_std", 0.0)
    rel = f"{med / reference_ms:.2f}x" if reference_ms else "-"
    weights = m.get("compiled_weight_bytes")
    return (f"{head} {_pct(m.get('acc_before_finetune')):>10s} "
            f"{_pct(m.get('acc_after_finetune')):>7s} {_pct(m.get('accuracy_torch')):>6s} "
            f"{_pct(m.get('accuracy_compiled')):>8s} {m['size_bytes'] / 2**20:8.2f} "
            f"{weights / 2**20 if weights is not None else float('nan'):7.2f} "
            f"{m['params'] / 1e6:8.3f} {m['macs'] / 1e6:7.1f} "
            f"{med:8.3f} ± {std:6.3f} {rel:>7s}" + (" noisy" if m.get("noisy") else ""))


def techniques_arg(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TECHNIQUES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{', '.join(bad)}: no such technique (valid: {', '.join(TECHNIQUES)})")
    return names


def models_arg(text: str) -> list[str]:
    names, valid = [t.strip() for t in text.split(",") if t.strip()], group_options("model")
    bad = [t for t in names if t not in valid]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{', '.join(bad)}: no such model config (valid: {', '.join(valid)})")
    return names


def quiet() -> None:
    """Only warnings and errors from DLAS, Lightning and TVM; the table is the output."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "dlas"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's advice (few dataloader workers, small logging interval) says nothing here
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning)\b.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=models_arg, default=[MODELS],
                        help=f"model configs, space- or comma-separated (default: {' '.join(MODELS)})")
    parser.add_argument("--techniques", nargs="+", type=techniques_arg, default=[list(TECHNIQUES)],
                        help=f"space- or comma-separated, of: {', '.join(TECHNIQUES)} (default: all)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (trainer.max_epochs; default: the config's)")
    parser.add_argument("--outputs", default=os.environ.get("DLAS_OUTPUTS"),
                        help="artifact/results folder, reused across runs "
                             "(default: $DLAS_OUTPUTS, else a new temporary folder)")
    args = parser.parse_args()
    models = list(dict.fromkeys(m for group in args.models for m in group))
    techniques = list(dict.fromkeys(t for group in args.techniques for t in group))
    techniques.sort(key=lambda t: t != "none")  # the reference first, so every row has its ratio
    outputs = args.outputs or tempfile.mkdtemp(prefix="dlas-compression-")
    quiet()

    import torch
    import tvm

    from dlas.hardware.base import make_target

    # torchao's deprecation notice on import (torch's own log handler, set up on import)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

    print(f"torch {torch.__version__}, tvm {tvm.__version__}, dataset digits, "
          f"target {make_target({'kind': 'llvm', 'mcpu': 'host'})}, outputs {outputs}")
    print("acc pre-ft/post-ft: after the last compression step, before/after its fine-tuning; "
          "torch/compiled: evaluation split; wts: weights as compiled; latency: median ± std")
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    for model in models:
        reference = None
        for technique in techniques:
            metrics = run_point(model, technique, outputs, args.epochs)
            if technique == "none" and "error" not in metrics:
                reference = metrics["latency_ms_median"]
            print(row_text(model, technique, metrics, reference), flush=True)


if __name__ == "__main__":
    main()
