"""Sweeps through Hydra's launchers, on real points: joblib (2 jobs at once on this machine)
and submitit_slurm (a one-node SLURM cluster in a private network namespace, set up by
one_node_slurm.sh; skipped, saying why, without its apt packages or root); and a pool of two
loopback RPC servers under the key `hikey` serving a parallel sweep while one is killed.

Cheap on purpose: the points differ only in `measure.repeat`, so they share one trained model
and one compiled library, which the two concurrent jobs compute once (one waits for the
other's lock); the SLURM sweep reuses the joblib sweep's outputs and only measures.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlas.errors import DLASError
from dlas.hardware.local_rpc import _free_ports
from dlas.hardware.session import RemoteSession
from dlas.hardware.tracker import registered_keys, tracker_summary
from dlas.store import ResultsStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TINY = ["debug=fast", "dataset.eval_samples=40"]
SLURM_TOOLS = ("slurmctld", "slurmd", "sinfo", "sbatch", "munged", "unshare", "ip")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("launchers")


def _sweep(args, outputs: Path, prefix=()) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "deploy.py", "-m", *args, *TINY], cwd=ROOT,
                            env={**os.environ, "DLAS_OUTPUTS": str(outputs)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run(args, outputs: Path, timeout: int, prefix=()) -> str:
    proc = _sweep(args, outputs, prefix)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_joblib_sweep_with_two_jobs_computes_shared_stages_once(outputs):
    out = _run(["measure.repeat=2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
               outputs, timeout=900)
    assert "sweep summary: 2 points — 2 ok, 0 unsupported, 0 failed" in out, out[-3000:]
    # the two jobs ran at once: both needed the model and the library, each was made once
    assert len(list((outputs / "artifacts" / "trained").glob("[!.]*"))) == 1
    assert len(list((outputs / "artifacts" / "compiled").glob("[!.]*"))) == 1
    rows = ResultsStore(outputs / "results.sqlite").rows()
    assert sorted(r["metrics"]["latency_repeats"] for r in rows) == [2, 3]
    assert {r["metrics"]["compile_reused"] for r in rows} == {False, True}
    assert all(r["metrics"]["rpc_server"].startswith("127.0.0.1:") for r in rows)
    assert sorted(p.stem for p in (outputs / "rows").glob("*.json")) == sorted(
        r["key"] for r in rows)  # each row also handed over as its file


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in SLURM_TOOLS),
                    reason="a one-node SLURM cluster needs root and the apt packages slurmctld "
                           "slurmd slurm-client munge (and unshare, ip); .ci/run installs them")
def test_submitit_slurm_sweep_hands_rows_over_to_the_heads_store(outputs, tmp_path):
    head = tmp_path / "head"  # the head's local disk; outputs/ stands for the shared filesystem
    out = _run(["measure.repeat=4,5", "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=debug", "paths.rows_only=true",
                f"paths.results={head / 'results.sqlite'}"], outputs, timeout=900,
               prefix=["unshare", "--net", "bash", str(HERE / "one_node_slurm.sh"),
                       str(tmp_path / "slurm")])
    assert "sweep summary: 2 points — 2 ok, 0 unsupported, 0 failed" in out, out[-3000:]
    rows = ResultsStore(head / "results.sqlite").rows()
    # every row of the outputs folder: the joblib sweep's (taken in at the start) and its own
    assert sorted(r["metrics"]["latency_repeats"] for r in rows) == [2, 3, 4, 5][-len(rows):]
    rows = [r for r in rows if r["metrics"]["latency_repeats"] >= 4]
    assert len(rows) == 2
    # measured by SLURM array tasks, which wrote row files only; the head took them in
    assert all(r["env"]["slurm_job_id"] and r["env"]["slurm_array_task_id"] for r in rows)
    assert all((outputs / "rows" / f"{r['key']}.json").is_file() for r in rows)
    # the library is the joblib sweep's (or, run alone, compiled by one of the two jobs)
    assert sum(not r["metrics"]["compile_reused"] for r in rows) <= 1
    assert len(list((outputs / "artifacts" / "compiled").glob("[!.]*"))) == 1


def _serve(*args) -> subprocess.Popen:
    """TVM's own tracker or server CLI, in a process group of its own (its workers go with it)."""
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _registered(tracker_port: int) -> int:
    try:
        return registered_keys(tracker_summary("127.0.0.1", tracker_port)).get("hikey", 0)
    except DLASError:  # the tracker is still starting
        return 0


@pytest.fixture
def pool():
    """A tracker and two TVM RPC servers under the key `hikey` on loopback:
    (tracker port, server ports, server processes)."""
    tracker_port, *ports = _free_ports(3)
    procs = [_serve("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port),
                    "--port-end", str(tracker_port + 1))]
    procs += [_serve("tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{tracker_port}",
                     "--key", "hikey", "--host", "127.0.0.1", "--port", str(port),
                     "--port-end", str(port + 1)) for port in ports]
    try:
        deadline = time.monotonic() + 120
        while _registered(tracker_port) < 2:
            assert time.monotonic() < deadline, "the two servers did not register"
            time.sleep(0.5)
        yield tracker_port, ports, procs[1:]
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGCONT)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_a_hung_server_of_the_pool_is_dropped_for_another(pool):
    tracker_port, ports, servers = pool
    os.killpg(servers[0].pid, signal.SIGSTOP)  # a hung board: still listed as free
    hung = f"127.0.0.1:{ports[0]}"
    for _ in range(2):  # the tracker hands out free servers in turn: one of these gets it
        sess = RemoteSession("hikey", "127.0.0.1", tracker_port, connect_timeout_s=3)
        assert sess.server == f"127.0.0.1:{ports[1]}"
        sess.cpu(0)  # a real round trip
        sess.abandon()
        if sess.dropped:
            break
    assert len(sess.dropped) == 1 and sess.dropped[0].startswith(hung), sess.dropped


def test_a_pool_of_two_servers_under_one_key_spreads_a_sweep_and_survives_a_kill(outputs, pool):
    tracker_port, ports, servers = pool
    # this CPU's code, measured on whichever server of the pool the tracker grants
    proc = _sweep(["measure.repeat=2,3,4,5,6,7", "hardware.tracker_host=127.0.0.1",
                   f"hardware.tracker_port={tracker_port}", "hardware.key=hikey",
                   "hardware.measure_lock=null", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2"], outputs)
    lines = []
    for line in proc.stdout:  # one server dies after two points, mid-sweep
        lines.append(line)
        if sum(x.startswith("ok ") for x in lines) == 2:
            os.killpg(servers[0].pid, signal.SIGKILL)
            break
    out = "".join(lines) + proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-4000:]
    assert "sweep summary: 6 points — 6 ok, 0 unsupported, 0 failed" in out, out[-3000:]
    rows = [r for r in ResultsStore(outputs / "results.sqlite").rows()
            if r["hardware"] == "local" and r["config"]["hardware"]["key"] == "hikey"]
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    used = {int(r["metrics"]["rpc_server"].rsplit(":", 1)[1]) for r in rows}
    assert used == set(ports), [r["metrics"]["rpc_server"] for r in rows]  # both served
