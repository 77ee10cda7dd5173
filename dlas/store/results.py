"""The results store: one SQLite row per point, the primary record of every study.

WAL mode and a busy timeout let parallel sweep jobs on one host (joblib, submitit_local)
write at once. SQLite must not be shared over a network filesystem, so the store is refused
there; on a cluster it lives on the head's local disk and jobs on other hosts hand their
rows over as files (`rows_only`, dlas.store.rows) that the store takes in (`ingest`). Every
row is also written as such a file, so a row whose job died before the database write is
taken in by the next sweep. A point is identified by its config key, so re-running a sweep
updates rows in place instead of adding duplicates. A point belongs to every sweep that asked
for it (table `sweep_points`); its `sweep` column is the sweep that measured it. A lock per
point (`lock`, beside the row files: on the filesystem every job sees) lets concurrent sweeps
wait for each other's points instead of measuring them twice. A point measured with
measure.profile=true has its per-layer profile (one JSON list, dlas/codegen/profile.py) in
table `profiles` beside its row (and in its row file); it belongs to the row's measurement,
so a row recorded without one drops the old one.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path

from dlas.errors import DLASError
from dlas.store.locks import wait_for_lock
from dlas.store.rows import SEEN, RowFiles

log = logging.getLogger(__name__)

LAYERS = ("dataset", "model", "compression", "primitive", "codegen", "hardware")
STATUSES = ("ok", "unsupported", "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    sweep TEXT,
    status TEXT NOT NULL,
    layer TEXT,
    reason TEXT,
    {", ".join(f"{layer} TEXT" for layer in LAYERS)},
    config TEXT,
    metrics TEXT,
    env TEXT,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS profiles (
    key TEXT PRIMARY KEY,
    profile TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (sweep, key)
);
INSERT OR IGNORE INTO sweep_points SELECT sweep, key FROM points WHERE sweep IS NOT NULL;
CREATE TABLE IF NOT EXISTS row_files (
    name TEXT PRIMARY KEY,
    mtime_ns INTEGER
);
"""
COLUMNS = ("key", "sweep", "status", "layer", "reason", *LAYERS, "config", "metrics", "env",
           "started", "finished")
# What /proc/mounts calls filesystems whose files live on another host: SQLite's locking
# (WAL's shared memory above all) does not work across hosts there.
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
              "glusterfs", "fuse.sshfs", "9p", "afs")


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """'<type> at <mount point>' when `path` is on a network filesystem, else None."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: nothing to tell
            return None
    path = Path(os.path.abspath(path))
    best = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = Path(fields[1].replace("\\040", " "))
        if (path == mount or mount in path.parents) and (
                best is None or len(mount.parts) > len(best[0].parts)):
            best = (mount, fields[2])
    return f"{best[1]} at {best[0]}" if best and best[1] in NETWORK_FS else None


class ResultsStore:
    """path: the SQLite file (on this host's disk); rows: the folder of row files (paths.rows,
    None: none); rows_only: a job on another host: it writes and reads row files only and
    never opens the database."""

    def __init__(self, path: str | Path, *, rows: str | Path | None = None,
                 rows_only: bool = False):
        self.path = Path(path)
        self.files = RowFiles(rows) if rows is not None else None
        if rows_only and self.files is None:
            raise DLASError("paths.rows_only", True, "false, or a paths.rows folder",
                            reason="jobs can hand rows over only through row files")
        self.rows_only = rows_only
        if rows_only:
            return
        where = network_filesystem(self.path.parent)
        if where:
            raise DLASError("paths.results", str(self.path), "a path on this host's local disk",
                            reason=f"on a network filesystem ({where}); SQLite (WAL) must not "
                                   "be shared between hosts: keep the store on the head's disk, "
                                   "jobs hand rows over through paths.rows (README: Clusters)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DLASError("paths.results", str(self.path), "a path in a writable folder",
                            reason=f"cannot create its folder: {exc.strerror or exc}") from None
        # one process at a time: switching to WAL takes a lock SQLite's busy timeout does not
        # wait for ("database is locked" when two sweeps open a new store at once)
        with wait_for_lock(self._locks / "schema.lock", "the results store"), self._open() as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @classmethod
    def of(cls, paths, *, head: bool = False) -> ResultsStore:
        """The store of a `paths` config as a sweep's job sees it, or (head) as the process
        that started the sweep does: only jobs follow paths.rows_only."""
        return cls(paths.results, rows=paths.get("rows"),
                   rows_only=bool(paths.get("rows_only")) and not head)

    @property
    def _locks(self) -> Path:
        return self.path.parent / f".{self.path.name}.locks"

    @property
    def _point_locks(self) -> Path:  # where every job of a cluster sees them
        return self.files.folder / ".locks" if self.files else self._locks

    @contextmanager
    def _open(self):
        """A connection; a file that is not a readable SQLite store is said in one line."""
        if self.rows_only:  # (a bug, not a setting: jobs with rows_only only use row files)
            raise RuntimeError("a rows_only store has no database to open")
        try:
            with closing(sqlite3.connect(self.path, timeout=60)) as db:
                db.row_factory = sqlite3.Row
                yield db
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise DLASError("paths.results", str(self.path), reason=f"not a usable results store "
                            f"(SQLite: {exc}); nothing was changed: move the file aside to start a "
                            "new store, or point paths.results at another one") from None

    @contextmanager
    def lock(self, key: str):
        """Hold point `key` against other processes using this store (waits for them)."""
        with wait_for_lock(self._point_locks / f"{key}.lock", f"point {key}"):
            yield

    def record(self, key: str, *, status: str, layers: dict, sweep: str | None = None,
               layer: str | None = None, reason: str | None = None, config: dict | None = None,
               metrics: dict | None = None, env: dict | None = None, started: float | None = None,
               profile: list[dict] | None = None):
        """Insert or replace the row of point `key` (and its per-layer profile): its row file
        first (the durable hand-over), then the database (unless rows_only)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        from dlas.store.schema import undeclared  # (not at the top: the schema runs as __main__)

        if unknown := undeclared(metrics or {}):  # kept (a result is never lost), but said
            log.warning("metrics not declared in dlas/store/schema.py: %s", ", ".join(unknown))
        row = dict(key=key, sweep=sweep, status=status, layer=layer, reason=reason,
                   **{name: layers.get(name) for name in LAYERS},
                   config=config or {}, metrics=metrics or {}, env=env or {},
                   started=started, finished=time.time(), profile=profile)
        row = json.loads(json.dumps(row, default=str))  # what the file and a reader hold
        if self.files is not None:
            self.files.write(row)
        if not self.rows_only:
            with self._open() as db, db:
                _insert(db, row)

    def get(self, key: str) -> dict | None:
        if self.rows_only:  # the row as the database gives it: its profile is profile()'s
            row = self.files.read(key)
            return None if row is None else {k: v for k, v in row.items() if k != "profile"}
        with self._open() as db:
            row = db.execute("SELECT * FROM points WHERE key = ?", (key,)).fetchone()
        return _decode(row) if row else None

    def profile(self, key: str) -> list[dict] | None:
        """The per-layer profile of point `key`, None when it was measured without one."""
        if self.rows_only:
            return (self.files.read(key) or {}).get("profile")
        with self._open() as db:
            row = db.execute("SELECT profile FROM profiles WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def mark_seen(self, key: str, sweep: str | None):
        """Count an already-done point in the current sweep too (for its summary)."""
        if sweep is None:
            return
        if self.files is not None:
            self.files.seen(sweep, key)
        if not self.rows_only:
            with self._open() as db, db:
                db.execute("INSERT OR IGNORE INTO sweep_points VALUES (?, ?)", (sweep, key))

    def ingest(self) -> int:
        """Take in the row files written since the last call (by jobs, maybe on other hosts);
        a file older than the database's row of its point is skipped. The number of rows
        that were new or newer."""
        if self.files is None or self.rows_only:
            return 0
        taken = 0
        with self._open() as db, db:
            known = dict(db.execute("SELECT name, mtime_ns FROM row_files").fetchall())
            for name, mtime, data in self.files.changed(known):
                if name.startswith(SEEN + os.sep):
                    if data.get("sweep") and data.get("key"):
                        db.execute("INSERT OR IGNORE INTO sweep_points VALUES (?, ?)",
                                   (data["sweep"], data["key"]))
                elif data.get("key") and data.get("status") in STATUSES:
                    have = db.execute("SELECT finished FROM points WHERE key = ?",
                                      (data["key"],)).fetchone()
                    if have is None or (have[0] or 0) < (data.get("finished") or 0):
                        _insert(db, data)
                        taken += 1
                db.execute("INSERT OR REPLACE INTO row_files VALUES (?, ?)", (name, mtime))
        return taken

    def sweeps(self) -> dict[str, float]:
        """Each sweep with the time its last point finished."""
        with self._open() as db:
            return {s: f or 0.0 for s, f in db.execute(
                "SELECT s.sweep, MAX(p.finished) FROM sweep_points s JOIN points p "
                "ON p.key = s.key GROUP BY s.sweep")}

    def rows(self, sweep: str | None = None, **where) -> list[dict]:
        """All rows, optionally those of one sweep and with given column values."""
        clauses, args = [], []
        if sweep is not None:
            clauses.append("key IN (SELECT key FROM sweep_points WHERE sweep = ?)")
            args.append(sweep)
        for col, value in where.items():
            if col not in LAYERS + ("status", "key", "layer"):
                raise ValueError(f"cannot filter on {col!r}")
            clauses.append(f"{col} = ?")
            args.append(value)
        sql = "SELECT * FROM points" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._open() as db:
            return [_decode(r) for r in db.execute(sql + " ORDER BY started", args)]


def _insert(db: sqlite3.Connection, row: dict) -> None:
    values = {c: row.get(c) for c in COLUMNS}
    for col in ("config", "metrics", "env"):
        values[col] = json.dumps(values[col] or {}, default=str)
    db.execute(f"INSERT OR REPLACE INTO points ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join(':' + c for c in COLUMNS)})", values)
    if row.get("profile") is None:
        db.execute("DELETE FROM profiles WHERE key = ?", (values["key"],))
    else:
        db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?)",
                   (values["key"], json.dumps(row["profile"], default=str)))
    if values["sweep"] is not None:
        db.execute("INSERT OR IGNORE INTO sweep_points VALUES (?, ?)",
                   (values["sweep"], values["key"]))


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for col in ("config", "metrics", "env"):
        out[col] = json.loads(out[col]) if out[col] else {}
    return out
