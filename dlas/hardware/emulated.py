"""Emulated boards: an aarch64 TVM RPC server under qemu-user per key, behind a tracker.

    python -m dlas.hardware.emulated --key hikey --key xavier        # foreground; Ctrl-C stops
    python -m dlas.hardware.emulated --key hikey --background        # returns once registered
    python -m dlas.hardware.emulated --stop                          # stops a background one

The first run sets up qemu's arm64 root and the aarch64 wheels in a cache (emulated_root). It
reuses the tracker at the board configs' address (DLAS_TRACKER_HOST/PORT, default
127.0.0.1:9190) or starts one there, then registers one server per key, so `hardware=hikey` and
`hardware=xavier` (device=cpu) run end to end on this machine: the cross-compiled aarch64 library
is uploaded, loaded and run by the aarch64 TVM runtime. Each server answers `dlas.emulator`, so
the rows it measures say `emulated: true`; its latency is the emulator's, not a board's.
Each board server leads its own process group: `kill -- -PID` (PID printed at start) stops one.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlas.errors import DLASError
from dlas.hardware.emulated_root import Emulator, default_cache, setup
from dlas.hardware.tracker import tracker_summary, wait_for_key

SERVER = Path(__file__).with_name("emulated_server.py")
KEYS = ("hikey", "xavier")  # the board configs' keys (conf/hardware)
START_TIMEOUT_S = 300       # TVM's import alone takes 15-30 s under qemu
READY = "emulated boards ready"


def _say(msg: str) -> None:
    print(f"[emulated] {msg}", flush=True)


def _pdeathsig() -> None:  # in the child before exec: the server dies with its launcher
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_tracker(host: str, port: int):
    """The tracker at host:port: None when one already answers there, else one started in this
    process (kept alive by the returned state)."""
    try:
        tracker_summary(host, port, timeout_s=3)
        _say(f"using the running tracker at {host}:{port}")
        return None
    except DLASError:
        pass
    from tvm.rpc.tracker import PopenTrackerServerState
    try:
        state = PopenTrackerServerState(host, port, port + 1, silent=True)
    except (OSError, ValueError) as err:
        raise DLASError("RPC tracker", f"{host}:{port}", "a free port or a running tracker",
                        layer="hardware", reason=f"cannot listen there ({err}) and no tracker "
                        "answers there") from None
    _say(f"started a tracker at {host}:{port}")
    return state


def start_server(emu: Emulator, key: str, host: str, port: int) -> subprocess.Popen:
    """One aarch64 RPC server under qemu, to register under key at the tracker."""
    cmd = emu.command(str(SERVER), "--tracker", f"{host}:{port}", "--key", key,
                      "--emulator", emu.version)
    return subprocess.Popen(cmd, env=emu.env(), stdout=subprocess.DEVNULL, preexec_fn=_pdeathsig)


def wait_registered(emu: Emulator, proc: subprocess.Popen, key: str, host: str, port: int,
                    since: float) -> None:
    """Return once the server is registered and free (since: perf_counter() at its start)."""
    try:
        wait_for_key(host, port, key, START_TIMEOUT_S, alive=lambda: proc.poll() is None)
    except DLASError:
        proc.kill()
        raise DLASError("emulated board", key, layer="hardware",
                        reason=f"its aarch64 RPC server (exit code {proc.wait()}) did not "
                               f"register at {host}:{port} within {START_TIMEOUT_S} s; run "
                               f"`{' '.join(proc.args)}` with PYTHONPATH={emu.site} to see "
                               "why") from None
    _say(f"board {key!r}: aarch64 RPC server pid {proc.pid} registered in "
         f"{time.perf_counter() - since:.0f} s ({emu.version}); `kill -- -{proc.pid}` takes "
         "this board down")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and its session processes
        except ProcessLookupError:
            pass
        proc.wait()


def serve(keys: list[str], host: str, port: int, cache: Path | None) -> None:
    """Set up, start the tracker (if none) and the servers, then wait until stopped."""
    t0 = time.perf_counter()
    emu = setup(cache)
    _say(f"emulator: {emu.version}, arm64 root {emu.root}, wheels {emu.site} "
         f"(ready in {time.perf_counter() - t0:.0f} s)")
    tracker = start_tracker(host, port)
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # -> finally below
    try:
        # started together: each spends 15-30 s importing TVM under qemu
        since = time.perf_counter()
        procs += [start_server(emu, key, host, port) for key in keys]
        for proc, key in zip(procs, keys):
            wait_registered(emu, proc, key, host, port, since)
        _say(f"{READY} in {time.perf_counter() - t0:.0f} s: keys {', '.join(keys)} at tracker "
             f"{host}:{port} (pid {os.getpid()}); stop with Ctrl-C or `kill {os.getpid()}`")
        live = {p.pid: k for p, k in zip(procs, keys)}
        while live:
            for proc in procs:
                if proc.pid in live and proc.poll() is not None:
                    _say(f"board {live.pop(proc.pid)!r} (pid {proc.pid}) exited with code "
                         f"{proc.returncode}; it stays down")
            time.sleep(1)
        _say("no board left; stopping")
    finally:
        stop(procs)
        del tracker


def background(argv: list[str], pid_file: Path, log_file: Path) -> int:
    """Start this module in the foreground mode as a detached process; return once it is ready."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dlas.hardware.emulated", *argv],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while proc.poll() is None:
        text = log_file.read_text()
        if READY in text:
            pid_file.write_text(f"{proc.pid}\n")
            print(text, end="")
            print(f"running in the background (log {log_file}); stop with "
                  f"`python -m dlas.hardware.emulated --stop --pid-file {pid_file}`")
            return 0
        time.sleep(1)
    print(log_file.read_text(), end="", file=sys.stderr)
    return 1


def stop_background(pid_file: Path) -> int:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        print(f"no emulated boards to stop: no pid in {pid_file}", file=sys.stderr)
        return 1
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"the emulated boards (pid {pid}) had already stopped")
        return 0
    print(f"stopped the emulated boards (pid {pid})")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m dlas.hardware.emulated",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--key", action="append", choices=KEYS,
                   help="a board to emulate (repeat for several; default: hikey)")
    p.add_argument("--tracker-host", default=os.environ.get("DLAS_TRACKER_HOST", "127.0.0.1"))
    p.add_argument("--tracker-port", type=int,
                   default=int(os.environ.get("DLAS_TRACKER_PORT", "9190")))
    p.add_argument("--cache", type=Path, default=None,
                   help=f"setup cache (default {default_cache()})")
    p.add_argument("--setup-only", action="store_true", help="set up the cache and exit")
    p.add_argument("--background", action="store_true",
                   help="detach once the boards are registered (pid in --pid-file)")
    p.add_argument("--stop", action="store_true", help="stop the background boards")
    p.add_argument("--pid-file", type=Path, default=None,
                   help="default: <cache>/boards-<tracker port>.pid")
    a = p.parse_args(argv)
    pid_file = a.pid_file or (a.cache or default_cache()) / f"boards-{a.tracker_port}.pid"
    try:
        if a.stop:
            return stop_background(pid_file)
        if a.setup_only:
            _say(f"set up: {setup(a.cache)}")
            return 0
        if a.background:
            rest = [x for x in argv if x != "--background"]
            return background(rest, pid_file, pid_file.with_suffix(".log"))
        serve(list(dict.fromkeys(a.key or ["hikey"])), a.tracker_host, a.tracker_port, a.cache)
        code = 0
    except DLASError as err:
        print(f"[emulated] {err}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        _say("stopped")
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # TVM's tracker thread is not a daemon thread: it would keep this process


if __name__ == "__main__":
    sys.exit(main())
