"""The results store: one SQLite row per point, the primary record of every study.

WAL mode and a busy timeout let parallel sweep jobs (joblib, SLURM array tasks on a
shared filesystem with locking) write at once. A point is identified by its config key,
so re-running a sweep updates rows in place instead of adding duplicates.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

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
)"""


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.row_factory = sqlite3.Row
        return db

    def record(self, key: str, *, status: str, layers: dict, sweep: str | None = None,
               layer: str | None = None, reason: str | None = None, config: dict | None = None,
               metrics: dict | None = None, env: dict | None = None, started: float | None = None):
        """Insert or replace the row of point `key`."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        row = dict(key=key, sweep=sweep, status=status, layer=layer, reason=reason,
                   **{name: layers.get(name) for name in LAYERS},
                   config=json.dumps(config or {}, default=str),
                   metrics=json.dumps(metrics or {}, default=str),
                   env=json.dumps(env or {}, default=str),
                   started=started, finished=time.time())
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with closing(self._connect()) as db, db:
            db.execute(f"INSERT OR REPLACE INTO points ({cols}) VALUES ({marks})", row)

    def get(self, key: str) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM points WHERE key = ?", (key,)).fetchone()
        return _decode(row) if row else None

    def mark_seen(self, key: str, sweep: str | None):
        """Attach an already-done point to the current sweep (for its summary)."""
        with closing(self._connect()) as db, db:
            db.execute("UPDATE points SET sweep = ? WHERE key = ?", (sweep, key))

    def rows(self, sweep: str | None = None, **where) -> list[dict]:
        """All rows, optionally those of one sweep and with given column values."""
        clauses, args = [], []
        if sweep is not None:
            clauses.append("sweep = ?")
            args.append(sweep)
        for col, value in where.items():
            if col not in LAYERS + ("status", "key", "layer"):
                raise ValueError(f"cannot filter on {col!r}")
            clauses.append(f"{col} = ?")
            args.append(value)
        sql = "SELECT * FROM points" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with closing(self._connect()) as db:
            return [_decode(r) for r in db.execute(sql + " ORDER BY started", args)]


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for col in ("config", "metrics", "env"):
        out[col] = json.loads(out[col]) if out[col] else {}
    return out
