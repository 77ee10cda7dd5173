"""Synthetic results stores whose statistics are known by construction.

grid_store: digits × {resnet18, mobilenetv2} × {none, int8, unstructured} × {direct, gemm,
spatial_pack}-dense × {untuned, autoschedule} × {local, board}, latency a product of factors:

- int8 speeds up 2× on local and 4× on board, except spatial_pack on board (40×: int8 makes it
  10× faster there); unstructured speeds up exactly 1× everywhere.
- untuned: direct 1.0 < gemm 1.5 < spatial_pack 2.0 (relative). autoschedule: resnet18 gemm 0.5 <
  direct 0.8 < spatial_pack 0.9, mobilenetv2 direct 0.5 < gemm 0.7 < spatial_pack 0.9.
  Fastest primitive untuned -> tuned: resnet18 direct -> gemm in every (compression, hardware)
  group except int8 on board (spatial_pack both); mobilenetv2 never flips: 5 flips of 12 groups.
- float32 (none) -> int8: on board the fastest becomes spatial_pack (direct or gemm before), on
  local it stays: 4 flips of 8 (model, hardware, codegen) pairs.
- int8 points: the float32 model 1 point more accurate than the compiled one, PyTorch's Q/DQ
  model 0.2 points more (int8_accuracy: int8_cost -0.01, compiled_vs_qdq -0.002).
- plus one unsupported and one failed point.

correlation_store: six points on one (dataset, hardware) with given ranks of size, accuracy
and latency, so Spearman's rho is 1 - 6 sum(d^2) / (n (n^2 - 1)).
"""
from __future__ import annotations

from pathlib import Path

from dlas.store.results import ResultsStore

MODELS = {"resnet18": 10.0, "mobilenetv2": 4.0}
HARDWARE = {"local": 1.0, "board": 3.0}
PRIMS = ("direct", "gemm", "spatial_pack")
UNTUNED = {"direct": 1.0, "gemm": 1.5, "spatial_pack": 2.0}
TUNED = {"resnet18": {"direct": 0.8, "gemm": 0.5, "spatial_pack": 0.9},
         "mobilenetv2": {"direct": 0.5, "gemm": 0.7, "spatial_pack": 0.9}}
COMPRESSION = {("none", "local"): 1.0, ("none", "board"): 1.0,
               ("int8", "local"): 0.5, ("int8", "board"): 0.25,
               ("unstructured", "local"): 1.0, ("unstructured", "board"): 1.0}
STEPS = {"none": [], "int8": [{"_target_": "dlas.compression.int8.Int8Quantization"}],
         "unstructured": [{"_target_": "dlas.compression.UnstructuredPruning", "ratio": 0.5}]}


def latency_metrics(median: float) -> dict:
    return {"latency_ms_median": median, "latency_ms_min": 0.95 * median,
            "latency_ms_p90": 1.05 * median, "latency_ms_max": 1.1 * median,
            "latency_ms_mean": median, "latency_ms_std": 0.03 * median, "latency_cv": 0.03,
            "noisy": False}


def _config(row: dict) -> dict:
    return {"compression": {"name": row["compression"], "steps": STEPS[row["compression"]]},
            "primitive": {"name": row["primitive"].split("-")[0], "format": "dense"},
            "codegen": {"name": row["codegen"]}, "hardware": {"name": row["hardware"]}}


def grid_store(path: Path, *, hardware=tuple(HARDWARE), codegens=("untuned", "autoschedule"),
               compressions=tuple(STEPS), sweep: str = "/runs/multirun_1",
               machines: dict | None = None, emulated: tuple = ()) -> ResultsStore:
    store = ResultsStore(path)
    i = 0
    for model, base in MODELS.items():
        for comp in compressions:
            for prim in PRIMS:
                for codegen in codegens:
                    for hw in hardware:
                        factor = UNTUNED[prim] if codegen == "untuned" else TUNED[model][prim]
                        latency = base * factor * COMPRESSION[comp, hw] * HARDWARE[hw]
                        if comp == "int8" and hw == "board" and prim == "spatial_pack":
                            latency *= 0.1
                        layers = dict(dataset="digits", model=model, compression=comp,
                                      primitive=f"{prim}-dense", codegen=codegen, hardware=hw)
                        acc = (0.97 if model == "resnet18" else 0.95) - \
                            {"none": 0, "int8": 0.01, "unstructured": 0.005}[comp]
                        size = (44.7e6 if model == "resnet18" else 9.0e6) / (4 if comp == "int8" else 1)
                        metrics = latency_metrics(latency) | {
                            "accuracy_compiled": acc, "accuracy_torch": acc, "size_bytes": size,
                            "number_format": "int8" if comp == "int8" else "float32"}
                        if codegen == "autoschedule":
                            metrics["tuning_s"] = 30.0
                        if machines:
                            metrics["hardware_machine"] = machines[hw]
                        if comp == "int8":
                            metrics |= {"accuracy_float": acc + 0.01, "accuracy_torch": acc + 0.002,
                                        "prediction_agreement": 0.99, "logit_rel_diff": 0.01,
                                        "reference_rel_diff": 0.0, "reference_agreement": 1.0,
                                        "eval_samples": 360}
                        if hw in emulated:  # what a row measured on an emulated board says
                            metrics |= {"emulated": True, "emulator": "qemu-aarch64 7.2.22"}
                        i += 1
                        store.record(f"p{i}", status="ok", layers=layers, sweep=sweep,
                                     config=_config(layers), metrics=metrics, started=float(i))
    store.record("bad1", status="unsupported", sweep=sweep, layer="primitive",
                 reason="primitive.format='csr': no layer reaches sparsity_threshold=0.5",
                 layers=dict(dataset="digits", model="resnet18", compression="none",
                             primitive="gemm-csr", codegen="untuned", hardware="local"))
    store.record("bad2", status="failed", sweep=sweep, layer="codegen",
                 reason="TVMError: Check failed: (bound) is false",
                 layers=dict(dataset="digits", model="mobilenetv2", compression="int8",
                             primitive="spatial_pack-bsr", codegen="autoschedule",
                             hardware="board"))
    return store


def correlation_store(path: Path, size_ranks, acc_ranks, lat_ranks,
                      sweep: str = "/runs/multirun_corr") -> ResultsStore:
    """One point per rank triple on digits/local (values spread over decades where it helps)."""
    store = ResultsStore(path)
    for i, (s, a, t) in enumerate(zip(size_ranks, acc_ranks, lat_ranks)):
        layers = dict(dataset="digits", model=f"m{i}", compression="none",
                      primitive="direct-dense", codegen="untuned", hardware="local")
        metrics = latency_metrics(2.0 ** t) | {"size_bytes": 1e6 * 3 ** s,
                                               "accuracy_compiled": 0.5 + 0.05 * a,
                                               "number_format": "float32"}
        store.record(f"c{i}", status="ok", layers=layers, sweep=sweep, metrics=metrics,
                     started=float(i))
    return store
