"""Loading the results store: filters, sweep selection, labels that tell variants apart."""
import pytest

from dlas.errors import DLASError
from dlas.report.table import load, parse_where
from dlas.store.results import ResultsStore


def test_where_parses_layers_and_several_values():
    assert parse_where("hardware=local,model=resnet18,mobilenetv2") == {
        "hardware": ["local"], "model": ["resnet18", "mobilenetv2"]}
    assert parse_where(["hardware=local", "model=resnet18"]) == {
        "hardware": ["local"], "model": ["resnet18"]}
    assert parse_where({"codegen": "untuned", "model": ["a", "b"]}) == {
        "codegen": ["untuned"], "model": ["a", "b"]}
    assert parse_where(None) == {} and parse_where("") == {}
    with pytest.raises(DLASError, match="report.where='size'.*valid: dataset, model"):
        parse_where("size=3")
    with pytest.raises(DLASError, match="names no layer"):
        parse_where("resnet18")


def test_filter_selects_matching_rows(grid):
    df, info = load(grid)
    assert len(df) == 74 and info["status"] == {"ok": 72, "unsupported": 1, "failed": 1}
    df, info = load(grid, where="hardware=local")
    assert set(df["hardware"]) == {"local"} and len(df) == 37
    df, _ = load(grid, where="hardware=board,model=resnet18,codegen=untuned,compression=none,int8")
    assert len(df) == 6 and set(df["compression"]) == {"none", "int8"}  # x 3 primitives
    # a primitive named without its format matches every format of it
    df, _ = load(grid, where="primitive=gemm,hardware=local")
    assert set(df["primitive"]) == {"gemm-dense", "gemm-csr"}
    df, _ = load(grid, where="status=failed")
    assert list(df["reason"]) == ["TVMError: Check failed: (bound) is false"]
    with pytest.raises(DLASError, match="model='vgg16': no such value.*mobilenetv2, resnet18"):
        load(grid, where="model=vgg16")


def test_sweep_selection(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    layers = dict(dataset="d", model="m", compression="none", primitive="direct-dense",
                  codegen="untuned", hardware="local")
    for key, sweep in [("a", "/x/runs/multirun_1"), ("b", "/x/runs/multirun_2"), ("c", None)]:
        store.record(key, status="ok", layers=layers | {"model": key}, sweep=sweep,
                     metrics={"latency_ms_median": 1.0})
    assert len(load(store.path)[0]) == 3
    df, info = load(store.path, sweep="latest")  # recorded last among the sweeps
    assert list(df["key"]) == ["b"] and info["sweep"] == "/x/runs/multirun_2"
    assert list(load(store.path, sweep="multirun_1")[0]["key"]) == ["a"]  # by folder name
    with pytest.raises(DLASError, match="valid: latest, multirun_1, multirun_2"):
        load(store.path, sweep="multirun_9")
    with pytest.raises(DLASError, match="no results store"):
        load(tmp_path / "none.sqlite")


def test_rows_jobs_handed_over_are_taken_in_before_the_report(tmp_path):
    """A cluster's jobs write row files only; a report made while the sweep's head is gone
    (killed, or the jobs still running) takes them in first."""
    db, rows = tmp_path / "head" / "r.sqlite", tmp_path / "shared" / "rows"
    layers = dict(dataset="d", model="m", compression="none", primitive="direct-dense",
                  codegen="untuned", hardware="local")
    job = ResultsStore(db, rows=rows, rows_only=True)
    job.record("a", status="ok", layers=layers, sweep="/x/runs/multirun_1",
               metrics={"latency_ms_median": 1.0})
    df, info = load(db, rows=rows, sweep="latest")  # no database yet: the files are the rows
    assert list(df["key"]) == ["a"] and info["taken_in"] == 1
    job.record("b", status="failed", layers=layers | {"model": "n"}, sweep="/x/runs/multirun_1",
               layer="hardware", reason="gone")
    df, info = load(db, rows=rows)
    assert sorted(df["key"]) == ["a", "b"] and info["taken_in"] == 1
    assert load(db)[1]["taken_in"] == 0 and len(load(db)[0]) == 2  # stored, not read again


def test_labels_tell_apart_settings_within_a_name(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for i, ratio in enumerate((0.5, 0.9)):
        config = {"compression": {"name": "unstructured", "ratio": ratio, "steps": [
            {"_target_": "dlas.compression.UnstructuredPruning", "ratio": ratio}]}}
        store.record(f"k{i}", status="ok", config=config, metrics={"latency_ms_median": 1.0},
                     layers=dict(dataset="d", model="m", compression="unstructured",
                                 primitive="direct-dense", codegen="untuned", hardware="local"))
    df, _ = load(store.path, where="compression=unstructured")
    assert sorted(df["compression"]) == ["unstructured(ratio=0.5)", "unstructured(ratio=0.9)"]
    assert sorted(df["compression_base"]) == ["UnstructuredPruning(ratio=0.5)",
                                              "UnstructuredPruning(ratio=0.9)"]


def test_the_recorded_base_recipe_is_the_one_the_config_describes(make_cfg):
    """Compression.base (recorded by the compress stage) and the reading of older rows agree."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dlas.cli import group_options
    from dlas.report.table import compression_base

    for option in group_options("compression"):
        comp = make_cfg("deploy", [f"compression={option}"]).compression
        old_row = {"config": {"compression": OmegaConf.to_container(comp, resolve=True)},
                   "compression": option}
        recorded = instantiate(comp).base()
        assert recorded == compression_base(old_row), option
        assert compression_base({**old_row, "metrics": {"compression_base": "X"}}) == "X"
