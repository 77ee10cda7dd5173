"""The results store: one SQLite row per point, the primary record of every study.

WAL mode and a busy timeout let parallel sweep jobs (joblib, SLURM array tasks on a
shared filesystem with locking) write at once. A point is identified by its config key,
so re-running a sweep updates rows in place instead of adding duplicates. A point belongs
to every sweep that asked for it (table `sweep_points`); its `sweep` column is the sweep
that measured it. A lock per point (`lock`) lets concurrent sweeps on one store wait for
each other's points instead of measuring them twice. A point measured with
measure.profile=true has its per-layer profile (one JSON list, dlas/hardware/profile.py) in
table `profiles` beside its row; it belongs to the row's measurement, so a row recorded
without one drops the old one.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path

from dlas.errors import DLASError
from dlas.store.locks import wait_for_lock

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
"""


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
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

    @property
    def _locks(self) -> Path:
        return self.path.parent / f".{self.path.name}.locks"

    @contextmanager
    def _open(self):
        """A connection; a file that is not a readable SQLite store is said in one line."""
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
        with wait_for_lock(self._locks / f"{key}.lock", f"point {key}"):
            yield

    def record(self, key: str, *, status: str, layers: dict, sweep: str | None = None,
               layer: str | None = None, reason: str | None = None, config: dict | None = None,
               metrics: dict | None = None, env: dict | None = None, started: float | None = None,
               profile: list[dict] | None = None):
        """Insert or replace the row of point `key` (and its per-layer profile)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        from dlas.store.schema import undeclared  # (not at the top: the schema runs as __main__)

        if unknown := undeclared(metrics or {}):  # kept (a result is never lost), but said
            log.warning("metrics not declared in dlas/store/schema.py: %s", ", ".join(unknown))
        row = dict(key=key, sweep=sweep, status=status, layer=layer, reason=reason,
                   **{name: layers.get(name) for name in LAYERS},
                   config=json.dumps(config or {}, default=str),
                   metrics=json.dumps(metrics or {}, default=str),
                   env=json.dumps(env or {}, default=str),
                   started=started, finished=time.time())
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self._open() as db, db:
            db.execute(f"INSERT OR REPLACE INTO points ({cols}) VALUES ({marks})", row)
            if profile is None:
                db.execute("DELETE FROM profiles WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?)",
                           (key, json.dumps(profile, default=str)))
            if sweep is not None:
                db.execute("INSERT OR IGNORE INTO sweep_points VALUES (?, ?)", (sweep, key))

    def get(self, key: str) -> dict | None:
        with self._open() as db:
            row = db.execute("SELECT * FROM points WHERE key = ?", (key,)).fetchone()
        return _decode(row) if row else None

    def profile(self, key: str) -> list[dict] | None:
        """The per-layer profile of point `key`, None when it was measured without one."""
        with self._open() as db:
            row = db.execute("SELECT profile FROM profiles WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def mark_seen(self, key: str, sweep: str | None):
        """Count an already-done point in the current sweep too (for its summary)."""
        if sweep is None:
            return
        with self._open() as db, db:
            db.execute("INSERT OR IGNORE INTO sweep_points VALUES (?, ?)", (sweep, key))

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


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for col in ("config", "metrics", "env"):
        out[col] = json.loads(out[col]) if out[col] else {}
    return out
