"""Entry-point plumbing: Hydra main, one-line errors, sweep-aware failure handling."""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlas.errors import DLASError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = str(ROOT / "conf")
# `${dlas_root:}` in configs: outputs default to the project folder, wherever it is run from
OmegaConf.register_new_resolver("dlas_root", lambda: str(ROOT), replace=True)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def check_group_overrides(args: list[str]):
    """Refuse an unknown option of a config group before anything runs, sweep values included
    (Hydra would only notice when it reaches that point of the sweep)."""
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key.startswith("-") or "." in key or "/" in key or key == "hydra":
            continue
        if not (Path(CONF_DIR) / key).is_dir() or re.search(r"[()\[\]{}*$]", value):
            continue  # not a group, or a sweep expression (range, glob, ...) Hydra expands itself
        valid = group_options(key)
        for option in value.split(","):
            if option.strip() not in valid and option.strip() != "null":
                fail(str(DLASError(key, option.strip(), valid, reason=f"no such {key} config")))


def _hydra_message(exc: Exception) -> str:
    """Hydra's multi-line config errors, said in one line with the valid options."""
    text = str(exc)
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if isinstance(exc, MissingConfigException) or missing:
        if missing:
            group, value = missing.groups()
            return str(DLASError(group, value, group_options(group),
                                 reason=f"no such {group} config"))
    if "Could not override" in text or "Key '" in text:
        key = re.search(r"override '([^']+)'|Key '([^']+)'", text)
        name = next((g for g in key.groups() if g), "?") if key else "?"
        return (f"{name}: no such setting (a typo? list the settings with --cfg job; "
                f"use +{name}=... to add a new one)")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return first


def entry(config_name: str, job: Callable[[DictConfig, str | None], object]) -> Callable[[], None]:
    """A `main()` for an entry point running `job(cfg, sweep)` under Hydra.

    In a single run a failed point prints one line and exits 1; in a multirun the job records
    it and the sweep goes on (the SweepSummary callback sets the exit code at the end). Config
    errors (unknown option, bad override) print one line and exit 2; never a traceback.
    """
    from dlas.sweep.task import PointFailed

    @hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig):
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        try:
            return job(cfg, hc.sweep.dir if multirun else None)
        except PointFailed as exc:
            fail(str(exc), 1)
        except DLASError as exc:  # raised outside a point (e.g. while setting up)
            fail(str(exc), 1)

    def main():
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let config errors reach us instead of Hydra's printout
        check_group_overrides(sys.argv[1:])
        try:
            _main()
        except (HydraException, OmegaConfBaseException) as exc:
            fail(_hydra_message(exc))

    return main
