"""The emulated aarch64 board (python -m dlas.hardware.emulated): one small point through it.

Real checks on a real aarch64 TVM runtime under qemu-user: the cross-compiled library is
uploaded, loaded and run there, its accuracy equals PyTorch's, and the row says it was emulated.
Skipped only where the emulation cannot be set up (no qemu-user, apt or registries; .ci/run sets
it up). Sized for CI: mobilenetv2 (1 s per inference under qemu), 4 samples, 3 repeats.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import deploy
from dlas.errors import DLASError
from dlas.hardware import emulated_root

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlas.hardware.emulated", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """An emulated hikey behind a private tracker: its port."""
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
    try:
        emulated_root.setup()  # cached: .ci/run has set it up
    except DLASError as err:
        pytest.skip(f"the emulation cannot be set up here: {err}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pid_file = tmp_path_factory.mktemp("emulated") / "boards.pid"
    started = _cli("--key", "hikey", "--tracker-port", str(port), "--background",
                   "--pid-file", str(pid_file))
    assert started.returncode == 0, started.stdout + started.stderr
    assert "board 'hikey': aarch64 RPC server" in started.stdout
    yield port
    stopped = _cli("--stop", "--pid-file", str(pid_file))
    assert stopped.returncode == 0, stopped.stderr


def test_a_point_runs_on_the_emulated_board(board, make_cfg):
    cfg = make_cfg(overrides=["hardware=hikey", f"hardware.tracker_port={board}",
                              "model=mobilenetv2", "debug=fast", "dataset.eval_samples=4"])
    row = deploy.run(cfg)
    m = row["metrics"]
    assert row["status"] == "ok", row["reason"]
    assert m["emulated"] is True and m["emulator"].startswith("qemu-aarch64")
    assert "aarch64" in m["target"] and m["eval_samples"] == 4
    assert m["accuracy_compiled"] == m["accuracy_torch"] and m["prediction_agreement"] == 1.0
    assert m["logit_rel_diff"] < 1e-3 and m["upload_s"] > 0  # uploaded, not loaded in place
    assert m["latency_ms_median"] > 0 and m["latency_repeats"] == 3


def test_a_missing_emulator_names_its_install_command(monkeypatch):
    monkeypatch.setattr(emulated_root.shutil, "which", lambda name: None)
    with pytest.raises(DLASError, match=r"qemu-aarch64.*apt-get install qemu-user-static"):
        emulated_root.setup()


def test_the_aarch64_wheels_match_this_hosts_versions():
    import tvm

    pins = dict(p.split("==") for p in emulated_root.wheel_pins())
    assert pins["apache-tvm"] == tvm.__version__  # the RPC protocol and runtime must match
    requirements = (ROOT / "requirements.txt").read_text()
    for name in ("apache-tvm", "apache-tvm-ffi", "numpy", "psutil", "cloudpickle", "tornado"):
        assert f"{name}=={pins[name]}" in requirements, name
