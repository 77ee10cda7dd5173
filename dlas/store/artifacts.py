"""Stage outputs on disk, keyed by the hash of the config that determines them.

Layout: <root>/<stage>/<key>/ holding the stage's files and `config.yaml` (the resolved
config that produced them). A directory is written under a temporary name and renamed
into place, so a reader sees either nothing or a complete output, even if the writer was
killed mid-way (SIGKILL included) or two sweep jobs computed the same stage at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def config_key(*parts) -> str:
    """A short stable hash of config fragments (DictConfigs, dicts, scalars)."""
    plain = [OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig) else p
             for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ArtifactStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / "config.yaml").is_file()

    @contextmanager
    def write(self, stage: str, key: str, config: DictConfig | dict):
        """Yield a temporary directory to fill; publish it atomically when the block succeeds."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            yield tmp
            cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
            OmegaConf.save(cfg, tmp / "config.yaml", resolve=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.exists(stage, key):  # a stale half-written dir from a killed run
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
                # else another job published the same output first: keep theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
