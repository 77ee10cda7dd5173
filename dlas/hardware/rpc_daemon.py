"""A TVM RPC tracker and one RPC server in one process: what `Hardware.session()` starts locally.

Run as a script (`python rpc_daemon.py --key local --parent PID ...`), never imported by DLAS: it
prints "<tracker_port> <server_port>" on one line once both listen, then serves until killed.

Why not `python -m tvm.exec.rpc_tracker` + `rpc_server`: each of those imports TVM (~3 s on a
2-core VM, mostly torch), then starts a popen_worker child that imports it again and survives a
SIGTERM to its parent. Here the tracker and server states those workers would hold run in this one process
(TVM's own thread-per-service design) without torch, so startup is one ~1 s import. The process
leads its own process group (the caller starts it with start_new_session=True), so one killpg
removes it and the per-session children the server forks. If the caller dies without cleaning
up (even by SIGKILL), the kernel sends this process SIGTERM (PR_SET_PDEATHSIG) and it kills its
group. PDEATHSIG follows the *thread* that started it: start sessions from a long-lived thread.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import sys

PR_SET_PDEATHSIG = 1


_workdir: str | None = None


def _kill_group(signum, frame):  # pragma: no cover - runs in the daemon
    # Only reached when the owner cannot clean up (it died, or someone else sent SIGTERM):
    # remove the work dir it would have removed (uploaded libraries), then the whole group.
    if _workdir:
        shutil.rmtree(_workdir, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the caller's teardown is the only guard
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        _kill_group(None, None)


def _surviving(serving):
    """TVM's per-connection `_serving`, made to outlive a session that crashes.

    When a session's process exits non-zero (a candidate kernel that segfaults on the tuner's
    random inputs), TVM's `_serving` raises in the server's listen thread, which ends it: the
    server never registers with the tracker again and every later request waits forever. The
    crash already reached the client (its connection closed), so the server goes on serving."""
    def serve(sock, *args):
        cwd = os.getcwd()
        try:
            serving(sock, *args)
        except RuntimeError:
            os.chdir(cwd)  # what `_serving` would have restored
            sock.close()
    return serve


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tracker-port", type=int, required=True)
    p.add_argument("--server-port", type=int, required=True)
    p.add_argument("--port-span", type=int, default=64, help="ports tried from each start")
    p.add_argument("--key", required=True)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--workdir", help="the owner's temporary dir, removed if the owner dies")
    a = p.parse_args(argv)
    global _workdir
    _workdir = a.workdir

    signal.signal(signal.SIGTERM, _kill_group)
    # The server forks a process per session and SIGTERMs it on session timeout: that must kill
    # it at once (default action), not run this handler (which waits for its C++ call to end).
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    _die_with_parent(a.parent)

    # tvm_ffi imports torch if it can (2.3 s of a 3.2 s startup on a 2-core VM); serving compiled
    # libraries never needs it, so make that import fail fast.
    sys.modules.setdefault("torch", None)
    from tvm.rpc import server as rpc_server
    from tvm.rpc.server import PopenRPCServerState
    rpc_server._serving = _surviving(rpc_server._serving)
    from tvm.rpc.tracker import PopenTrackerServerState

    tracker = PopenTrackerServerState(a.host, a.tracker_port,
                                      min(a.tracker_port + a.port_span, 65536), silent=True)
    server = PopenRPCServerState(a.host, a.server_port, min(a.server_port + a.port_span, 65536),
                                 tracker_addr=(a.host, tracker.port), key=a.key, silent=True)
    sys.stdout.write(f"{tracker.port} {server.port}\n")
    sys.stdout.flush()
    # nobody reads stdout any more: point it at /dev/null so a stray print cannot hit a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    while True:  # the main thread must stay alive: only it runs Python signal handlers
        signal.pause()


if __name__ == "__main__":
    main()
