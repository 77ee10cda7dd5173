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
FIRST_S, EVERY_S = 5.0, 60.0  # a waiting process says so after FIRST_S, then every EVERY_S


@contextmanager
def wait_for_lock(path: Path, what: str, doing: str = "computing it"):
    """Hold the lock at `path` for the block; while another process holds it, wait and say so.
    Yields the seconds waited."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DLASError("outputs folder", str(path.parent), "a writable folder",
                        reason=f"cannot create it: {exc.strerror or exc}") from None
    lock = FileLock(path)
    start, wait = time.monotonic(), FIRST_S
    while True:
        try:
            lock.acquire(timeout=wait)
            break
        except Timeout:
            log.info("waiting for %s: another process is %s (%.0f s so far, lock %s)",
                     what, doing, time.monotonic() - start, path)
            wait = EVERY_S
    try:
        yield time.monotonic() - start
    finally:
        lock.release()
