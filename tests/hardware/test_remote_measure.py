"""Measurement of real compiled Relax modules through the loopback RPC server."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
import tvm
from hw_helpers import (LLVM, compile_torch, crash_module, inputs, live_in_group,
                        spin_module)

from dlas.errors import DLASError
from dlas.hardware import ConnectionLost, LocalCPU, Measurement, RemoteBoard, RemoteTimeout
from dlas.hardware.local_rpc import LocalRPC

FAST = dict(warmup=2, repeat=10, min_repeat_ms=5, timeout_s=30)


@pytest.fixture(scope="module")
def session():
    with LocalCPU().session() as sess:
        yield sess


def test_remote_logits_match_local_vm_and_torch(session, tiny_lib):
    model, ex, path = tiny_lib
    xs = inputs(6)
    result = Measurement(**FAST).run(session, path, xs)
    assert result.logits.shape == (6, 10)
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    local = np.concatenate([vm["main"](tvm.runtime.tensor(xs[i:i + 1])).numpy() for i in range(6)])
    np.testing.assert_allclose(result.logits, local, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(result.logits, model(torch.from_numpy(xs)).numpy(),
                                   rtol=1e-4, atol=1e-5)
    assert len({row.tobytes() for row in result.logits}) == 6  # one row per sample, in order


def test_latency_stats_are_consistent(session, tiny_lib):
    lat = Measurement(**FAST).run(session, tiny_lib[2], inputs(1)).latency
    assert lat["latency_repeats"] == 10
    assert 0 < lat["latency_ms_min"] <= lat["latency_ms_median"] <= lat["latency_ms_p90"]
    assert lat["latency_ms_p90"] <= lat["latency_ms_max"] < 50  # a ~10 us model
    assert lat["latency_ms_std"] >= 0 and lat["latency_cv"] == pytest.approx(
        lat["latency_ms_std"] / lat["latency_ms_mean"])
    assert isinstance(lat["noisy"], bool) and lat["upload_s"] > 0 and lat["call_ms"] > 0


def test_latency_tracks_the_work(session, tmp_path):
    # 4e6 vs 4e7 loop steps: the timing must see the 10x, through RPC overhead and noise
    medians = []
    for iters in (4_000_000, 40_000_000):
        path = tmp_path / f"spin{iters}.so"
        tvm.compile(spin_module(iters), target=tvm.target.Target(LLVM)).export_library(str(path))
        lat = Measurement(warmup=1, repeat=5, min_repeat_ms=20, timeout_s=30).run(
            session, path, np.ones((1, 4), "float32")).latency
        medians.append(lat["latency_ms_median"])
    assert 5 < medians[1] / medians[0] < 20, medians


def test_tuple_output_is_refused_with_the_fix(session, tiny_model, tmp_path):
    path = tmp_path / "tuple.so"
    compile_torch(tiny_model, torch.randn(1, 3, 8, 8), unwrap=False).export_library(str(path))
    with pytest.raises(DLASError, match="unwrap_unit_return_tuple=True"):
        Measurement(**FAST).run(session, path, inputs(1))


def test_wrong_input_is_a_remote_error_not_retried(session, tiny_lib, caplog):
    with pytest.raises(DLASError, match="remote side.*9 vs. 8") as err:
        Measurement(**FAST).run(session, tiny_lib[2], inputs(2, shape=(3, 9, 8)))
    assert err.value.layer == "hardware" and "retrying" not in caplog.text


def test_bad_arguments(session, tiny_lib, tmp_path):
    with pytest.raises(DLASError, match="not found"):
        Measurement(**FAST).run(session, tmp_path / "missing.so", inputs(1))
    with pytest.raises(DLASError, match="N >= 1"):
        Measurement(**FAST).run(session, tiny_lib[2], inputs(0))
    with pytest.raises(DLASError, match="valid: cpu, cuda"):
        Measurement(**FAST).run(session, tiny_lib[2], inputs(1), device="gpu")


def test_dropped_connection_is_retried_on_a_fresh_session(session, tiny_lib, caplog):
    old_group = session.local.pgid
    os.killpg(old_group, signal.SIGKILL)  # the server dies under an open session
    result = Measurement(**FAST).run(session, tiny_lib[2], inputs(2))
    assert "retrying on a fresh session" in caplog.text
    assert result.logits.shape == (2, 10) and session.local.pgid != old_group
    # the row says the measurement was retried, and why
    assert result.latency["measure_retries"] == 1
    assert len(result.latency["measure_retry_reasons"]) == 1
    assert result.latency["measure_retry_reasons"][0]
    assert live_in_group(old_group) == []


@pytest.fixture(scope="module")
def hang_lib(tmp_path_factory):
    # 1e10 steps: ~10 s per call, far beyond the limits below (the stuck call dies with the server)
    path = tmp_path_factory.mktemp("hang") / "hang.so"
    tvm.compile(spin_module(10**10), target=tvm.target.Target(LLVM)).export_library(str(path))
    return path


def test_hanging_call_times_out_then_retries_once(hang_lib, caplog):
    path = hang_lib
    with LocalCPU().session() as sess:
        t0 = time.perf_counter()
        with pytest.raises(RemoteTimeout, match="inference on sample 0.*within 1 s"):
            Measurement(timeout_s=1, retries=1).run(sess, path, np.ones((1, 4), "float32"))
        # abandon() shuts the socket: without it freeing the remote handles waits for the spin
        assert time.perf_counter() - t0 < 10
        assert caplog.text.count("retrying on a fresh session") == 1
        group = sess.local.pgid
    assert live_in_group(group) == []


def test_ctrl_c_during_a_hanging_call(hang_lib):
    with pytest.raises(KeyboardInterrupt):
        with LocalCPU().session() as sess:
            group = sess.local.pgid
            main = threading.main_thread().ident  # Ctrl-C: SIGINT to the main thread
            threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT)).start()
            t0 = time.perf_counter()
            try:
                Measurement(timeout_s=60).run(sess, hang_lib, np.ones((1, 4), "float32"))
            finally:
                elapsed = time.perf_counter() - t0
    assert elapsed < 3 and live_in_group(group) == []


@pytest.fixture(scope="module")
def lab():
    """An external tracker + server under key 'lab': the path a board takes (with upload)."""
    rpc = LocalRPC("lab").start()
    yield rpc
    rpc.stop()


def _board(lab, **kwargs):
    return RemoteBoard("lab", tracker_host="127.0.0.1", tracker_port=lab.port, key="lab", **kwargs)


def test_board_path_uploads_the_library(lab, tiny_lib, session):
    xs = inputs(3)
    with _board(lab).session() as sess:
        remote = Measurement(**FAST).run(sess, tiny_lib[2], xs)
    local = Measurement(**FAST).run(session, tiny_lib[2], xs)  # loaded in place, no upload
    assert remote.latency["upload_s"] > 0 and local.latency["upload_s"] < remote.latency["upload_s"]
    np.testing.assert_array_equal(remote.logits, local.logits)


def _served(board) -> bool:
    with board.session() as sess:
        x = np.arange(3, dtype="float32")
        return bool((tvm.runtime.tensor(x, sess.cpu()).numpy() == x).all())


def test_session_timeout_ends_the_session_not_the_server(lab, hang_lib):
    board = _board(lab, session_timeout_s=1)
    with board.session() as sess:
        with pytest.raises(ConnectionLost, match="session has expired"):
            Measurement(timeout_s=30, retries=0).run(sess, hang_lib, np.ones((1, 4), "float32"))
    # the server killed its session process (at once, not after the 10 s spin), not itself
    live = live_in_group(lab.pgid, at_most=1)
    assert len(live) == 1 and "rpc_daemon.py" in live[0], live
    assert _served(board)


def test_a_crashing_session_ends_the_session_not_the_server(lab, tmp_path):
    """A kernel that segfaults kills its session's process; TVM's server thread used to die with
    it, after which every request to the tracker waited forever (a tuning run hung on a sparse
    model's default schedules). The next session must be served."""
    path = tmp_path / "crash.so"
    tvm.compile(crash_module(), target=tvm.target.Target(LLVM)).export_library(str(path))
    board = _board(lab)
    with board.session() as sess:
        with pytest.raises(DLASError):
            Measurement(timeout_s=30, retries=0).run(sess, path, np.ones((1, 4), "float32"))
    served = []
    probe = threading.Thread(target=lambda: served.append(_served(board)), daemon=True)
    probe.start()
    probe.join(30)
    assert served == [True]


def test_a_board_gone_mid_measurement_says_both_failures(tiny_lib):
    """The server (here with its tracker) dies under an open session: the retry finds no board,
    and the error names the lost measurement as well as why no fresh session came."""
    gone = LocalRPC("gone").start()
    try:
        board = RemoteBoard("gone", tracker_host="127.0.0.1", tracker_port=gone.port, key="gone")
        with board.session() as sess:
            os.killpg(gone.pgid, signal.SIGKILL)
            with pytest.raises(DLASError, match=r"the measurement failed \(.+\), then no fresh "
                                                r"session: no board is registered under it"):
                Measurement(**FAST).run(sess, tiny_lib[2], inputs(2))
    finally:
        gone.stop()
