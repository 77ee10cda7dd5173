"""Row files: how a job hands its point's row over to the results store.

SQLite's WAL mode must not be shared over a network filesystem ("all processes using a
database must be on the same host"), so on a cluster the store stays on the head's local disk
and jobs on other hosts never open it. Each job writes its row as `<folder>/<key>.json` (to a
temporary name, fsync'ed, then renamed: a reader sees the old file or the new one, never half a
file, even if the job is SIGKILLed mid-write), and a point reused by another sweep as
`<folder>/seen/<key>.<sweep hash>.json`. The store takes them in (`ResultsStore.ingest`) at
the start of a sweep, while it runs and at its end. One file name per point key: a point
never gets two rows, and taking a file in twice changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dlas.errors import DLASError

log = logging.getLogger(__name__)
SEEN = "seen"


def write_atomic(path: Path, data: dict) -> None:
    """Write JSON to `path` so that no reader (nor a crash) ever sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, default=str)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename publishes it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RowFiles:
    """The row files of one outputs folder (`paths.rows`)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def write(self, row: dict) -> None:
        try:
            write_atomic(self.path(row["key"]), row)
        except OSError as exc:
            raise DLASError("paths.rows", str(self.folder), "a writable folder",
                            reason=f"cannot write the row of point {row['key']}: "
                                   f"{exc.strerror or exc}") from None

    def read(self, key: str) -> dict | None:
        """The row of point `key`, None when there is none (or it cannot be read: said)."""
        return _load(self.path(key))

    def seen(self, sweep: str, key: str) -> None:
        """Count a reused point in `sweep` too (membership, like the store's sweep_points)."""
        tag = hashlib.sha256(sweep.encode()).hexdigest()[:16]
        write_atomic(self.folder / SEEN / f"{key}.{tag}.json", {"sweep": sweep, "key": key})

    def changed(self, known: dict[str, int]) -> Iterator[tuple[str, int, dict]]:
        """(name, mtime_ns, content) of each row or membership file whose mtime is not the one
        in `known` (name -> mtime_ns of the version already taken in)."""
        for sub in (self.folder, self.folder / SEEN):
            try:
                entries = list(os.scandir(sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".json"):
                    continue  # temporary files of writers still at work
                name = os.path.relpath(entry.path, self.folder)
                try:
                    mtime = entry.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                if known.get(name) != mtime:
                    data = _load(Path(entry.path))
                    if data is not None:
                        yield name, mtime, data


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("row file %s cannot be read, ignored: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None
