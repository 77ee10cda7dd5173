"""The comparisons on stores whose answers are known by construction (tests/report/synthetic.py)."""
import pytest

from dlas.report import stats
from dlas.report.table import load
from tests.report.synthetic import correlation_store

SIZE = [1, 2, 3, 4, 5, 6]
ACC = [3, 6, 1, 5, 2, 4]   # vs SIZE: sum d^2 = 38 -> rho = 1 - 6*38/(6*35) = -3/35


@pytest.fixture(scope="module")
def ok(grid):
    return stats.measured(load(grid)[0])


def test_spearman_and_pareto_front(tmp_path):
    store = correlation_store(tmp_path / "r.sqlite", SIZE, ACC, lat_ranks=SIZE)
    ok = stats.measured(load(store.path)[0])
    corr = stats.correlations(ok).set_index(["x", "y"])
    assert corr.loc[("size_mib", "latency_ms"), "rho"] == pytest.approx(1.0)
    assert corr.loc[("size_mib", "latency_ms"), "p"] < 1e-6
    assert corr.loc[("size_mib", "accuracy"), "rho"] == pytest.approx(-3 / 35)
    assert corr.loc[("accuracy", "latency_ms"), "rho"] == pytest.approx(-3 / 35)
    assert corr.loc[("size_mib", "accuracy"), "p"] > 0.5 and (corr["n"] == 6).all()
    # by latency the accuracies are 3, 6, 1, 5, 2, 4: only the first two are on the front
    front = stats.pareto_front(ok)
    assert sorted(ok.loc[front, "model"]) == ["m0", "m1"]


def test_spearman_undefined_below_min_n_or_constant():
    assert stats.spearman([1, 2, 3, 4], [1, 2, 3, 4])["rho"] is None
    res = stats.spearman([1, 2, 3, 4, 5], [7, 7, 7, 7, 7])
    assert res["rho"] is None and res["note"] == "a variable is constant"


def test_speedup_is_the_ratio_of_medians_per_hardware(ok):
    sp = stats.speedups(ok)
    assert len(sp) == 2 * 3 * 2 * 2 * 2  # techniques x primitives x codegens x hw x models
    int8 = sp[sp["compression"] == "int8"]
    assert int8.loc[int8["hardware"] == "local", "speedup"].tolist() == pytest.approx([2.0] * 12)
    board = int8[int8["hardware"] == "board"]
    assert sorted(board["speedup"].round(6)) == [4.0] * 8 + [40.0] * 4
    assert board.loc[board["primitive"] == "spatial_pack-dense", "speedup"].tolist() == \
        pytest.approx([40.0] * 4)
    # the interval: none's min over the technique's p90, none's p90 over its min
    local = int8[int8["hardware"] == "local"].iloc[0]
    assert local["speedup_lo"] == pytest.approx(2 * 0.95 / 1.05)
    assert local["speedup_hi"] == pytest.approx(2 * 1.05 / 0.95)
    ranges = stats.ranges(sp, ["compression", "hardware"]).set_index(["compression", "hardware"])
    assert ranges.loc[("int8", "board"), ["min", "median", "max"]].tolist() == pytest.approx(
        [4, 4, 40])
    assert ranges.loc[("unstructured", "local"), "geomean"] == pytest.approx(1.0)


def test_tuning_speedup_and_best_primitive(ok):
    tp = stats.tuning(ok)
    assert len(tp) == 2 * 3 * 3 * 2  # models x compressions x primitives x hardware
    r18 = tp[(tp["model"] == "resnet18")].groupby("primitive")["speedup"]
    assert r18.min().to_dict() == pytest.approx(
        {"direct-dense": 1.0 / 0.8, "gemm-dense": 1.5 / 0.5, "spatial_pack-dense": 2.0 / 0.9})
    assert (tp["tuning_s"] == 30).all()
    best = stats.best_primitives(ok).set_index(["model", "compression", "codegen", "hardware"])
    assert best.loc[("resnet18", "none", "autoschedule", "local"), "best"] == "gemm-dense"
    assert best.loc[("resnet18", "none", "autoschedule", "local"), "margin"] == pytest.approx(1.6)
    assert best.loc[("mobilenetv2", "int8", "untuned", "board"), "best"] == "spatial_pack-dense"


def test_flips_of_the_best_primitive(ok):
    tf = stats.tuning_flips(ok)
    assert len(tf) == 12 and tf["flipped"].sum() == 5
    assert set(tf.loc[tf["flipped"], "model"]) == {"resnet18"}
    qf = stats.quantization_flips(ok)
    assert len(qf) == 8 and qf["flipped"].sum() == 4
    assert set(qf.loc[qf["flipped"], "hardware"]) == {"board"}
    assert set(qf["float32"]) == {"none"} and set(qf["quantized"]) == {"int8"}
    assert set(qf.loc[qf["flipped"], "best_quantized"]) == {"spatial_pack-dense"}


def test_a_point_measured_twice_counts_once_the_latest(tmp_path):
    from dlas.store.results import ResultsStore

    store = ResultsStore(tmp_path / "r.sqlite")
    layers = dict(dataset="d", model="m", compression="none", primitive="direct-dense",
                  codegen="untuned", hardware="local")
    for key, latency, started in [("old", 5.0, 1.0), ("new", 3.0, 2.0)]:
        store.record(key, status="ok", layers=layers, metrics={"latency_ms_median": latency},
                     started=started)
    ok = stats.measured(load(store.path)[0])
    assert ok["key"].tolist() == ["new"] and ok["latency_ms"].tolist() == [3.0]
