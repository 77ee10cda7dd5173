"""Reuse or compute a stage's output: the one flow every stage shares.

Under the key's lock (concurrent processes compute a key once): a stored output is loaded
unless `force` asks to recompute it; one that cannot be loaded (damaged, or not data only)
is reported with its path and computed again; a computed output replaces the stored one.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from dlas.stages.force import Force
from dlas.store.artifacts import ArtifactError, ArtifactStore

log = logging.getLogger(__name__)
FOLDERS = {"train": "trained", "compress": "compressed", "compile": "compiled"}
T = TypeVar("T")


def produce(cfg: DictConfig, stage: str, key: str, *, force: Force, load: Callable[[Path], T],
            compute: Callable[[], T], save: Callable[[T, Path], None]) -> tuple[T, bool]:
    """(output, reused) of `stage` for `key`: `load(folder)` of the stored output, or
    `compute()` then `save(output, folder)`."""
    store = ArtifactStore(cfg.paths.artifacts)
    folder = FOLDERS[stage]
    with store.lock(folder, key):
        if store.exists(folder, key) and force.reuses(stage, store.made_by(folder, key)):
            try:
                return load(store.path(folder, key)), True
            except ArtifactError as exc:
                log.warning("stored %s output cannot be used, computing it again: %s", stage, exc)
        output = compute()
        with store.write(folder, key, cfg, run=force.run) as tmp:
            save(output, tmp)
        return output, False
