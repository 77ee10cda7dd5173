"""Locks that let several processes (parallel sweeps, launcher workers, cluster jobs) share one
outputs folder: whoever takes a key's lock first computes it, the others wait and reuse it.

filelock's locks are advisory `flock`s the kernel drops when their holder dies (SIGKILL
included), so a killed job never leaves a key locked. The lock files themselves stay (removing
one while another process waits on it would let two holders in).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from dlas.errors import DLASError

log = logging.getLogger(__name__)
POLL_S = 5.0  # how often a waiting process says it still waits


@contextmanager
def wait_for_lock(path: Path, what: str):
    """Hold the lock at `path` for the block; while another process holds it, wait and say so."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DLASError("outputs folder", str(path.parent), "a writable folder",
                        reason=f"cannot create it: {exc.strerror or exc}") from None
    lock = FileLock(path)
    start = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=POLL_S)
            break
        except Timeout:
            log.info("waiting for %s: another process is computing it (%.0f s, lock %s)",
                     what, time.monotonic() - start, path)
    try:
        yield
    finally:
        lock.release()
