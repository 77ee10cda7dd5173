"""Which settings determine each stage's output, and the stage keys hashed from them.

Settings that only change how a run is logged, shown or reached (progress bars, data
locations, tracker addresses, timeouts) are left out, so changing them reuses outputs.
"""
from __future__ import annotations

from collections.abc import Collection

from omegaconf import DictConfig, OmegaConf

from dlas.store.artifacts import code_version, config_key

NOT_DETERMINING = {
    # data_dir stays in: a generated or partial folder must not share a trained model with
    # the real data set. What only changes evaluation goes into the point key instead.
    "dataset": {"download", "verify", "num_workers", "eval_split", "eval_samples"},
    "trainer": {"enable_progress_bar", "enable_model_summary", "logger", "callbacks",
                "default_root_dir", "log_every_n_steps"},
    "hardware": {"tracker_host", "tracker_port", "connect_timeout_s", "session_timeout_s",
                 "request_timeout_s", "startup_timeout_s", "measure_lock"},
    # a profile is stored beside the point's row (a point asked for one without it is
    # measured again: dlas/sweep/task.py), not another point
    "measure": {"timeout_s", "retries", "profile", "profile_repeat"},
    # a cache: where the tuning database lives does not change what a trial budget gives
    "codegen": {"database_dir"},
}
# Which board measures (its name, RPC key, machine, threads) determines the row, not the
# library: the compile stage depends on the target, so boards that share one (a pool of
# boards, or a board reached under another key) share one compiled library.
MEASURED_ON = {"name", "key", "machine", "num_threads"}


def determining(cfg: DictConfig, group: str, leave_out: Collection[str] = ()) -> dict:
    node = OmegaConf.to_container(cfg[group], resolve=True) if cfg.get(group) is not None else None
    if isinstance(node, dict):
        node = {k: v for k, v in node.items()
                if k not in NOT_DETERMINING.get(group, ()) and k not in leave_out}
    return node


def train_key(cfg: DictConfig) -> str:
    return config_key("train", determining(cfg, "dataset"), determining(cfg, "model"),
                      determining(cfg, "trainer"), cfg.optim.optimizer, cfg.optim.get("scheduler"),
                      cfg.seed)


def compress_key(cfg: DictConfig) -> str:
    return config_key("compress", train_key(cfg), determining(cfg, "compression"),
                      cfg.optim.get("finetune_lr"))


def compile_key(cfg: DictConfig) -> str:
    return config_key("compile", compress_key(cfg), determining(cfg, "primitive"),
                      determining(cfg, "codegen"), determining(cfg, "hardware", MEASURED_ON),
                      code_version("primitives", "codegen"))


def point_key(cfg: DictConfig) -> str:
    """The results-store key of a point: everything that determines its row."""
    return config_key("point", compile_key(cfg), determining(cfg, "hardware"),
                      determining(cfg, "measure"), cfg.logit_rtol,
                      cfg.get("int8_reference_rtol"), cfg.get("int8_reference_samples"),
                      cfg.dataset.get("eval_samples"), cfg.dataset.get("eval_split"))
