"""The loopback tracker + server: they work, and nothing is left running however a session ends."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tvm
from hw_helpers import live_in_group

from dlas.errors import DLASError
from dlas.hardware import LocalCPU, RemoteBoard, registered_keys, tracker_summary
from dlas.hardware.local_rpc import LocalRPC

REPO = Path(__file__).resolve().parents[2]


def _round_trip(sess):
    x = np.arange(12, dtype="float32").reshape(3, 4)
    np.testing.assert_array_equal(tvm.runtime.tensor(x, sess.cpu()).numpy(), x)


def test_session_works_and_leaves_nothing_running():
    t0 = time.perf_counter()
    with LocalCPU().session() as sess:
        startup = time.perf_counter() - t0
        pgid, tmp = sess.local.pgid, sess.local.tmp
        assert live_in_group(pgid, wait_s=0), "daemon not found by ps"
        assert registered_keys(tracker_summary("127.0.0.1", sess.port)) == {"local": 1}
        _round_trip(sess)
        assert len(live_in_group(pgid, wait_s=0)) == 2  # daemon + the forked session process
    assert live_in_group(pgid) == [] and not tmp.exists()
    assert startup < 30, f"startup took {startup:.1f} s"


def test_teardown_after_an_interrupt_in_the_block():
    with pytest.raises(KeyboardInterrupt):
        with LocalCPU().session() as sess:
            pgid = sess.local.pgid
            _round_trip(sess)
            raise KeyboardInterrupt
    assert live_in_group(pgid) == []


@pytest.mark.parametrize("body, reason", [
    ("import sys; sys.stderr.write('boom: no tvm here'); sys.exit(3)", "boom: no tvm here"),
    ("import time; time.sleep(60)", "no ports reported within 1 s"),
])
def test_a_daemon_that_fails_to_start_is_reported_and_removed(tmp_path, monkeypatch, body, reason):
    fake = tmp_path / "fake_daemon.py"
    fake.write_text(body)
    monkeypatch.setattr("dlas.hardware.local_rpc.DAEMON", fake)
    rpc = LocalRPC("local", startup_timeout_s=1)
    with pytest.raises(DLASError, match=reason) as err:
        rpc.start()
    assert err.value.layer == "hardware" and rpc.proc is None and rpc.tmp is None
    assert "fake_daemon" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                               text=True).stdout


CHILD = textwrap.dedent("""
    import sys, time
    sys.modules["torch"] = None  # not needed here; tvm_ffi would import it (2 s)
    from dlas.hardware import LocalCPU
    with LocalCPU().session() as sess:
        print(sess.local.pgid, sess.local.tmp, flush=True)
        time.sleep(120)
    print("cleaned up", flush=True)
""")


def test_sigterm_and_sigkill_of_the_owner_leave_nothing_running():
    # two owners at once (each pays a TVM import): one gets SIGTERM, one SIGKILL
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = {sig: subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                                   text=True, env=env) for sig in (signal.SIGTERM, signal.SIGKILL)}
    try:
        lines = {sig: p.stdout.readline().split() for sig, p in procs.items()}
        groups = {sig: int(line[0]) for sig, line in lines.items()}
        for sig, p in procs.items():
            assert live_in_group(groups[sig], wait_s=0)
            p.send_signal(sig)
        # SIGTERM: the owner's finally runs, then it exits with 128 + 15
        assert procs[signal.SIGTERM].wait(30) == 143
        assert procs[signal.SIGTERM].stdout.read() == ""
        assert procs[signal.SIGKILL].wait(30) == -signal.SIGKILL
        # SIGKILL: no finally; the daemon's parent-death signal makes it kill its own group
        for sig in procs:
            assert live_in_group(groups[sig]) == [], sig
            assert not Path(lines[sig][1]).exists(), sig  # uploaded libraries go too
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def tracker():
    """A running tracker with one server under key 'local' (what a lab tracker looks like)."""
    rpc = LocalRPC("local").start()
    yield rpc
    rpc.stop()


def test_remote_board_through_an_external_tracker(tracker):
    board = RemoteBoard("lab", tracker_host="127.0.0.1", tracker_port=tracker.port, key="local")
    assert "local" in registered_keys(board.check())
    with board.session() as sess:
        assert sess.local is None
        _round_trip(sess)
    assert live_in_group(tracker.pgid, wait_s=0), "an external tracker must be left running"


def test_unregistered_key_names_the_registered_ones(tracker):
    board = RemoteBoard("hikey", tracker_host="127.0.0.1", tracker_port=tracker.port, key="hikey")
    t0 = time.perf_counter()
    with pytest.raises(DLASError) as err:
        with board.session():
            pass
    msg = str(err.value)
    assert err.value.layer == "hardware" and time.perf_counter() - t0 < 5
    assert "RPC key='hikey'" in msg and "(valid: local)" in msg
    assert f"127.0.0.1:{tracker.port}" in msg and "--key hikey" in msg


def test_busy_server_gives_up_after_request_timeout(tracker):
    def board(**kw):
        return RemoteBoard("lab", tracker_host="127.0.0.1", tracker_port=tracker.port,
                           key="local", **kw)
    with board().session() as holder:  # holds the only server under the key
        _round_trip(holder)
        t0 = time.perf_counter()
        with pytest.raises(DLASError, match="became free within 1 s.*another job may hold it"):
            with board(request_timeout_s=1).session():
                pass
        assert time.perf_counter() - t0 < 4
    # the timed-out request was withdrawn: the freed server goes to the next request, not to it
    t0 = time.perf_counter()
    with board(request_timeout_s=10).session() as sess:
        _round_trip(sess)
    assert time.perf_counter() - t0 < 5


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracker_fails_fast_with_how_to():
    port = _closed_port()
    board = RemoteBoard("gone", tracker_host="127.0.0.1", tracker_port=port, key="x",
                        connect_timeout_s=2)
    t0 = time.perf_counter()
    with pytest.raises(DLASError) as err:
        with board.session():
            pass
    assert time.perf_counter() - t0 < 5 and err.value.layer == "hardware"
    msg = str(err.value)
    assert f"RPC tracker='127.0.0.1:{port}'" in msg
    assert f"python -m tvm.exec.query_rpc_tracker --host 127.0.0.1 --port {port}" in msg
    assert "python -m tvm.exec.rpc_tracker" in msg


def test_something_that_is_not_a_tracker_times_out():
    # a listener that never answers the tracker handshake (e.g. a wrong port on a board)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        t0 = time.perf_counter()
        with pytest.raises(DLASError, match=f"127.0.0.1:{port}.*within 1 s"):
            tracker_summary("127.0.0.1", port, timeout_s=1)
        assert time.perf_counter() - t0 < 3
