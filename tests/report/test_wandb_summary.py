"""The W&B summary run: offline with no account (never a prompt), nothing when disabled."""
import pytest

from dlas.report import write_report, load
from dlas.report.wandb_summary import group_of, layer_config, log_summary


@pytest.fixture(scope="module")
def report(grid, tmp_path_factory):
    df, info = load(grid, where="hardware=local,codegen=untuned")
    return write_report(df, info, tmp_path_factory.mktemp("report")), df


def test_config_is_keyed_by_layer_and_group_is_the_sweep(report):
    rep, df = report
    config = layer_config(df, rep.info)
    assert config["hardware"] == "local" and config["codegen"] == "untuned"
    assert config["model"] == ["mobilenetv2", "resnet18"]
    assert config["report"]["where"] == {"hardware": ["local"], "codegen": ["untuned"]}
    assert group_of(rep.info, df) == "multirun_1"  # as the point runs of /runs/multirun_1


def test_offline_run_holds_tables_and_figures(no_account, report, tmp_path):
    rep, df = report
    where = log_summary(rep, df, project="dlas-test", mode="auto", directory=str(tmp_path / "wb"))
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and where == str(runs[0])
    tables = list((runs[0] / "files" / "media" / "table" / "tables").glob("*.table.json"))
    assert {t.name.split("_")[0] for t in tables} >= {"points", "speedup", "not"}
    images = list((runs[0] / "files" / "media" / "images" / "figures").glob("*.png"))
    assert {i.name.split("_")[0] for i in images} >= {"pareto", "speedup", "status"}


def test_disabled_logs_nothing(report, tmp_path):
    rep, df = report
    assert log_summary(rep, df, project="p", mode="disabled", directory=str(tmp_path / "wb")) is None
    assert not (tmp_path / "wb").exists()
