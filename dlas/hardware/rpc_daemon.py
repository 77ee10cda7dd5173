"""A TVM RPC tracker and one RPC server in a single process: what `Hardware.session()` starts locally.

Run as a script (`python rpc_daemon.py --key local --parent PID ...`), never imported by DLAS: it
prints "<tracker_port> <server_port>" on one line once both listen, then serves until killed.

Why not `python -m tvm.exec.rpc_tracker` + `rpc_server`: each of those imports TVM (~3 s here) and
then starts a popen_worker child that imports it again and survives a SIGTERM to its parent. Here
the tracker and server states that those workers would hold run in this one process (TVM's own
thread-per-service design), so startup costs one import, and the process is the leader of its own
process group (the caller starts it with start_new_session=True), so one killpg removes it and the
per-session children the server forks. If the caller dies without cleaning up (even SIGKILL), the
kernel sends this process SIGTERM (PR_SET_PDEATHSIG) and it kills its group.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _kill_group(signum, frame):  # pragma: no cover - runs in the daemon
    os.killpg(0, signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the caller's teardown is the only guard
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        _kill_group(None, None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tracker-port", type=int, required=True)
    p.add_argument("--server-port", type=int, required=True)
    p.add_argument("--port-span", type=int, default=64, help="ports tried from each start")
    p.add_argument("--key", required=True)
    p.add_argument("--parent", type=int, required=True)
    a = p.parse_args(argv)

    signal.signal(signal.SIGTERM, _kill_group)
    _die_with_parent(a.parent)

    from tvm.rpc.server import PopenRPCServerState
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
