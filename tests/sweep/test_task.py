"""The task wrapper: every outcome becomes one row, done points are skipped."""
import pytest

from dlas.errors import DLASError, Unsupported, in_layer
from dlas.store.results import ResultsStore
from dlas.sweep.task import PointFailed, run_point


def stage_ok(cfg, force=False):
    stage_ok.calls += 1
    return {"latency_ms_median": 1.0, "latency_ms_std": 0.1, "accuracy_torch": 0.9,
            "accuracy_compiled": 0.9, "size_bytes": 1024}


stage_ok.calls = 0


def stage_unsupported(cfg, force=False):
    raise Unsupported("primitive", "direct", reason="not on this target", layer="primitive")


def stage_crash(cfg, force=False):
    with in_layer("codegen"):
        raise RuntimeError("deep inside TVM\nsecond line")


def test_ok_point_is_recorded_then_skipped(make_cfg, capsys):
    cfg = make_cfg()
    stage_ok.calls = 0
    row = run_point(cfg, stage_ok, sweep="s")
    assert row["status"] == "ok" and stage_ok.calls == 1
    again = run_point(cfg, stage_ok, sweep="s2")
    assert again["status"] == "ok" and stage_ok.calls == 1  # not recomputed
    assert "ok (reused)" in capsys.readouterr().out
    rows = ResultsStore(cfg.paths.results).rows()
    assert len(rows) == 1 and rows[0]["sweep"] == "s"  # the sweep that measured it...
    assert ResultsStore(cfg.paths.results).rows(sweep="s2") == rows  # ...and both count it
    assert rows[0]["dataset"] == "digits" and rows[0]["primitive"] == "direct-dense"
    assert rows[0]["env"]["tvm"].startswith("0.27")


def test_force_recomputes(make_cfg):
    stage_ok.calls = 0
    run_point(make_cfg(), stage_ok)
    run_point(make_cfg(overrides=["force=true"]), stage_ok)
    assert stage_ok.calls == 2


def test_unsupported_and_crash_are_recorded_with_layer(make_cfg):
    cfg = make_cfg()
    row = run_point(cfg, stage_unsupported, sweep="s", raise_on_failure=False)
    assert row["status"] == "unsupported" and row["layer"] == "primitive"
    cfg2 = make_cfg(overrides=["model=mobilenetv2"])
    with pytest.raises(PointFailed) as err:
        run_point(cfg2, stage_crash)
    assert "RuntimeError: deep inside TVM" in str(err.value)
    stored = ResultsStore(cfg.paths.results).get(err.value.row["key"])
    assert stored["status"] == "failed" and stored["layer"] == "codegen"
    assert "traceback:" in stored["reason"] and "second line" not in stored["reason"]


def test_failed_point_is_retried_on_rerun(make_cfg):
    cfg = make_cfg()

    def flaky(cfg, force=False):
        raise DLASError("RPC tracker", "127.0.0.1:1", reason="unreachable", layer="hardware")

    assert run_point(cfg, flaky, raise_on_failure=False)["status"] == "failed"
    stage_ok.calls = 0
    assert run_point(cfg, stage_ok)["status"] == "ok" and stage_ok.calls == 1


def test_a_point_measured_but_refused_keeps_its_metrics(make_cfg):
    """e.g. compiled logits too far from PyTorch's: the row keeps accuracy and agreement."""
    def refused(cfg, force=False):
        err = DLASError("compiled logits", "max |diff| 3.68", layer="codegen", reason="differ")
        err.metrics = {"accuracy_compiled": 0.878, "prediction_agreement": 0.889}
        raise err

    row = run_point(make_cfg(), refused, raise_on_failure=False)
    assert row["status"] == "failed" and row["layer"] == "codegen"
    stored = ResultsStore(make_cfg().paths.results).get(row["key"])
    assert stored["metrics"]["prediction_agreement"] == 0.889


def stage_profiled(cfg, force=False):
    stage_ok.calls += 1
    profile = [{"call": 0, "function": "fused_conv2d_direct_add", "latency_ms_median": 0.5}]
    return {**stage_ok(cfg), **({"layer_profile": profile} if cfg.measure.profile else {})}


def test_profile_is_stored_beside_the_row_and_asked_for_again(make_cfg):
    stage_ok.calls = 0
    cfg = make_cfg()
    row = run_point(cfg, stage_profiled)
    store = ResultsStore(cfg.paths.results)
    assert store.profile(row["key"]) is None and "layer_profile" not in row["metrics"]
    # the same point with measure.profile=true: same key, measured again for its profile
    profiled = run_point(make_cfg(overrides=["measure.profile=true"]), stage_profiled)
    assert profiled["key"] == row["key"] and stage_ok.calls == 4
    assert store.profile(row["key"])[0]["function"] == "fused_conv2d_direct_add"
    assert "layer_profile" not in store.get(row["key"])["metrics"]  # (its own table)
    run_point(make_cfg(overrides=["measure.profile=true"]), stage_profiled)
    assert stage_ok.calls == 4  # a profiled row is reused
