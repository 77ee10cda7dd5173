"""A TVM RPC server for one emulated board: run by an aarch64 Python under qemu-user.

Run as a script by `python -m dlas.hardware.emulated`, never imported by DLAS (the aarch64 Python
has no torch and no DLAS). It is `python -m tvm.exec.rpc_server` without its PopenWorker, whose
exec of sys.executable needs binfmt_misc: the server state runs in this process. It registers
the global function `dlas.emulator`, which the RPC session's processes (forked from this one)
answer with the emulator's name: that is how a measured row knows its board was emulated.
Prints "<server_port>" once it listens, then serves until killed.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tracker", required=True, help="HOST:PORT of the RPC tracker")
    p.add_argument("--key", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9200, help="first port tried")
    p.add_argument("--port-end", type=int, default=9300)
    p.add_argument("--emulator", required=True, help="what emulates this board (qemu version)")
    a = p.parse_args(argv)
    # the server forks a process per session and SIGTERMs it on session timeout: that must kill
    # it at once (the default action)
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    sys.modules.setdefault("torch", None)  # tvm_ffi imports torch if it can; there is none
    import tvm
    from tvm.rpc.server import PopenRPCServerState

    tvm.register_global_func("dlas.emulator", lambda: a.emulator, override=True)
    host, port = a.tracker.rsplit(":", 1)
    server = PopenRPCServerState(a.host, a.port, a.port_end, tracker_addr=(host, int(port)),
                                 key=a.key, silent=True)
    print(server.port, flush=True)
    while True:  # the main thread must stay alive: only it runs Python signal handlers
        signal.pause()


if __name__ == "__main__":
    main()
