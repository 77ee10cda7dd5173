"""The W&B mirror of the results store: one run per point, grouped per sweep.

The mode is decided before `wandb.init` so a machine with no account or no network never
sees a login prompt or a hang: `auto` means online only when credentials are present.
"""
from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from dlas.errors import DLASError

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC", Path.home() / ".netrc"))
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in auth.hosts)


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise DLASError("logger.mode", mode, MODES)
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    return mode


class WandbRun:
    """A W&B run (a point's, or a stage's training: dlas.stages.curves); a no-op when mode is
    disabled (no wandb import at all)."""

    def __init__(self, *, project: str, mode: str, group: str | None, name: str, config: dict,
                 directory: str, entity: str | None = None, job_type: str | None = None):
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb  # imported lazily: startup cost only when logging

        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, entity=entity, group=group, name=name,
                              job_type=job_type,
                              config=config, dir=directory, mode=self.mode, reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))

    def finish(self, status: str, row: dict):
        """Log the row as the run summary and finish with an exit code matching the status."""
        if self.run is None:
            return
        flat = {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None}
        self.run.summary.update(flat)
        self.run.log({k: v for k, v in flat.items() if isinstance(v, (int, float))})
        self.run.finish(exit_code=0 if status != "failed" else 1)
        if self.mode == "offline":
            log.info("W&B run saved offline in %s (upload later with `wandb sync`)", self.run.dir)
