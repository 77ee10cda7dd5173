"""The sweep's head takes in the rows its jobs hand over as files, as they arrive.

Jobs on other hosts (SLURM) never open the SQLite store (`paths.rows_only`); jobs on this host
write it directly, and their row files are the copy a killed job or head leaves. Either way
the head takes in every row file at the start of a sweep (rows a killed earlier run left), every
`every_s` while it runs (with a progress line when rows came in) and at its end.
"""
from __future__ import annotations

import logging
import threading

from dlas.store.results import ResultsStore

log = logging.getLogger(__name__)


class RowIntake:
    def __init__(self, store: ResultsStore, every_s: float = 10.0):
        self.store, self.every_s = store, every_s
        self.taken = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> int:
        try:
            taken = self.store.ingest()
        except Exception as exc:  # noqa: BLE001 - a busy or damaged store: the next call retries
            log.warning("results store: row files not taken in yet: %s", exc)
            return 0
        self.taken += taken
        return taken

    def start(self) -> RowIntake:
        taken = self.take()
        if taken:
            print(f"results store: took in {taken} rows left by earlier runs", flush=True)
        self._thread = threading.Thread(target=self._loop, name="dlas-row-intake", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            taken = self.take()
            if taken:
                print(f"results store: took in {taken} rows from jobs ({self.taken} in all)",
                      flush=True)

    def stop(self) -> int:
        """Stop watching and take in what is left; the rows taken in since start()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.take()
        return self.taken
