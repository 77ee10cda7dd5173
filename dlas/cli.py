"""Entry-point plumbing: Hydra main, one-line errors, sweep-aware failure handling."""
from __future__ import annotations

import functools
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

from dlas.errors import ConfigError, DLASError, first_line

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = str(ROOT / "conf")
# `${dlas_root:}` in configs: outputs default to the project folder, wherever it is run from
OmegaConf.register_new_resolver("dlas_root", lambda: str(ROOT), replace=True)


@functools.cache  # every config resolution asks; the CPU does not change
def _training_precision() -> str:
    from dlas.training.precision import training_precision  # (dlas.training loads Lightning)
    return training_precision()


# `${dlas_training_precision:}`: bf16 autocast only on CPUs with native bf16
OmegaConf.register_new_resolver("dlas_training_precision", _training_precision, replace=True)
# config name -> what a sweep checks of each point before the first one runs (CheckPoints)
CHECKS: dict[str, Callable[[DictConfig], object]] = {}
INTERRUPTED = ("interrupted: finished points are kept in the results store; run the same "
               "command again to resume")


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
    return first_line(exc, 1000)


def _path_message(exc: OSError) -> str:
    path = exc.filename or "?"
    return (f"{path}: {exc.strerror or exc}: outputs go under paths.root (or DLAS_OUTPUTS); "
            "set it to a folder that can be created and written")


def entry(config_name: str, job: Callable[[DictConfig, str | None], object],
          check: Callable[[DictConfig], object] | None = None,
          returns: Callable[[DictConfig, object], object] | None = None) -> Callable[[], None]:
    """A `main()` for an entry point running `job(cfg, sweep)` under Hydra; `check(cfg)` is
    what a multirun checks of every point before the first one runs; `returns(cfg, result)`
    what a multirun job hands its sweeper (e.g. objective values, dlas.sweep.objectives).

    In a single run a failed point prints one line and exits 1; in a multirun the job records
    it and the sweep goes on (the SweepSummary callback sets the exit code at the end). Config
    errors (unknown option, bad override or value, unreadable config file, unusable outputs
    path) print one line and exit 2, Ctrl-C one line and exit 130; never a traceback.
    """
    from dlas.sweep.task import PointFailed

    if check is not None:
        CHECKS[config_name] = check

    @hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig):
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        try:
            result = job(cfg, hc.sweep.dir if multirun else None)
            return returns(cfg, result) if multirun and returns is not None else result
        except PointFailed as exc:
            fail(str(exc), 1)
        except DLASError as exc:  # a bad setting, or an error outside a point
            fail(str(exc), 2 if isinstance(exc, ConfigError) else 1)

    def main():
        import yaml

        os.environ["HYDRA_FULL_ERROR"] = "1"  # let config errors reach us instead of Hydra's printout
        check_group_overrides(sys.argv[1:])
        try:
            _main()
        except KeyboardInterrupt:
            fail(INTERRUPTED, 130)
        except (HydraException, OmegaConfBaseException) as exc:
            fail(_hydra_message(exc))
        except yaml.YAMLError as exc:  # a config file (e.g. conf/local/default.yaml) that is not YAML
            fail(_yaml_message(exc))
        except DLASError as exc:  # from a sweep's check of its points, before any runs
            fail(str(exc), 2 if isinstance(exc, ConfigError) else 1)
        except OSError as exc:  # Hydra creating the run folder under paths.root
            fail(_path_message(exc))

    return main


def _yaml_message(exc) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a config file"
    problem = getattr(exc, "problem", None) or first_line(exc)
    return f"{where}: not valid YAML ({problem})"
