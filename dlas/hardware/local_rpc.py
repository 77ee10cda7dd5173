"""Starting and always stopping the loopback RPC tracker + server that `local` hardware uses.

The daemon (rpc_daemon.py) runs in its own process group; stop() SIGKILLs the whole group, so the
per-session processes the server forks go too. Three guards make sure it happens: the caller's
`finally` (exceptions, KeyboardInterrupt, and SIGTERM through `terminate_on_sigterm`), an atexit
hook for anything still running, and the daemon's parent-death signal for a caller killed outright.
"""
from __future__ import annotations

import atexit
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from dlas.errors import DLASError
from dlas.hardware.tracker import wait_for_key

DAEMON = Path(__file__).with_name("rpc_daemon.py")
HOST = "127.0.0.1"
_LIVE: set[LocalRPC] = set()


def _free_ports(n: int) -> list[int]:
    """n distinct ports the kernel considers free now (the daemon tries the next ones if taken)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalRPC:
    """One tracker + one server (under `key`) on 127.0.0.1, in a process group of their own."""

    def __init__(self, key: str, startup_timeout_s: float = 60, num_threads: int | None = None):
        self.key, self.startup_timeout_s, self.num_threads = key, startup_timeout_s, num_threads
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.host, self.port, self.server_port = HOST, None, None

    def _env(self) -> dict:
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        if self.num_threads:  # TVM's thread pool reads it when the server starts
            env["TVM_NUM_THREADS"] = str(self.num_threads)
        return env

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> LocalRPC:
        # The server's session work dirs (uploaded libraries) go under tmp, removed in stop().
        self.tmp = Path(tempfile.mkdtemp(prefix="dlas-rpc-"))
        tracker_port, server_port = _free_ports(2)
        with open(self.tmp / "rpc.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(DAEMON), "--host", HOST, "--key", self.key,
                 "--tracker-port", str(tracker_port), "--server-port", str(server_port),
                 "--parent", str(os.getpid()), "--workdir", str(self.tmp)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, env=self._env())
        _LIVE.add(self)
        try:
            self.port, self.server_port = self._read_ports()
            wait_for_key(HOST, self.port, self.key, self.startup_timeout_s,
                         alive=lambda: self.proc.poll() is None)
        except (DLASError, ValueError, OSError) as err:
            log_tail = self.log_tail()
            self.stop()
            raise DLASError("local RPC tracker/server", self.key, layer="hardware",
                            reason=f"did not start ({err}); daemon log: {log_tail or 'empty'}"
                            ) from err
        except BaseException:  # KeyboardInterrupt, SIGTERM: clean up and let it through
            self.stop()
            raise
        return self

    def _read_ports(self) -> tuple[int, int]:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline, line = time.monotonic() + self.startup_timeout_s, b""
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"no ports reported within {self.startup_timeout_s:g} s")
                chunk = os.read(self.proc.stdout.fileno(), 64)
                if not chunk:
                    raise OSError("the daemon exited before reporting its ports")
                line += chunk
        finally:
            sel.close()
            self.proc.stdout.close()
        tracker_port, server_port = map(int, line.split())
        return tracker_port, server_port

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = (self.tmp / "rpc.log").read_text(errors="replace").strip().splitlines()
        except (OSError, TypeError):
            return ""
        return " | ".join(lines[-n:])

    def stop(self) -> None:
        """Kill the daemon's process group and remove its files; safe to call twice."""
        if self.proc is not None:
            try:  # the leader is unreaped until wait(), so its pid still names our group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        _LIVE.discard(self)

    def restart(self) -> LocalRPC:
        self.stop()
        return self.start()


@atexit.register
def _stop_all() -> None:
    for rpc in list(_LIVE):
        rpc.stop()


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM so that `finally` blocks run (exit status 143)."""


@contextmanager
def terminate_on_sigterm():
    """While active, SIGTERM raises Terminated instead of killing the process outright.

    A handler someone else installed (e.g. a launcher's) is called instead and keeps its meaning.
    Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
