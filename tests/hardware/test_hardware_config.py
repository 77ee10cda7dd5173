"""Hardware and Measurement built from their configs, and the errors for bad values (no RPC)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tvm
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dlas.errors import DLASError
from dlas.hardware import (Hardware, LocalCPU, Measurement, RemoteBoard, latency_stats,
                           make_target)

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_local_config_builds_local_cpu():
    hw = instantiate(OmegaConf.load(CONF / "hardware" / "local.yaml"))
    assert isinstance(hw, LocalCPU)
    assert (hw.name, hw.device, hw.key, hw.runtime_device) == ("local", "cpu", "local", "cpu")
    assert isinstance(hw.target, tvm.target.Target) and hw.target.kind.name == "llvm"
    assert hw.host is None and hw.cc is None and hw.is_local


def test_measure_config_builds_measurement():
    m = instantiate(OmegaConf.load(CONF / "measure" / "default.yaml"))
    assert isinstance(m, Measurement)
    assert m.repeat >= 10 and m.warmup >= 1 and 50 <= m.min_repeat_ms <= 100


def test_target_from_omegaconf_nested_lists():
    # what instantiate hands over: DictConfig/ListConfig, converted to the plain dict form
    cfg = OmegaConf.create({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    t = make_target(cfg)
    assert t.kind.name == "llvm" and "arm_cpu" in list(t.keys)


@pytest.mark.parametrize("spec, fragment", [
    ({"kind": "nosuchkind"}, "nosuchkind"),
    ({"kind": "llvm", "nosuchoption": 3}, "nosuchoption"),
    ("llvm -mcpu=znver5", "llvm -mcpu=znver5"),
    (42, "42"),
])
def test_bad_target_is_a_hardware_error(spec, fragment):
    with pytest.raises(DLASError) as err:
        Hardware("x", target=spec)
    assert err.value.layer == "hardware"
    assert fragment in str(err.value) and "kind" in str(err.value)


def test_device_and_target_must_agree():
    with pytest.raises(DLASError, match="device='gpu'"):
        Hardware("x", device="gpu", target={"kind": "llvm"})
    with pytest.raises(DLASError, match="valid: cpu, gpu"):
        Hardware("x", device="npu")
    gpu = Hardware("board", device="gpu", key="xavier", target={"kind": "cuda", "arch": "sm_72"},
                   host={"kind": "llvm", "mtriple": "aarch64-linux-gnu"},
                   tracker_host="10.0.0.1", tracker_port=9190)
    assert gpu.runtime_device == "cuda" and gpu.target.host.kind.name == "llvm"
    assert gpu.host.attrs["mtriple"] == "aarch64-linux-gnu"


def test_tracker_host_and_port_go_together():
    with pytest.raises(DLASError, match="tracker_port"):
        Hardware("x", tracker_host="10.0.0.1")
    with pytest.raises(DLASError, match="tracker"):
        RemoteBoard("hikey", tracker_host="", tracker_port=9190, key="hikey")


def test_export_uses_the_configured_compiler(tmp_path):
    mod = tvm.IRModule.from_expr(tvm.relax.Function([], tvm.relax.const(np.ones(3, "float32"))))
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    # the host g++ stands in for a cross compiler: same code path (fcompile=cross_compiler(cc))
    lib = Hardware("x", cc="g++").export(ex, tmp_path / "sub" / "lib.so")
    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    np.testing.assert_array_equal(vm["main"]().numpy(), np.ones(3, "float32"))
    with pytest.raises(DLASError, match="aarch64-nosuch-g\\+\\+.*not found"):
        Hardware("x", cc="aarch64-nosuch-g++").export(ex, tmp_path / "lib2.so")


def test_latency_stats():
    s = latency_stats(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), noisy_cv=0.1)
    assert s["latency_ms_median"] == 3.0 and s["latency_ms_mean"] == 4.0
    assert s["latency_ms_min"] == 1.0 and s["latency_ms_max"] == 10.0
    assert s["latency_ms_p90"] == pytest.approx(7.6)
    assert s["latency_ms_std"] == pytest.approx(np.std([1, 2, 3, 4, 10]))
    assert s["latency_cv"] == pytest.approx(s["latency_ms_std"] / 4.0)
    assert s["latency_repeats"] == 5 and s["noisy"] is True
    assert latency_stats(np.full(10, 2.0), noisy_cv=0.1)["noisy"] is False


@pytest.mark.parametrize("kwargs, what", [({"repeat": 0}, "measure.repeat"),
                                          ({"timeout_s": 0}, "measure.timeout_s"),
                                          ({"retries": -1}, "measure.retries")])
def test_bad_measurement_settings(kwargs, what):
    with pytest.raises(DLASError, match=what):
        Measurement(**kwargs)
