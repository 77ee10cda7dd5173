"""The four observation checks: verdicts, the statistic behind them, 'not enough data'."""
import pytest

from dlas.report import observations as obs
from dlas.report import stats
from dlas.report.table import load
from tests.report.synthetic import correlation_store, grid_store, latency_metrics


def checks(path, **kw):
    ok = stats.measured(load(path, **kw)[0])
    return {o.slug: o for o in obs.check_all(ok, stats.speedups(ok))}


def test_verdicts_on_the_synthetic_grid(grid):
    o = checks(grid)
    hw = o["speedup_hardware"]
    assert hw.verdict == obs.HOLDS
    assert "for 1 of 2 techniques" in hw.statistic  # int8 yes (2x vs 4x), unstructured no (1x)
    assert "int8: board 4.00–40.00× (median 4.00, n=12), local 2.00–2.00×" in hw.statistic
    tune = o["tuning_flip"]
    assert tune.verdict == obs.HOLDS and "differs in 5 of 12" in tune.statistic
    assert "direct-dense → gemm-dense (5×)" in tune.statistic
    quant = o["quantization_flip"]
    assert quant.verdict == obs.HOLDS and "differs in 4 of 8" in quant.statistic
    assert len(quant.table) == 8


def test_no_flip_and_no_hardware_dependence_is_does_not_hold(grid):
    # mobilenetv2 never flips under tuning; on local alone int8 changes nothing
    o = checks(grid, where="model=mobilenetv2")
    assert o["tuning_flip"].verdict == obs.DOES_NOT_HOLD
    assert "differs in 0 of 6" in o["tuning_flip"].statistic
    o = checks(grid, where="hardware=local")
    assert o["quantization_flip"].verdict == obs.DOES_NOT_HOLD
    assert "differs in 0 of 4" in o["quantization_flip"].statistic
    o = checks(grid, where="compression=none,unstructured")
    assert o["speedup_hardware"].verdict == obs.DOES_NOT_HOLD
    assert "medians differ 1.00×" in o["speedup_hardware"].statistic


def test_not_enough_data_when_the_grid_lacks_the_points(tmp_path):
    path = tmp_path / "r.sqlite"
    grid_store(path, hardware=("local",), codegens=("untuned",), compressions=("none", "unstructured"))
    o = checks(path)
    for slug in ("speedup_hardware", "tuning_flip", "quantization_flip"):
        assert o[slug].verdict == obs.NOT_ENOUGH, slug
    assert "one hardware" in o["speedup_hardware"].statistic
    assert "codegens measured: untuned" in o["tuning_flip"].statistic
    assert "number formats measured: float32" in o["quantization_flip"].statistic
    # 4 points: below the 5 a Spearman test needs
    small = correlation_store(tmp_path / "s.sqlite", [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4])
    corr = checks(small.path)["uncorrelated"]
    assert corr.verdict == obs.NOT_ENOUGH and "n=4 < 5" in corr.statistic


def test_correlation_verdicts(tmp_path):
    sizes, acc = [1, 2, 3, 4, 5, 6], [3, 6, 1, 5, 2, 4]
    correlated = correlation_store(tmp_path / "c.sqlite", sizes, acc, lat_ranks=sizes)
    o = checks(correlated.path)["uncorrelated"]
    assert o.verdict == obs.DOES_NOT_HOLD
    assert "size–latency ρ=+1.00" in o.statistic and "1 of 3 tested pairs" in o.statistic
    assert o.table["correlated"].tolist() == [False, True, False]
    # latency ranks 2 5 3 1 6 4: rho(size, latency) = 1 - 6*24/210 = 0.314, p ~ 0.54
    loose = correlation_store(tmp_path / "u.sqlite", sizes, acc, lat_ranks=[2, 5, 3, 1, 6, 4])
    o = checks(loose.path)["uncorrelated"]
    assert o.verdict == obs.HOLDS
    assert o.table.set_index(["x", "y"]).loc[("size_mib", "latency_ms"), "rho"] == \
        pytest.approx(1 - 6 * 24 / 210)


def test_hardware_variants_of_one_machine_are_named_as_such(tmp_path):
    path = tmp_path / "r.sqlite"
    grid_store(path, machines={"local": "local", "board": "local"})
    statistic = checks(path)["speedup_hardware"].statistic
    assert "board, local are variants of one machine (local: ISA level or threads)" in statistic
    grid_store(tmp_path / "apart.sqlite", machines={"local": "local", "board": "board"})
    assert "variants" not in checks(tmp_path / "apart.sqlite")["speedup_hardware"].statistic


def speedup_store(path, speedup: dict[str, float]):
    """resnet18 none and unstructured on each hardware, unstructured `speedup[hw]` faster."""
    from dlas.store.results import ResultsStore

    store = ResultsStore(path)
    for hw, factor in speedup.items():
        for comp, latency in (("none", 10.0), ("unstructured", 10.0 / factor)):
            layers = dict(dataset="digits", model="resnet18", compression=comp,
                          primitive="direct-dense", codegen="untuned", hardware=hw)
            store.record(f"{hw}-{comp}", status="ok", layers=layers, config={},
                         metrics=latency_metrics(latency) | {
                             "accuracy_compiled": 0.9, "accuracy_torch": 0.9,
                             "size_bytes": 1e6, "number_format": "float32"})
    return path


def test_a_speedup_flip_within_the_noise_is_no_hardware_dependence(tmp_path):
    o = checks(speedup_store(tmp_path / "n.sqlite", {"local": 1.06, "board": 0.98}))
    assert o["speedup_hardware"].verdict == obs.DOES_NOT_HOLD
    assert "slowdown on another" not in o["speedup_hardware"].statistic
    o = checks(speedup_store(tmp_path / "f.sqlite", {"local": 1.10, "board": 0.93}))
    assert o["speedup_hardware"].verdict == obs.HOLDS
    assert "speedup on one, slowdown on another" in o["speedup_hardware"].statistic


def flip_store(path, fastest_repeat: float):
    """resnet18 on local: direct 2.0 / gemm 2.4 ms untuned, the other way round tuned; each
    point's fastest repeat `fastest_repeat` x its median."""
    from dlas.store.results import ResultsStore

    store = ResultsStore(path)
    medians = {("untuned", "direct-dense"): 2.0, ("untuned", "gemm-dense"): 2.4,
               ("autoschedule", "direct-dense"): 2.4, ("autoschedule", "gemm-dense"): 2.0}
    for (codegen, primitive), median in medians.items():
        layers = dict(dataset="digits", model="resnet18", compression="none",
                      primitive=primitive, codegen=codegen, hardware="local")
        store.record(f"{codegen}-{primitive}", status="ok", layers=layers, config={},
                     metrics=latency_metrics(median) | {
                         "latency_ms_min": fastest_repeat * median, "accuracy_compiled": 0.9,
                         "accuracy_torch": 0.9, "size_bytes": 1e6, "number_format": "float32"})
    return path


def test_a_flip_within_the_spread_is_not_enough(tmp_path):
    """20 % apart by the medians: a flip when the runner-up never ran as fast as the winner's
    median; when its fastest repeats did (a machine whose speed jumps between phases, medians
    taken at different times), the flip is not told from noise."""
    o = checks(flip_store(tmp_path / "apart.sqlite", 0.95))["tuning_flip"]
    assert o.verdict == obs.HOLDS and "1 of the 1 clear" in o.statistic
    assert o.table[["separated_untuned", "separated_tuned"]].values.tolist() == [[True, True]]
    o = checks(flip_store(tmp_path / "spread.sqlite", 0.5))["tuning_flip"]
    assert o.verdict == obs.NOT_ENOUGH and "0 of the 1 clear" in o.statistic
    assert "remeasure=N" in o.statistic
    assert o.table["margin_tuned"].tolist() == [pytest.approx(1.2)]
