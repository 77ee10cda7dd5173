"""The report's search section: hypervolume, the searched front against the grid's, trials."""
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from dlas.errors import DLASError
from dlas.report import load, write_report
from dlas.report.search import compare, hypervolume, load_search
from dlas.store.results import ResultsStore

OBJ = {"accuracy_compiled": "maximize", "latency_ms_median": "minimize"}
# (accuracy, latency): D is dominated by B; the front is A, B, C
POINTS = {"A": (0.9, 4.0), "B": (0.8, 2.0), "C": (0.5, 1.0), "D": (0.6, 3.0)}


def test_hypervolume_of_a_staircase():
    losses = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.5, 3.5]])
    assert hypervolume(losses, np.array([4.0, 4.0])) == pytest.approx(1 + 2 + 3 + 0)
    assert hypervolume(losses[:0], np.array([4.0, 4.0])) == 0.0
    assert hypervolume(np.array([[5.0, 1.0]]), np.array([4.0, 4.0])) == 0.0  # beyond reference


@pytest.fixture
def searched(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    for name, (acc, lat) in POINTS.items():
        store.record(f"k{name}", status="ok", sweep="/runs/grid",
                     layers={"dataset": "digits", "model": name, "compression": "none",
                             "primitive": "direct-dense", "codegen": "untuned",
                             "hardware": "local"},
                     metrics={"accuracy_compiled": acc, "latency_ms_median": lat})
    study = optuna.create_study(study_name="s1", storage=f"sqlite:///{tmp_path}/search.sqlite",
                                directions=list(OBJ.values()))
    study.set_user_attr("objectives", OBJ)
    dist = {"model": CategoricalDistribution(list(POINTS) + ["E"])}
    for name in ("D", "A"):
        study.add_trial(create_trial(params={"model": name}, distributions=dist,
                                     values=list(POINTS[name]),
                                     user_attrs={"key": f"k{name}", "status": "ok"}))
    study.add_trial(create_trial(params={"model": "E"}, distributions=dist, state=TrialState.FAIL,
                                 user_attrs={"status": "unsupported", "reason": "no E here"}))
    return tmp_path


def test_the_search_against_the_grid(searched):
    df, info = load(searched / "results.sqlite")
    search = load_search(searched / "results.sqlite", "latest")
    assert search.name == "s1" and list(search.trials["number"]) == [0, 1, 2]
    out = compare(search, df)
    # losses (-accuracy, latency); grid range (0.4, 3) -> reference (-0.5 + 0.04, 4 + 0.3)
    assert out["reference"] == pytest.approx([-0.46, 4.3])
    grid_hv = 0.1 * 0.3 + 0.3 * 2.3 + 0.04 * 3.3        # A, then A+B, then A+B+C
    assert out["grid_hv"] == pytest.approx(grid_hv)
    trials = out["trials"]
    assert list(trials["on_front"]) == [True, True, False]   # D alone, then A beats it
    with_a = 0.3 * 0.3 + 0.14 * 1.3                     # A, then A+D
    assert list(trials["hypervolume"]) == pytest.approx([0.14 * 1.3, with_a, with_a])
    search_row = out["table"].iloc[1]
    assert search_row["of_grid"] == pytest.approx(with_a / grid_hv)
    assert "3 trials, 2 complete (2 of them grid points)" in search_row["what"]
    assert list(out["grid"]["grid_front"]) == [True, True, True, False]


def test_the_report_shows_the_search(searched, tmp_path_factory):
    df, info = load(searched / "results.sqlite")
    search = load_search(searched / "results.sqlite", "s1")
    report = write_report(df, info, tmp_path_factory.mktemp("report"), search=search)
    page = report.html.read_text()
    assert 'id="search"' in page and 'id="fig-search"' in page
    assert (report.html.parent / "search.png").is_file()
    assert report.tables["search.csv"]["reason"].iloc[2] == "no E here"
    # no search asked: none of it, and no stale file of an earlier report
    again = write_report(df, info, report.html.parent)
    assert 'id="search"' not in again.html.read_text()
    assert not (report.html.parent / "search.png").exists()


def test_a_search_that_is_not_there_is_named(searched, tmp_path):
    with pytest.raises(DLASError, match="report.search='s2'.*valid: latest, null, s1"):
        load_search(searched / "results.sqlite", "s2")
    assert load_search(tmp_path / "elsewhere" / "results.sqlite", "latest") is None
    assert load_search(searched / "results.sqlite", None) is None
