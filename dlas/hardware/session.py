"""A connected RPC session that knows how to get a fresh one.

RemoteSession behaves like tvm.rpc.RPCSession (attribute access is forwarded: upload,
load_module, cpu, cuda, remove, ...) and adds `reconnect()`, which Measurement uses to retry once
after a dropped connection or a timed-out call. For the local tracker/server it restarts them
first, because the stuck call still holds the only server; a remote board's server frees itself
once its session_timeout kills the stuck session, and the request waits in the tracker queue.

`abandon()` shuts the session's socket down. A call stuck past its deadline then fails at once
instead of running on: otherwise it holds the session's lock, and freeing any remote handle
(which happens when the caller's frames unwind) would block until the remote call ends, and a
thread still inside TVM's C++ at interpreter exit aborts the process.
"""
from __future__ import annotations

import logging
import os
import socket

import tvm.rpc

from dlas.errors import DLASError, first_line
from dlas.hardware.calls import RETRYABLE, call_with_timeout
from dlas.hardware.local_rpc import LocalRPC
from dlas.hardware.tracker import check_key, request_server

log = logging.getLogger(__name__)
CONNECT_TRIES = 3  # servers of a key's pool tried for one session before giving up


class RemoteSession:
    def __init__(self, key: str, host: str, port: int, *, connect_timeout_s: float = 10,
                 session_timeout_s: float = 600, request_timeout_s: float | None = None,
                 local: LocalRPC | None = None):
        self.key, self.host, self.port = key, host, port
        self.connect_timeout_s = connect_timeout_s
        self.session_timeout_s = session_timeout_s
        # A request waits in the tracker queue while others hold every server under the key.
        self.request_timeout_s = request_timeout_s or session_timeout_s or None
        self.local = local
        self.server: str | None = None  # address:port of the server granted (rows record it)
        self.dropped: list[str] = []  # servers granted that did not take the session, and why
        self.lock_wait_s = 0.0  # spent waiting for the host-wide measurement lock (Hardware)
        self.rpc: tvm.rpc.RPCSession | None = None
        self._fds: set[int] = set()  # this session's socket(s), found after connecting
        self.connect()

    @property
    def tracker(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> RemoteSession:
        summary = check_key(self.host, self.port, self.key, self.connect_timeout_s)
        try:
            url, port, matchkey = request_server(self.host, self.port, self.key,
                                                 self.request_timeout_s, self.connect_timeout_s)
        except TimeoutError as err:
            queue = summary.get("queue_info", {}).get(self.key, {})
            raise DLASError("RPC key", self.key, layer="hardware",
                            reason=f"no server under it at tracker {self.tracker} became free "
                                   f"within {self.request_timeout_s:g} s (it had "
                                   f"{queue.get('free', 0)} free, {queue.get('pending', 0)} "
                                   "pending): another job may hold it; see `python -m "
                                   f"tvm.exec.query_rpc_tracker --host {self.host} "
                                   f"--port {self.port}`") from err
        before = _sockets_to({port})
        timeout = self.session_timeout_s or 0  # the server ends the session after this; 0: never
        try:
            self.rpc = call_with_timeout(
                lambda: tvm.rpc.connect(url, port, matchkey, session_timeout=timeout),
                self.connect_timeout_s, f"connect to the RPC server {url}:{port} (key {self.key!r})")
        except RETRYABLE as err:
            # A dead server stays listed until the tracker sees its connection close, a hung
            # one until it re-registers: drop it and ask the tracker for another of the pool.
            self.dropped.append(f"{url}:{port}: {first_line(err)}")
            if len(self.dropped) >= CONNECT_TRIES:
                raise
            log.warning("RPC server %s:%d (key %r) did not take the session (%s); asking the "
                        "tracker for another", url, port, self.key, first_line(err))
            return self.connect()
        self._fds = _sockets_to({port}) - before
        self.server = f"{url}:{port}"
        return self

    def reconnect(self) -> RemoteSession:
        """Drop this session and request a fresh one (restarting the local server if ours)."""
        self.abandon()
        if self.local is not None:
            self.local.restart()
            self.port = self.local.port
        return self.connect()

    def emulator(self) -> str | None:
        """What emulates the board, as its own server says (an emulated board's server answers
        `dlas.emulator`: dlas.hardware.emulated); None for a real board."""
        get_function = self.get_function  # (a closed session raises here, not below)

        def ask():
            try:
                return str(get_function("dlas.emulator")())
            except AttributeError:  # "Module has no function": a real board's server
                return None
        return call_with_timeout(ask, self.connect_timeout_s, f"ask the {self.key!r} server "
                                 "whether it is emulated")

    def close(self) -> None:
        self.rpc = None  # the socket closes when the last reference goes

    def abandon(self) -> None:
        """Shut the connection down (a call in flight fails at once) and close the session."""
        for fd in self._fds:
            sock = socket.socket(fileno=fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()  # TVM owns the descriptor and closes it
        self._fds = set()
        self.close()

    def __getattr__(self, name):
        if name.startswith("_"):  # keep hasattr/copy/pickle probing plain
            raise AttributeError(name)
        rpc = self.__dict__.get("rpc")
        if rpc is None:
            raise DLASError("RPC session", self.key, layer="hardware",
                            reason=f"closed; cannot use .{name}")
        return getattr(rpc, name)

    def __repr__(self) -> str:
        state = "open" if self.rpc is not None else "closed"
        return f"RemoteSession(key={self.key!r}, tracker={self.tracker}, {state})"


def _sockets_to(ports: set[int]) -> set[int]:
    """Descriptors of this process's TCP sockets connected to one of `ports` (Linux; else none)."""
    found = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=int(name))
        except OSError:
            continue
        try:
            peer = sock.getpeername()
            if isinstance(peer, tuple) and peer[1] in ports:
                found.add(int(name))
        except OSError:
            pass
        finally:
            sock.detach()
    return found
