"""Stage 3: compressed model + primitive + codegen + hardware -> compiled library and a measured row."""
from __future__ import annotations

import json
import logging
import resource
import time

import numpy as np
import torch
from omegaconf import DictConfig

from dlas.codegen import import_model
from dlas.compression.metrics import number_format
from dlas.config import build
from dlas.models.build import input_dtype
from dlas.errors import DLASError, in_layer
from dlas.stages.compress import compressed_model
from dlas.stages.keys import compile_key
from dlas.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)
LIB = "model.so"


def compiled_library(cfg: DictConfig, net, example, primitive, codegen, hardware, *, force=False):
    """Path of the exported library for this point's compile config, and its compile metrics."""
    store = ArtifactStore(cfg.paths.artifacts)
    key = compile_key(cfg)
    out = store.path("compiled", key)
    if store.exists("compiled", key) and not force:
        return out / LIB, json.loads((out / "metrics.json").read_text()) | {"compile_reused": True}
    log.info("compiling with %s/%s for %s (key %s)", primitive.name, codegen.name, hardware.name, key)
    start = time.perf_counter()
    with in_layer("codegen"):
        mod = import_model(net, example)
        metrics = {"import_s": time.perf_counter() - start}
        start = time.perf_counter()
        try:
            executable = codegen.build(mod, primitive, hardware.target, hardware=hardware)
        except DLASError as err:
            # raised by a primitive's legalization inside TVM, whose re-raise drops .layer
            err.layer = err.layer or "primitive"
            raise
    metrics["compile_s"] = time.perf_counter() - start
    metrics.update(getattr(codegen, "stats", {}))
    with store.write("compiled", key, cfg) as tmp, in_layer("hardware"):
        start = time.perf_counter()
        hardware.export(executable, tmp / LIB)
        metrics["export_s"] = time.perf_counter() - start
        (tmp / "metrics.json").write_text(json.dumps(metrics))
    return out / LIB, metrics | {"compile_reused": False}


def deploy(cfg: DictConfig, *, force: bool = False) -> dict:
    """Run every stage this point needs and return its metrics (the results row)."""
    with in_layer("dataset"):
        datamodule = build(cfg, "dataset")
        x, y = datamodule.eval_arrays(cfg.dataset.get("eval_samples"))
    primitive = build(cfg, "primitive")
    codegen = build(cfg, "codegen")
    hardware = build(cfg, "hardware")
    measure = build(cfg, "measure")
    with in_layer("hardware"):
        hardware.check()  # an unreachable board fails in seconds, before any training
    net, metrics = compressed_model(cfg, datamodule)
    example = torch.from_numpy(x[:1])
    lib, compile_metrics = compiled_library(cfg, net, example, primitive, codegen, hardware,
                                            force=force)
    metrics.update(compile_metrics)

    start = time.perf_counter()
    with in_layer("hardware"), hardware.session() as session:
        result = measure.run(session, str(lib), x, device=hardware.runtime_device)
    metrics["measure_s"] = time.perf_counter() - start
    metrics.update(result.latency)
    metrics["target"] = str(hardware.target)
    metrics["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fmt = number_format(net)
    with torch.no_grad():  # (a float16 net takes float16 inputs)
        ref = net(torch.from_numpy(x).to(input_dtype(net) or torch.float32))
        ref = ref.float().numpy()
    diff = float(np.abs(result.logits - ref).max())
    scale = float(np.abs(ref).max()) or 1.0
    metrics.update({
        "eval_samples": len(y),
        "accuracy_torch": float((ref.argmax(1) == y).mean()),
        "accuracy_compiled": float((result.logits.argmax(1) == y).mean()),
        "logit_max_abs_diff": diff,
        "logit_rel_diff": diff / scale,
        "prediction_agreement": float((result.logits.argmax(1) == ref.argmax(1)).mean()),
        "number_format": fmt,
    })
    rtol = cfg.logit_rtol[fmt]
    if diff > rtol * scale:
        # the conv lowering is DLAS's own, so a wrong result is blamed on the primitive
        raise DLASError("compiled logits", f"max |diff| {diff:.3g}", layer="primitive",
                        reason=f"differ from PyTorch by more than logit_rtol.{fmt}={rtol} "
                               f"x max|logit| ({scale:.3g})")
    return metrics
