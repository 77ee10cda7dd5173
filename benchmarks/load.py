"""Load test: many cheap points through 2 parallel jobs while things die; nothing may be lost.

    python benchmarks/load.py [--points 201] [--outputs DIR]

Points: resnet18 on digits (`debug=fast`: one tiny training, shared) x 3 primitives (3
compiles) x `measure.repeat` values: every point is a real compile-or-reuse, measurement and
accuracy check, measured through a tracker with two loopback TVM RPC servers under one key.

1. chaos: `deploy.py -m` with `hydra/launcher=joblib n_jobs=2`; one RPC server is SIGKILLed
   (and restarted) twice, then one job (a loky worker) is SIGKILLed, which ends the sweep;
2. re-run: the same command finishes the rest;
   after each, every point must have at most / exactly one row, and every row line a job
   printed must be in the store (0 lost, 0 duplicated);
3. `force=measure`: every point measured again, nothing compiled: the per-point framework
   overhead = (the sweep's time x jobs - the points' measure_s) / points (Hydra, composing and checking
   the config, loading data, the store, the accuracy check: all but train, compress, compile,
   tune and measure);
4. the same command again, everything cached: time per point.
A sweep's time runs from its first line to its summary: the deploy.py process's start-up
(imports, ~10 s) is not in it, the joblib workers' start-up is.
"""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from dlas.cli import CONF_DIR  # noqa: E402
from dlas.hardware.local_rpc import _free_ports  # noqa: E402
from dlas.hardware.tracker import registered_keys, tracker_summary  # noqa: E402
from dlas.stages.keys import point_key  # noqa: E402
from dlas.store.results import ResultsStore  # noqa: E402

PRIMITIVES = ("direct", "gemm", "spatial_pack")
JOBS = 2
KEY = "load"
STATUS_WORDS = ("ok ", "failed ", "unsupported ")


def serve(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def registered(port: int) -> int:
    try:
        return registered_keys(tracker_summary("127.0.0.1", port)).get(KEY, 0)
    except Exception:  # noqa: BLE001 - still starting
        return 0


class Pool:
    """A tracker and two RPC servers under KEY on loopback; server 0 can be killed and
    restarted."""

    def __init__(self):
        self.tracker_port, *self.ports = _free_ports(3)
        self.tracker = serve("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                             str(self.tracker_port), "--port-end", str(self.tracker_port + 1))
        self.servers = [self._server(p) for p in self.ports]
        self.wait(2)

    def _server(self, port: int) -> subprocess.Popen:
        return serve("tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{self.tracker_port}",
                     "--key", KEY, "--host", "127.0.0.1", "--port", str(port),
                     "--port-end", str(port + 1))

    def wait(self, n: int) -> None:
        deadline = time.monotonic() + 180
        while registered(self.tracker_port) < n:
            if time.monotonic() > deadline:
                sys.exit(f"the RPC servers under {KEY!r} did not register")
            time.sleep(0.5)

    def kill_and_restart(self, i: int = 0) -> None:
        os.killpg(self.servers[i].pid, signal.SIGKILL)
        self.servers[i].wait()
        print(f"  killed RPC server 127.0.0.1:{self.ports[i]}", flush=True)
        self.servers[i] = self._server(self.ports[i])

    def stop(self) -> None:
        for p in [self.tracker, *self.servers]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def sweep_args(points: int, pool: Pool) -> list[str]:
    per = -(-points // len(PRIMITIVES))
    return ["-m", f"primitive={','.join(PRIMITIVES)}",
            f"measure.repeat={','.join(str(r) for r in range(2, 2 + per))}",
            "debug=fast", "dataset.eval_samples=20", "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={JOBS}", "hardware.tracker_host=127.0.0.1",
            f"hardware.tracker_port={pool.tracker_port}", f"hardware.key={KEY}"]


def expected_keys(args: list[str], outputs: Path) -> set[str]:
    """The point key of every job of the sweep, composed as deploy.py composes them."""
    sweeps = {a.split("=")[0]: a.split("=")[1].split(",") for a in args if "," in a}
    fixed = [a for a in args if a != "-m" and "," not in a and not a.startswith("hydra")]
    keys = set()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for prim in sweeps["primitive"]:
            for rep in sweeps["measure.repeat"]:
                cfg = compose("deploy", [f"paths.root={outputs}", "logger.mode=disabled", *fixed,
                                         f"primitive={prim}", f"measure.repeat={rep}"])
                keys.add(point_key(cfg))
    return keys


def run(args: list[str], outputs: Path, chaos=None) -> tuple[int, float, str]:
    """(exit status, seconds from the sweep's first line to its summary, output): the sweep's
    own time, without the start-up of the deploy.py process (imports)."""
    proc = subprocess.Popen([sys.executable, "deploy.py", *args], cwd=ROOT,
                            env={**os.environ, "DLAS_OUTPUTS": str(outputs)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    marks: dict[str, float] = {}

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(("sweep: ", "sweep summary")):
                marks.setdefault(line[:7], time.perf_counter())
            marks["last"] = time.perf_counter()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if chaos is not None:
        chaos(proc, lines)
    proc.wait()
    reader.join()
    start = marks.get("sweep: ", time.perf_counter())
    return proc.returncode, marks.get("sweep s", marks.get("last", start)) - start, "".join(lines)


def printed_rows(out: str) -> int:
    return sum(line.startswith(STATUS_WORDS) for line in out.splitlines())


def check_rows(outputs: Path, keys: set[str], out: str, complete: bool) -> dict:
    store = ResultsStore(outputs / "results.sqlite", rows=outputs / "rows")
    store.ingest()
    with sqlite3.connect(outputs / "results.sqlite") as db:
        counts = dict(db.execute("SELECT key, COUNT(*) FROM points GROUP BY key").fetchall())
    rows = {r["key"]: r for r in store.rows() if r["key"] in keys}
    fresh = printed_rows(out) - out.count("(reused)")
    found = {
        "points": len(keys), "rows": len(rows),
        "duplicated": sum(n - 1 for n in counts.values()),
        "lost": max(0, fresh - sum(1 for r in rows.values())) if not complete else
        len(keys) - len(rows),
        "not ok": sum(r["status"] != "ok" for r in rows.values()),
        "row files": sum((outputs / "rows" / f"{k}.json").is_file() for k in keys),
    }
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=201, help="at least this many points")
    ap.add_argument("--outputs", type=Path, default=None)
    a = ap.parse_args()
    outputs = a.outputs or Path(tempfile.mkdtemp(prefix="dlas-load-"))
    print(f"outputs: {outputs}; load average {os.getloadavg()[0]:.1f} on "
          f"{len(os.sched_getaffinity(0))} CPUs (shared machine: times are under this load)")
    pool = Pool()
    try:
        args = sweep_args(a.points, pool)
        keys = expected_keys(args, outputs)
        n = len(keys)
        print(f"{n} points, {JOBS} jobs, servers {pool.ports} under {KEY!r}", flush=True)

        def chaos(proc, lines):
            done = lambda: sum(x.startswith(STATUS_WORDS) for x in list(lines))  # noqa: E731
            for frac in (0.15, 0.3):
                while done() < frac * n and proc.poll() is None:
                    time.sleep(0.5)
                if proc.poll() is None:
                    pool.kill_and_restart(0)
            while done() < 0.45 * n and proc.poll() is None:
                time.sleep(0.5)
            workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if "popen_loky" in " ".join(c.cmdline())]  # (not its resource tracker)
            if workers and proc.poll() is None:
                workers[0].send_signal(signal.SIGKILL)
                print(f"  SIGKILLed job process {workers[0].pid} after {done()} points",
                      flush=True)

        rc, wall, out = run(args, outputs, chaos)
        found = check_rows(outputs, keys, out, complete=False)
        print(f"1 chaos:   exit {rc}, {wall:.0f} s; {found}", flush=True)
        rc, wall, out = run(args, outputs)
        found = check_rows(outputs, keys, out, complete=True)
        print(f"2 re-run:  exit {rc}, {wall:.0f} s; {found}", flush=True)

        rc, wall, out = run([*args, "force=measure"], outputs)
        rows = [r for r in ResultsStore(outputs / "results.sqlite").rows() if r["key"] in keys]
        measure = sum(r["metrics"].get("measure_s", 0.0) for r in rows)
        print(f"3 force=measure: exit {rc}, sweep {wall:.0f} s; measure_s summed {measure:.0f} s; "
              f"framework overhead per point {(wall * JOBS - measure) / n:.2f} s "
              f"(sweep time x {JOBS} jobs - measure_s, / {n})", flush=True)
        rc, wall, out = run(args, outputs)
        print(f"4 cached:  exit {rc}, sweep {wall:.0f} s for {n} points: "
              f"{wall * JOBS / n:.2f} s per point per job ({wall / n:.2f} s of wall time each; "
              f"{out.count('(reused)')} reused)", flush=True)
    finally:
        pool.stop()


if __name__ == "__main__":
    main()
