"""Every hardware config x device builds the right target; boards cross-compile for aarch64;
a missing cross compiler, a GPU-less host and a tracker without the board fail fast and say why."""
from __future__ import annotations

import shutil
import socket
import time

import pytest
import torch
import tvm
from hydra.utils import instantiate

from dlas.codegen import Untuned, import_model
from dlas.errors import DLASError
from dlas.hardware import LocalCPU, LocalCUDA, LocalRPC, RemoteBoard
from dlas.hardware.base import host_cpu
from dlas.primitives import Direct
from dlas.stages.keys import compile_key
from dlas.sweep.task import layer_values

AARCH64 = {"mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
# config, device -> (class, name in results, target kind, target attrs, host attrs or None)
EXPECTED = {
    ("local", "cpu"): (LocalCPU, "local", "llvm", {}, None),
    ("local_cuda", "gpu"): (LocalCUDA, "local_cuda", "cuda", {}, {"mcpu": host_cpu()["mcpu"]}),
    ("hikey", "cpu"): (RemoteBoard, "hikey-cpu", "llvm", {**AARCH64, "mcpu": "cortex-a73"}, None),
    ("hikey", "gpu"): (RemoteBoard, "hikey-gpu", "opencl", {"device": "mali"},
                       {**AARCH64, "mcpu": "cortex-a73"}),
    ("xavier", "cpu"): (RemoteBoard, "xavier-cpu", "llvm", {**AARCH64, "mcpu": "carmel"}, None),
    ("xavier", "gpu"): (RemoteBoard, "xavier-gpu", "cuda", {"arch": "sm_72"},
                        {**AARCH64, "mcpu": "carmel"}),
}


def _attr(target, name):
    value = target.attrs[name]
    return str(value) if isinstance(value, str) else [str(v) for v in value]


@pytest.mark.parametrize("config, device", sorted(EXPECTED))
def test_every_config_and_device_builds_its_target(make_cfg, config, device):
    cfg = make_cfg("deploy", [f"hardware={config}", f"hardware.device={device}"])
    hw = instantiate(cfg.hardware)
    cls, name, kind, attrs, host = EXPECTED[config, device]
    assert type(hw) is cls and hw.device == device and hw.name == name
    assert layer_values(cfg)["hardware"] == name  # the results store tells devices apart
    assert hw.target.kind.name == kind
    for k, v in attrs.items():
        assert _attr(hw.target, k) == v, k
    if host is None:
        assert hw.target.host is None or hw.target.host.kind.name == "llvm"
    else:
        assert hw.target.host.kind.name == "llvm"
        for k, v in host.items():
            assert _attr(hw.target.host, k) == v, k
    if config in ("hikey", "xavier"):
        assert (hw.key, hw.cc) == (config, "aarch64-linux-gnu-g++") and not hw.is_local
        assert (hw.tracker_host, hw.tracker_port) == ("127.0.0.1", 9190)


def test_board_devices_get_their_own_compile_keys(make_cfg):
    keys = {compile_key(make_cfg("deploy", [f"hardware={b}", f"hardware.device={d}"]))
            for b in ("hikey", "xavier") for d in ("cpu", "gpu")}
    assert len(keys) == 4


def test_boards_sharing_a_target_share_the_library_not_the_row(make_cfg):
    from dlas.stages.keys import point_key

    base = make_cfg("deploy", [])
    for other in (["hardware.key=hikey"], ["hardware=local_1thread"],
                  ["hardware.machine=twin"]):  # another board (or threads) of the same target
        cfg = make_cfg("deploy", other)
        assert compile_key(cfg) == compile_key(base) and point_key(cfg) != point_key(base), other
    waits = make_cfg("deploy", ["hardware.request_timeout_s=3600", "hardware.startup_timeout_s=5"])
    assert point_key(waits) == point_key(base)  # how long to wait determines nothing
    assert compile_key(make_cfg("deploy", ["hardware=local_avx2"])) != compile_key(base)


def test_tracker_address_comes_from_the_environment(make_cfg, monkeypatch):
    monkeypatch.setenv("DLAS_TRACKER_HOST", "10.1.2.3")
    monkeypatch.setenv("DLAS_TRACKER_PORT", "9999")
    hw = instantiate(make_cfg("deploy", ["hardware=xavier"]).hardware)
    assert (hw.tracker_host, hw.tracker_port) == ("10.1.2.3", 9999)


def test_unknown_device_of_a_board_names_the_valid_ones(make_cfg):
    cfg = make_cfg("deploy", ["hardware=hikey"])
    with pytest.raises(DLASError, match="device='npu'.*valid: cpu, gpu"):
        RemoteBoard("hikey", "127.0.0.1", 9190, "hikey", device="npu",
                    targets=dict(cfg.hardware.targets))


def _tiny_conv():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 4)).eval()
    return import_model(net, torch.randn(1, 3, 8, 8))


def test_hikey_cpu_library_is_an_aarch64_elf(make_cfg, tmp_path):
    hw = instantiate(make_cfg("deploy", ["hardware=hikey"]).hardware)
    ex, _ = Untuned().build(_tiny_conv(), Direct("direct"), hw.target)
    if shutil.which(hw.cc) is None:  # no cross toolchain here: the error says how to get one
        with pytest.raises(DLASError, match="aarch64-linux-gnu-g\\+\\+.*apt-get install "
                                            "g\\+\\+-aarch64-linux-gnu"):
            hw.export(ex, tmp_path / "lib.so")
        return
    lib = hw.export(ex, tmp_path / "lib.so").read_bytes()
    assert lib[:4] == b"\x7fELF" and lib[4] == 2  # 64-bit
    assert int.from_bytes(lib[18:20], "little") == 183  # e_machine EM_AARCH64


def test_missing_cross_compiler_fails_before_any_work(make_cfg):
    cfg = make_cfg("deploy", ["hardware=local", "hardware.cc=aarch64-nosuch-g++"])
    hw = instantiate(cfg.hardware)
    t0 = time.perf_counter()
    with pytest.raises(DLASError) as err:
        hw.check()
    assert time.perf_counter() - t0 < 1 and err.value.layer == "hardware"
    assert "aarch64-nosuch-g++" in str(err.value)
    assert "apt-get install g++-aarch64-nosuch" in str(err.value)


@pytest.mark.skipif(tvm.cuda(0).exist, reason="this host has a CUDA GPU")
def test_local_cuda_without_a_gpu_fails_fast(make_cfg):
    hw = instantiate(make_cfg("deploy", ["hardware=local_cuda"]).hardware)
    assert hw.target.attrs["arch"] == "sm_90"  # the documented default: nothing to detect
    t0 = time.perf_counter()
    for attempt in (hw.check, lambda: hw.session().__enter__()):
        with pytest.raises(DLASError, match="no CUDA GPU on this host") as err:
            attempt()
        assert err.value.layer == "hardware"
    assert time.perf_counter() - t0 < 2


@pytest.fixture(scope="module")
def tracker():
    """A running tracker with one server under key 'local' (no board 'hikey' there)."""
    rpc = LocalRPC("local").start()
    yield rpc
    rpc.stop()


def test_board_not_registered_fails_within_seconds(make_cfg, tracker):
    hw = instantiate(make_cfg("deploy", ["hardware=hikey", "hardware.device=gpu",
                                         f"hardware.tracker_port={tracker.port}"]).hardware)
    t0 = time.perf_counter()
    with pytest.raises(DLASError) as err:
        hw.check()
    assert time.perf_counter() - t0 < 3 and err.value.layer == "hardware"
    msg = str(err.value)
    assert f"no board is registered under it at tracker 127.0.0.1:{tracker.port}" in msg
    assert "RPC key='hikey'" in msg and "(valid: local)" in msg and "not reachable" not in msg


def test_unreachable_tracker_says_so_and_how_to_start_it(make_cfg):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg("deploy", ["hardware=xavier", f"hardware.tracker_port={port}"])
    hw = instantiate(cfg.hardware)
    t0 = time.perf_counter()
    with pytest.raises(DLASError) as err:
        hw.check()
    assert time.perf_counter() - t0 < 3
    msg = str(err.value)
    assert f"no board is registered under it at tracker 127.0.0.1:{port}" in msg
    assert "tracker is not reachable" in msg and "python -m tvm.exec.rpc_tracker" in msg
    assert f"rpc_server --tracker 127.0.0.1:{port} --key xavier" in msg
