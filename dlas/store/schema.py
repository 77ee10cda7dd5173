"""The metric columns of a results row, declared once: name, kind, unit and meaning.

The stages write these names into a point's `metrics`; the report reads them by the same
names and coerces the `number` ones; docs/metrics.md is generated from this table
(`python -m dlas.store.schema`), and the tests fail on a row that carries a name declared
nowhere, so a metric is never written under one name and read under another.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("number", "flag", "text", "list", "table")


@dataclass(frozen=True)
class Metric:
    stage: str  # the stage that writes it: train, compress, compile, tune, measure, check, remeasure
    kind: str   # one of KINDS
    unit: str
    what: str


def _m(stage: str, kind: str, unit: str, what: str) -> Metric:
    return Metric(stage, kind, unit, what)


METRICS: dict[str, Metric] = {
    # train (dlas/training/fit.py, dlas/stages/train.py)
    "epochs": _m("train", "number", "", "epochs the training ran"),
    "steps": _m("train", "number", "", "optimizer steps of the training"),
    "train_seconds": _m("train", "number", "s", "wall time of the training"),
    "train_loss": _m("train", "number", "", "training loss of the last epoch"),
    "val_loss": _m("train", "number", "", "validation loss of the trained model"),
    "budget_hit": _m("train", "flag", "", "training or a fine-tuning stopped by trainer.max_time: "
                     "the model depends on the machine's speed"),
    "train_key": _m("train", "text", "", "artifact key of the trained model"),
    "train_run_id": _m("train", "text", "", "W&B run of the training (none when logging is off)"),
    "train_reused": _m("train", "flag", "", "the trained model came from the artifact store"),
    # compress (dlas/stages/compress.py, dlas/compression/)
    "accuracy_trained": _m("compress", "number", "fraction", "validation accuracy after training"),
    "accuracy_compressed": _m("compress", "number", "fraction",
                              "validation accuracy of the compressed PyTorch model"),
    "acc_before_finetune": _m("compress", "number", "fraction",
                              "accuracy after the last compression step, before its fine-tuning"),
    "acc_after_finetune": _m("compress", "number", "fraction",
                             "accuracy after the last compression step's fine-tuning"),
    "compress_s": _m("compress", "number", "s", "wall time of the compression and fine-tuning"),
    "compression_steps": _m("compress", "list", "", "each step's name and accuracies"),
    "compression_base": _m("compress", "text", "", "the recipe without its number format (the "
                           "report pairs a quantized point with its float twin by it)"),
    "compress_key": _m("compress", "text", "", "artifact key of the compressed model"),
    "compress_run_ids": _m("compress", "text", "", "W&B runs of the fine-tunings, comma-separated"),
    "compress_reused": _m("compress", "flag", "", "the compressed model came from the artifact store"),
    "params": _m("compress", "number", "", "parameters of the architecture"),
    "nonzeros": _m("compress", "number", "", "non-zero weights"),
    "weight_sparsity": _m("compress", "number", "fraction", "share of zero weights"),
    "macs": _m("compress", "number", "", "multiply-accumulates of one inference"),
    "size_bytes": _m("compress", "number", "B", "weights as stored (int8: one byte each)"),
    # compile (dlas/stages/deploy.py, dlas/codegen/pipeline.py, dlas/primitives/base.py)
    "import_s": _m("compile", "number", "s", "torch.export and the Relax import"),
    "compile_s": _m("compile", "number", "s", "import, transforms, scheduling and the build"),
    "export_s": _m("compile", "number", "s", "writing the library"),
    "lib_sha256": _m("compile", "text", "", "digest of the compiled library"),
    "kernels_sha256": _m("compile", "text", "", "digest of the kernel library the profile times"),
    "compile_reused": _m("compile", "flag", "", "the library came from the artifact store"),
    "compiled_weight_bytes": _m("compile", "number", "B", "constants in the compiled module"),
    "conv_layers": _m("compile", "number", "", "conv2d layers legalized"),
    "sparse_layers": _m("compile", "number", "", "conv2d layers that took the sparse format"),
    "fallback_layers": _m("compile", "number", "", "conv2d layers another primitive computed"),
    "fallbacks": _m("compile", "table", "", "fallback reason -> layers"),
    "int8_path": _m("compile", "text", "", "instruction path of the int8 convs (vnni, avx512, avx2, sdot, plain)"),
    "int8_dot_layers": _m("compile", "number", "", "int8 convs on dot-product instructions"),
    "scheduled_funcs": _m("compile", "number", "", "functions a schedule rule scheduled"),
    "unscheduled_funcs": _m("compile", "number", "", "functions left unscheduled"),
    "unscheduled": _m("compile", "list", "", "names of the functions left unscheduled"),
    "schedule_rules": _m("compile", "table", "", "schedule rule -> functions it scheduled"),
    "format_choices": _m("compile", "list", "", "primitive.format=auto: per layer its shape, "
                         "sparsity, dense_ms, csr_ms, the format taken and why"),
    # tune (dlas/codegen/autoschedule.py, dlas/codegen/tuning.py)
    "tuning_s": _m("tune", "number", "s", "wall time of the MetaSchedule search"),
    "tasks": _m("tune", "number", "", "tuning tasks of the model"),
    "task_budget": _m("tune", "number", "trials", "trials granted to each task"),
    "small_tasks": _m("tune", "number", "", "tasks under min_task_share of the default "
                      "schedules' time: not searched, they keep the default"),
    "tuned_tasks": _m("tune", "number", "", "tasks searched in this run"),
    "reused_tasks": _m("tune", "number", "", "tasks whose database records sufficed"),
    "tuning_trials": _m("tune", "number", "", "measured candidates"),
    "tuning_failed_trials": _m("tune", "number", "", "candidates that failed to build or run"),
    "tuning_database": _m("tune", "text", "", "folder of the MetaSchedule database"),
    "tuned_funcs": _m("tune", "number", "", "functions built from tuning records"),
    "default_schedule_funcs": _m("tune", "number", "", "functions that kept DLAS's default schedule"),
    "data_dependent_funcs": _m("tune", "number", "", "sparse functions not tunable (data-dependent)"),
    "prescheduled_funcs": _m("tune", "number", "", "functions scheduled before tuning"),
    "schedule_note": _m("tune", "text", "", "why functions kept their default schedule"),
    "checked_tasks": _m("tune", "number", "", "tasks whose searched and default schedules were timed side by side"),
    "check_s": _m("tune", "number", "s", "wall time of the side-by-side checks"),
    "default_won_tasks": _m("tune", "number", "", "checked tasks where the default schedule stayed best"),
    "improved_tasks": _m("tune", "number", "", "checked tasks where a searched schedule beat the default side by side"),
    "improved_speedup_geomean": _m("tune", "number", "x", "geometric mean speedup of the improved tasks (side by side)"),
    "improved_speedup_max": _m("tune", "number", "x", "largest task speedup over the default (side by side)"),
    # measure (dlas/hardware/measure.py, dlas/stages/deploy.py)
    "latency_ms_median": _m("measure", "number", "ms", "median inference time"),
    "latency_ms_p90": _m("measure", "number", "ms", "90th percentile inference time"),
    "latency_ms_mean": _m("measure", "number", "ms", "mean inference time"),
    "latency_ms_std": _m("measure", "number", "ms", "standard deviation of the inference time"),
    "latency_ms_min": _m("measure", "number", "ms", "fastest repeat"),
    "latency_ms_max": _m("measure", "number", "ms", "slowest repeat"),
    "latency_cv": _m("measure", "number", "", "coefficient of variation of the repeats"),
    "latency_repeats": _m("measure", "number", "", "timed repeats"),
    "noisy": _m("measure", "flag", "", "latency_cv above measure.noisy_cv"),
    "upload_s": _m("measure", "number", "s", "uploading the library to the target"),
    "load_s": _m("measure", "number", "s", "loading the library on the target"),
    "call_ms": _m("measure", "number", "ms", "mean wall time of one inference over RPC in the accuracy pass (RPC overhead included)"),
    "measure_retries": _m("measure", "number", "", "measurements retried on a fresh session"),
    "measure_retry_reasons": _m("measure", "list", "", "why each retry happened"),
    "measure_s": _m("measure", "number", "s", "wall time of the measurement stage"),
    "target": _m("measure", "text", "", "the TVM target compiled for"),
    "hardware_machine": _m("measure", "text", "", "the machine or variant that measured"),
    "emulated": _m("measure", "flag", "", "measured on an emulated board (latency meaningless)"),
    "emulator": _m("measure", "text", "", "the emulator of an emulated board"),
    "profile_error": _m("measure", "text", "", "why measure.profile=true stored no profile"),
    "profile_sum_ms": _m("measure", "number", "ms", "sum of the profiled kernels' medians"),
    "profile_calls": _m("measure", "number", "", "kernel calls in the profile"),
    "profile_errors": _m("measure", "number", "", "kernel calls the profile could not time"),
    "profile_sum_over_model": _m("measure", "number", "x", "profile_sum_ms over the model's median"),
    "rpc_server": _m("measure", "text", "", "address:port of the RPC server that measured"),
    "rpc_servers_dropped": _m("measure", "list", "", "servers granted but dead or hung, dropped"),
    "measure_lock_wait_s": _m("measure", "number", "s", "wait for the device's measurement lock"),
    "load_avg_measure": _m("measure", "number", "", "1-minute load average during the measurement"),
    "peak_rss_mib": _m("measure", "number", "MiB", "peak memory of the point's process"),
    # check (dlas/stages/logits.py)
    "eval_samples": _m("check", "number", "", "validation samples run on the target"),
    "number_format": _m("check", "text", "", "float32, float16 or int8"),
    "accuracy_torch": _m("check", "number", "fraction", "accuracy of the PyTorch model"),
    "accuracy_compiled": _m("check", "number", "fraction", "accuracy of the compiled model on the target"),
    "accuracy_float": _m("check", "number", "fraction", "accuracy of the int8 model's float twin"),
    "logit_max_abs_diff": _m("check", "number", "", "largest |compiled - PyTorch| logit"),
    "logit_rel_diff": _m("check", "number", "", "logit_max_abs_diff over max |PyTorch logit|"),
    "prediction_agreement": _m("check", "number", "fraction", "same top-1 as PyTorch"),
    "reference_max_abs_diff": _m("check", "number", "", "largest |compiled - integer reference| logit"),
    "reference_rel_diff": _m("check", "number", "", "reference_max_abs_diff over max |reference logit|"),
    "reference_agreement": _m("check", "number", "fraction", "same top-1 as the integer reference"),
    "reference_samples": _m("check", "number", "", "samples run through the integer reference"),
    "reference_exact": _m("check", "number", "fraction", "samples whose logits equal the reference's"),
    # remeasure (dlas/sweep/remeasure.py)
    "latency_round_medians": _m("remeasure", "list", "ms", "median of each re-measurement round"),
    "latency_round_best": _m("remeasure", "number", "ms", "fastest round's median (drift only adds time)"),
    "latency_round_spread": _m("remeasure", "number", "", "(max - min) / median of the round medians"),
    "load_avg_rounds": _m("remeasure", "list", "", "1-minute load average during each round"),
    "remeasured_at": _m("remeasure", "number", "s", "Unix time of the re-measurement"),
}
assert all(m.kind in KINDS for m in METRICS.values())
NUMBERS = tuple(name for name, m in METRICS.items() if m.kind == "number")


def undeclared(metrics: dict) -> list[str]:
    """The names in a row's metrics that this schema does not declare."""
    return sorted(set(metrics) - METRICS.keys())


def markdown() -> str:
    """docs/metrics.md: the table of every metric column."""
    lines = ["# The metric columns of a results row", "",
             "Generated by `python -m dlas.store.schema > docs/metrics.md` from",
             "`dlas/store/schema.py`; each row's `metrics` holds those its stages wrote.", "",
             "| name | stage | kind | unit | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{name}` | {m.stage} | {m.kind} | {m.unit} | {m.what} |"
              for name, m in METRICS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
