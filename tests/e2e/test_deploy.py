"""One point through all six layers, and a sweep that is killed and resumed.

Tiny settings (debug=fast: two training batches, 120 evaluation samples, three timing
repeats) keep this in the suite's budget; the checks are the real ones: compiled logits
against PyTorch, accuracy of the compiled model on the target, stage reuse.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deploy
from dlas.stages.keys import compile_key, compress_key, train_key
from dlas.store import ArtifactStore, ResultsStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_point_end_to_end_and_stage_reuse(make_cfg, tmp_path, seed_outputs):
    seed_outputs(tmp_path)  # the default point's stages (session fixture): trained resnet18
    cfg = make_cfg(overrides=["debug=fast", "compression=unstructured", "compression.ratio=0.6"])
    row = deploy.run(cfg)
    m = row["metrics"]
    assert row["status"] == "ok", row["reason"]
    assert m["train_reused"] is True and not m["compress_reused"] and not m["compile_reused"]
    assert m["logit_rel_diff"] < 1e-3 and m["eval_samples"] == 120
    assert abs(m["accuracy_compiled"] - m["accuracy_torch"]) <= 1 / 120
    assert m["weight_sparsity"] == pytest.approx(0.6, abs=0.01)
    assert m["accuracy_compressed"] == m["acc_after_finetune"]  # (not evaluated again)
    assert m["latency_ms_median"] > 0 and m["latency_repeats"] == 3
    assert m["compile_s"] > 0 and m["scheduled_funcs"] > 0
    assert m["emulated"] is False and "emulator" not in m  # this machine's own CPU
    assert m["rpc_server"].startswith("127.0.0.1:") and m["load_avg_measure"] >= 0
    assert m["measure_lock_wait_s"] >= 0  # (the host-wide lock: conf/hardware/local.yaml)
    store = ArtifactStore(cfg.paths.artifacts)
    for stage, key in [("trained", train_key(cfg)), ("compressed", compress_key(cfg)),
                       ("compiled", compile_key(cfg))]:
        assert store.exists(stage, key), stage

    # another point shares the trained model; the same point again is not recomputed
    other = deploy.run(make_cfg(overrides=["debug=fast"]))
    assert other["status"] == "ok" and other["metrics"]["compile_reused"] is True
    assert other["metrics"]["weight_sparsity"] < 0.01
    assert other["metrics"]["accuracy_compressed"] == other["metrics"]["accuracy_trained"]
    again = deploy.run(cfg)
    assert again["key"] == row["key"] and again["finished"] == ResultsStore(
        cfg.paths.results).get(row["key"])["finished"]


def sweep(tmp_path, points="measure.repeat=2,3", *extra):
    """Two points that differ only in their timing: they share the stages seed_outputs stored."""
    repeat = [] if "measure.repeat=" in points else ["measure.repeat=2"]
    args = [sys.executable, "deploy.py", "-m", points, "debug=fast", *repeat, *extra]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "DLAS_OUTPUTS": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_sweep_killed_midway_resumes_without_duplicates(tmp_path, seed_outputs):
    seed_outputs(tmp_path)  # the points' stages: each is measured at once
    proc = sweep(tmp_path)
    lines = []
    for line in proc.stdout:  # kill the sweep as soon as its first point is recorded
        lines.append(line)
        if line.startswith("ok "):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    assert len(ResultsStore(tmp_path / "results.sqlite").rows()) == 1

    proc = sweep(tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    assert "sweep summary: 2 points — 2 ok, 0 unsupported, 0 failed" in out
    assert out.count("ok (reused)") == 1  # the point measured before the kill
    rows = ResultsStore(tmp_path / "results.sqlite").rows()
    assert sorted(r["metrics"]["latency_repeats"] for r in rows) == [2, 3]
    assert all(r["status"] == "ok" for r in rows)

    # run again, both points are reused and re-timed without compiling, interleaved round
    # by round, each once (4 jobs: num_workers does not change a point)
    libs = {p: p.stat().st_mtime_ns for p in tmp_path.glob("artifacts/compiled/*/model.so")}
    start = time.perf_counter()
    proc = sweep(tmp_path, "measure.repeat=2,3", "dataset.num_workers=0,1", "remeasure=2")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.count("ok (reused)") == 4, out
    assert time.perf_counter() - start < 60
    order = [line.split("remeasure ")[1][:20] for line in out.splitlines() if "remeasure round" in line]
    assert order == ["round 1/2, point 1/2", "round 1/2, point 2/2", "round 2/2, point 1/2",
                     "round 2/2, point 2/2"], out
    assert {p: p.stat().st_mtime_ns for p in libs} == libs and len(libs) == 1
    for row in ResultsStore(tmp_path / "results.sqlite").rows():
        m = row["metrics"]
        assert len(m["latency_round_medians"]) == len(m["load_avg_rounds"]) == 2
        assert m["latency_round_best"] == min(m["latency_round_medians"])
        assert m["latency_repeats"] == 2 * row["config"]["measure"]["repeat"]
        assert m["latency_round_spread"] >= 0


def test_failing_point_does_not_stop_the_sweep(tmp_path, monkeypatch, free_port, seed_outputs):
    monkeypatch.setenv("DLAS_TRACKER_PORT", str(free_port))  # the board's tracker is not there
    seed_outputs(tmp_path)  # the local point's stages
    proc = sweep(tmp_path, "hardware=hikey,local")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 1, out
    assert "2 points — 1 ok, 0 unsupported, 1 failed" in out
    assert "failed [hardware] RPC key='hikey': no board is registered under it" in out
