"""The written report: HTML sections with embedded figures, CSV tables with the right rows."""
import base64
import re

import pandas as pd
import pytest

from dlas.report import write_report, load
from tests.report.synthetic import grid_store


@pytest.fixture(scope="module")
def report(grid, tmp_path_factory):
    df, info = load(grid)
    return write_report(df, info, tmp_path_factory.mktemp("report"))


def test_html_has_every_section_and_embeds_its_figures(report):
    page = report.html.read_text()
    for anchor in ("obs-uncorrelated", "obs-speedup_hardware", "obs-tuning_flip",
                   "obs-quantization_flip", "fig-pareto", "fig-correlations", "fig-speedup",
                   "fig-best_primitive", "fig-tuning", "fig-status", "int8", "not-ok", "tables"):
        assert f'id="{anchor}"' in page, anchor
    assert page.count('class="badge holds"') == 3 and page.count('class="badge nothold"') == 1
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    # opens without network: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    assert "TVMError: Check failed: (bound) is false" in page  # the failed point's reason
    for png in report.figures.values():
        assert png.is_file() and png.stat().st_size > 10_000


def test_csv_tables_have_the_rows(report):
    out = report.html.parent
    points = pd.read_csv(out / "points.csv")
    assert len(points) == 74 and points["status"].value_counts().to_dict() == {
        "ok": 72, "unsupported": 1, "failed": 1}
    not_ok = pd.read_csv(out / "not_ok.csv")
    assert not_ok[["status", "layer", "primitive"]].values.tolist() == [
        ["failed", "codegen", "spatial_pack-bsr"], ["unsupported", "primitive", "gemm-csr"]]
    speedup = pd.read_csv(out / "speedup.csv")
    assert len(speedup) == 48 and set(speedup["compression"]) == {"int8", "unstructured"}
    assert len(pd.read_csv(out / "tuning_flips.csv")) == 12
    assert pd.read_csv(out / "quantization_flips.csv")["flipped"].sum() == 4
    int8 = pd.read_csv(out / "int8_accuracy.csv")  # the failed int8 point measured nothing
    assert len(int8) == 24 and set(int8["model"]) == {"resnet18", "mobilenetv2"}
    assert int8["int8_cost"].round(6).eq(-0.01).all()
    assert int8["compiled_vs_qdq"].round(6).eq(-0.002).all()
    assert int8["reference_rel_diff"].eq(0).all() and int8["eval_samples"].eq(360).all()
    ranges = pd.read_csv(out / "speedup_ranges.csv")
    assert ranges[["compression", "hardware", "n"]].values.tolist() == [
        ["int8", "board", 12], ["int8", "local", 12], ["unstructured", "board", 12],
        ["unstructured", "local", 12]]


def test_a_figure_without_data_says_why(tmp_path):
    grid_store(tmp_path / "r.sqlite", codegens=("untuned",), hardware=("local",))
    df, info = load(tmp_path / "r.sqlite")
    report = write_report(df, info, tmp_path / "out")
    assert "tuning" not in report.figures and not (tmp_path / "out" / "tuning.png").exists()
    assert "Not drawn: no point was measured both untuned and with a tuning codegen" in \
        report.html.read_text()


def test_emulated_rows_are_kept_apart_and_labelled(tmp_path):
    """Emulated latency is no hardware's: those rows are in their own table only, never compared."""
    grid_store(tmp_path / "r.sqlite", emulated=("board",))
    df, info = load(tmp_path / "r.sqlite")
    report = write_report(df, info, tmp_path / "out")
    emulated = pd.read_csv(tmp_path / "out" / "emulated.csv")
    assert len(emulated) == 36 and set(emulated["hardware"]) == {"board (emulated)"}
    assert emulated["latency_ms_emulator"].notna().all()
    points = pd.read_csv(tmp_path / "out" / "points.csv")
    assert "board" not in set(points[points["status"] == "ok"]["hardware"])
    assert set(report.tables["speedup.csv"]["hardware"]) == {"local"}
    assert report.observations[1].verdict == "not enough data"  # one real hardware is left
    page = report.html.read_text()
    assert 'id="emulated"' in page and "board (emulated)" in page
    # a study without emulated rows shows no such section
    grid_store(tmp_path / "real.sqlite", hardware=("local",))
    df, info = load(tmp_path / "real.sqlite")
    assert 'id="emulated"' not in write_report(df, info, tmp_path / "out2").html.read_text()


def test_remeasured_points_show_their_spread_across_rounds(tmp_path, report):
    from dlas.store.results import ResultsStore

    assert 'id="rounds"' not in report.html.read_text()  # nothing re-timed: no such section
    store = ResultsStore(tmp_path / "r.sqlite")
    layers = dict(dataset="d", model="m", compression="none", primitive="direct-dense",
                  codegen="untuned", hardware="local")
    for key, medians in [("steady", [2.0, 2.02, 1.98]), ("drifting", [2.0, 3.0, 2.5])]:
        store.record(key, status="ok", layers=layers | {"model": key}, metrics={
            "latency_ms_median": float(sorted(medians)[1]), "latency_round_medians": medians,
            "latency_round_spread": (max(medians) - min(medians)) / sorted(medians)[1],
            "load_avg_rounds": [0.5, 1.5, 0.75], "latency_repeats": 30})
    store.record("once", status="ok", layers=layers | {"model": "once"},
                 metrics={"latency_ms_median": 1.0})
    df, info = load(store.path)
    page = write_report(df, info, tmp_path / "out").html.read_text()
    rounds = pd.read_csv(tmp_path / "out" / "latency_rounds.csv")
    assert list(rounds["model"]) == ["drifting", "steady"]  # the most spread first
    assert list(rounds["latency_round_medians"]) == ["2 / 3 / 2.5", "2 / 2.02 / 1.98"]
    assert rounds["latency_round_spread"][0] == pytest.approx(0.4)
    assert list(rounds["load_avg_rounds"]) == ["0.5 / 1.5 / 0.75"] * 2
    assert 'id="rounds"' in page and "2 / 3 / 2.5" in page
