"""Stage 3: compressed model + primitive + codegen + hardware -> compiled library and a measured row."""
from __future__ import annotations

import json
import logging
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from dlas.codegen import import_model
from dlas.codegen.profile import KERNELS, ProfilePlan, kernel_library
from dlas.codegen.quantized import fused_multiply_add
from dlas.compression.metrics import number_format
from dlas.config import check_settings, make
from dlas.errors import DLASError, first_line, in_layer
from dlas.hardware.profile import PROFILE, profile_calls, profile_summary
from dlas.stages.compress import check as check_compression
from dlas.stages.compress import compressed_model
from dlas.stages.force import NONE, Force
from dlas.stages.keys import compile_key, train_key
from dlas.stages.logits import logit_check
from dlas.stages.produce import produce
from dlas.stages.train import trained_model
from dlas.store.artifacts import ArtifactError, ArtifactStore, file_digest, read_json

log = logging.getLogger(__name__)
LIB = "model.so"


def stored_library(folder: Path) -> tuple[Path, dict]:
    """The library in a compile stage's output folder and its compile metrics; ArtifactError
    when it is missing, damaged or not the library the stage exported (SHA-256)."""
    metrics = read_json(folder / "metrics.json")
    if not (folder / LIB).is_file() or file_digest(folder / LIB) != metrics.get("lib_sha256"):
        raise ArtifactError(str(folder / LIB), reason="missing, damaged or not the library "
                            "this stage exported (its SHA-256 differs)")
    return folder / LIB, metrics


def compiled_library(cfg: DictConfig, net, example, primitive, codegen, hardware, *,
                     force: Force = NONE):
    """Path of the exported library for this point's compile config, and its compile metrics."""
    key = compile_key(cfg)

    def compute():
        log.info("compiling with %s/%s for %s (key %s)", primitive.name, codegen.name,
                 hardware.name, key)
        start = time.perf_counter()
        with in_layer("codegen"):
            mod = import_model(net, example)
            metrics = {"import_s": time.perf_counter() - start}
            start = time.perf_counter()
            try:
                built = codegen.build(mod, primitive, hardware.target, hardware=hardware)
            except DLASError as err:
                # raised by a primitive's legalization inside TVM, whose re-raise drops .layer
                err.layer = err.layer or "primitive"
                raise
        metrics["compile_s"] = time.perf_counter() - start
        metrics.update(built.stats)
        return built, metrics

    def save(output, tmp):
        built, metrics = output
        with in_layer("hardware"):
            start = time.perf_counter()
            hardware.export(built.executable, tmp / LIB)
            metrics["export_s"] = time.perf_counter() - start
            # the PrimFuncs alone, for measure.profile (a second link, ~1 s for resnet18)
            hardware.export(kernel_library(built.executable), tmp / KERNELS)
        built.profile.save(tmp)
        metrics["lib_sha256"] = file_digest(tmp / LIB)
        metrics["kernels_sha256"] = file_digest(tmp / KERNELS)
        (tmp / "metrics.json").write_text(json.dumps(metrics))

    (_, metrics), reused = produce(cfg, "compile", key, force=force, load=stored_library,
                                   compute=compute, save=save)
    return ArtifactStore(cfg.paths.artifacts).path("compiled", key) / LIB, \
        metrics | {"compile_reused": reused}


def layer_profile(measure, session, folder: Path, compile_metrics: dict, device: str,
                  model_ms: float) -> dict:
    """The per-layer profile of the library in compile folder `folder` (metrics entry
    `layer_profile`, which the task stores beside the row) and its summary; a profile that
    cannot be taken is said in `profile_error` and the row keeps its measurement."""
    kernels = folder / KERNELS
    try:
        if file_digest(kernels) != compile_metrics.get("kernels_sha256"):
            raise ArtifactError(str(kernels), reason="missing, damaged or not the kernel "
                                "library this stage exported (its SHA-256 differs)")
        plan = ProfilePlan.load(folder)
        rows = profile_calls(measure, session, kernels, plan.calls, plan.constants,
                             device=device)
    except (DLASError, OSError, ValueError) as err:
        log.warning("no per-layer profile: %s", err)
        return {"profile_error": first_line(err)}
    return {PROFILE: rows, **profile_summary(rows, model_ms)}


@dataclass(frozen=True)
class Plan:
    """A point's layer objects, built (and so checked) before any work."""
    datamodule: object
    primitive: object
    codegen: object
    hardware: object
    measure: object


def plan(cfg: DictConfig) -> Plan:
    """Check the point's settings and build its layers; a bad value raises ConfigError."""
    check_settings(cfg)
    with in_layer("dataset"):
        datamodule = make(cfg, "dataset")
    check_compression(cfg, datamodule.input_shape)  # (a sweep checks every point this way first)
    return Plan(datamodule, make(cfg, "primitive"), make(cfg, "codegen"),
                make(cfg, "hardware"), make(cfg, "measure"))


def deploy(cfg: DictConfig, planned: Plan | None = None, *, force: Force = NONE) -> dict:
    """Run every stage this point needs and return its metrics (the results row)."""
    planned = planned or plan(cfg)
    datamodule, hardware, measure = planned.datamodule, planned.hardware, planned.measure
    with in_layer("dataset"):
        x, y = datamodule.eval_arrays(cfg.dataset.get("eval_samples"))
    with in_layer("hardware"):
        hardware.check()  # an unreachable board fails in seconds, before any training
    net, metrics = compressed_model(cfg, datamodule, force=force)
    example = torch.from_numpy(x[:1])
    lib, compile_metrics = compiled_library(cfg, net, example, planned.primitive, planned.codegen,
                                            hardware, force=force)
    metrics.update(compile_metrics)

    start = time.perf_counter()
    with in_layer("hardware"), hardware.session() as session:
        load_before = os.getloadavg()[0]
        result = measure.run(session, str(lib), x, device=hardware.runtime_device)
        metrics["load_avg_measure"] = (load_before + os.getloadavg()[0]) / 2
        if measure.profile:
            metrics.update(layer_profile(measure, session, lib.parent, compile_metrics,
                                         hardware.runtime_device,
                                         result.latency["latency_ms_median"]))
        emulator = session.emulator()  # the board's server says; its latency is no board's
    metrics["measure_s"] = time.perf_counter() - start
    metrics["rpc_server"] = session.server  # the one that measured (after any retry)
    metrics["rpc_servers_dropped"] = session.dropped  # granted, but dead or hung
    metrics["measure_lock_wait_s"] = session.lock_wait_s
    metrics.update(result.latency)
    metrics["target"] = str(hardware.target)
    metrics["hardware_machine"] = hardware.machine
    metrics["emulated"] = emulator is not None
    if emulator is not None:
        metrics["emulator"] = emulator
    metrics["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fmt = number_format(net)
    float_net = None  # int8's accuracy cost: the trained float32 model, when it is stored
    if fmt == "int8" and ArtifactStore(cfg.paths.artifacts).exists("trained", train_key(cfg)):
        float_net = trained_model(cfg, datamodule)[0].eval()
    metrics.update(logit_check(result.logits, x, y, net, fmt, rtol=cfg.logit_rtol[fmt],
                               reference_rtol=cfg.int8_reference_rtol,
                               fma=fused_multiply_add(hardware.target), float_net=float_net,
                               reference_samples=cfg.get("int8_reference_samples")))
    return metrics
