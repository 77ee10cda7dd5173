"""`force=`: which stages a run recomputes instead of reusing their stored outputs.

force=<stage> recomputes that stage and every stage after it (a new trained model makes the
stored compressed model and library stale): train -> compress -> compile -> measure.
`true` names the stage its entry point runs (deploy.py: compile, and so measure; compress.py:
compress; train.py: train), `all` is train, `false` reuses everything.

Within one run (one sweep, or one single run) an output is recomputed once: points of a
sweep that share a trained model with force=train train it once, and a second process that
waited for the same key reuses what the first one just made for the same run.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from dlas.errors import ConfigError

STAGES = ("train", "compress", "compile", "measure")
VALUES = (False, True, "all", *STAGES)
_PROCESS_RUN = uuid.uuid4().hex  # the run id of a single (non-sweep) run


@dataclass(frozen=True)
class Force:
    first: str | None  # the first stage recomputed; None: nothing
    run: str           # this run: the sweep folder, or an id of this process

    @classmethod
    def of(cls, value, entry_stage: str, sweep: str | None = None) -> Force:
        """The force setting `value` (the `force` config value) of an entry point that runs
        up to `entry_stage`, in sweep `sweep` (None: a single run)."""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        last = STAGES.index(_last(entry_stage))
        if value not in VALUES or (value in STAGES and STAGES.index(value) > last):
            valid = ["false", "true", "all"] + list(STAGES[:last + 1])
            raise ConfigError("force", value, valid, reason="which stages to recompute")
        first = {False: None, True: entry_stage, "all": "train"}.get(value, value)
        return cls(first, sweep or _PROCESS_RUN)

    @property
    def sweep_name(self) -> str | None:
        """The sweep folder's name (the W&B group of its runs); None for a single run."""
        return None if self.run == _PROCESS_RUN else Path(self.run).name

    def recomputes(self, stage: str) -> bool:
        return self.first is not None and STAGES.index(stage) >= STAGES.index(self.first)

    def reuses(self, stage: str, made_by: str | None) -> bool:
        """Whether a stored output of `stage` made by run `made_by` is used as it is."""
        return not self.recomputes(stage) or made_by == self.run


def _last(entry_stage: str) -> str:
    return "measure" if entry_stage == "compile" else entry_stage


NONE = Force(None, _PROCESS_RUN)
