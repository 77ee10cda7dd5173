"""Stage outputs on disk, keyed by the hash of the config that determines them.

Layout: <root>/<stage>/<key>/ holding the stage's files, `config.yaml` (the resolved config
that produced them) and `run.json` (which run produced them). A directory is written under a
temporary name and renamed into place, so a reader sees either nothing or a complete output,
even if the writer was killed mid-way (SIGKILL included). A new output of an existing key
replaces the old one (`force`); a lock per key (`lock`) makes concurrent processes compute
a key once.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlas.errors import DLASError, first_line
from dlas.store.locks import wait_for_lock

RUN = "run.json"
PACKAGE = Path(__file__).resolve().parent.parent  # dlas/


class ArtifactError(DLASError):
    """A stored output that cannot be used: missing, damaged, or not data only."""


def config_key(*parts) -> str:
    """A short stable hash of config fragments (DictConfigs, dicts, scalars)."""
    plain = [OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig) else p
             for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def code_version(*parts: str, root: Path = PACKAGE) -> str:
    """A hash of the sources of dlas/<part> (a package, or one module's file), for keys of
    outputs that depend on DLAS's own code as much as on their config (compiled libraries
    and tuning records depend on the lowering and the default schedules): changed code is
    never reused stale."""
    digest = hashlib.sha256()
    for part in parts:
        where = root / part
        for path in [where] if where.is_file() else sorted(where.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def read_json(path: Path):
    """A stored JSON file, or an ArtifactError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ArtifactError(str(path), reason="missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(str(path), reason=f"damaged: {exc}") from None


def load_tensors(path: Path):
    """torch.load of tensors and plain containers only: any other content (code, objects) is
    refused, as is a damaged file, with an ArtifactError naming the file."""
    import torch  # (the results store and the report use this module without torch)

    if not Path(path).is_file():
        raise ArtifactError(str(path), reason="missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip and EOF errors...: all mean "not tensors"
        raise ArtifactError(str(path), reason="not a file of tensors (damaged, or it holds "
                            f"code or objects): {_unpickling_problem(exc)}") from None


def _unpickling_problem(exc: Exception) -> str:
    """What torch's weights-only loader found, without its advice to load the file unsafely."""
    text = str(exc)
    _, found, rest = text.partition("WeightsUnpickler error:")
    return first_line(rest if found else exc, 200).split(". Please")[0] or type(exc).__name__


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / "config.yaml").is_file()

    def made_by(self, stage: str, key: str) -> str | None:
        """The run that produced the stored output (None: unknown)."""
        try:
            return json.loads((self.path(stage, key) / RUN).read_text()).get("run")
        except (OSError, ValueError, AttributeError):
            return None

    @contextmanager
    def lock(self, stage: str, key: str):
        """Hold `stage/key` against other processes: one computes it, the others wait."""
        with wait_for_lock(self.root / stage / ".locks" / f"{key}.lock", f"{stage} {key}"):
            yield

    @contextmanager
    def write(self, stage: str, key: str, config: DictConfig | dict, *, run: str | None = None):
        """Yield a temporary directory to fill; publish it when the block succeeds, replacing
        an older output of the key (hold `lock` around the computation and the write)."""
        final = self.path(stage, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DLASError("paths.artifacts", str(self.root), "a writable folder",
                            reason=f"cannot create {final.parent}: {exc.strerror or exc}") from None
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        old = None
        try:
            yield tmp
            cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
            OmegaConf.save(cfg, tmp / "config.yaml", resolve=True)
            (tmp / RUN).write_text(json.dumps({"run": run}))
            if final.exists():  # moved aside by a rename: the swap takes no time to delete it
                old = Path(tempfile.mkdtemp(prefix=f".{key}.old.", dir=final.parent))
                os.rename(final, old / key)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
