"""The host-wide measurement lock: two processes that time the local CPU at once take turns
(their sessions never overlap), and the second says how long it waited."""
import json
import multiprocessing as mp
import time

from dlas.hardware import LocalCPU


def _measure(lock: str, out: str, start: float):
    time.sleep(max(0.0, start - time.time()))  # both ask at the same moment
    with LocalCPU(measure_lock=lock).session() as sess:
        began = time.time()
        sess.cpu(0)  # a real round trip to the server
        time.sleep(1.0)
        ended = time.time()
    with open(out, "a") as f:
        f.write(json.dumps([began, ended, sess.lock_wait_s, sess.server]) + "\n")


def test_two_processes_never_measure_the_local_cpu_at_once(tmp_path):
    out, start = tmp_path / "sessions", time.time() + 2
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_measure, args=(str(tmp_path / "cpu.lock"), str(out), start))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    (a_start, a_end, a_wait, a_server), (b_start, b_end, b_wait, b_server) = sorted(
        json.loads(line) for line in out.read_text().splitlines())
    assert a_end <= b_start  # one after the other
    assert b_wait >= 0.9 and a_wait < 0.5
    assert a_server.startswith("127.0.0.1:") and b_server.startswith("127.0.0.1:")
