"""Figures: labelled axes and legends on data, None when there is nothing to draw."""
import matplotlib.pyplot as plt
import pytest

from dlas.report import figures, stats
from dlas.report.table import load


@pytest.fixture(scope="module")
def tables(grid):
    df = load(grid)[0]
    ok = stats.measured(df)
    return df, ok


def test_every_axis_is_labelled_and_legends_name_the_layers(tables):
    df, ok = tables
    drawn = {"pareto": figures.pareto(ok, stats.pareto_front(ok)),
             "correlations": figures.correlations(ok, stats.correlations(ok)),
             "speedup": figures.speedup(stats.speedups(ok)),
             "tuning": figures.tuning(stats.tuning(ok))}
    for name, fig in drawn.items():
        axes = [ax for ax in fig.get_axes() if ax.get_visible()]
        assert axes, name
        for ax in axes:
            assert ax.get_xlabel() and ax.get_ylabel(), name
        titles = {leg.get_title().get_text() for leg in fig.legends}
        assert titles & {"compression", "hardware"}, name
        plt.close(fig)
    # latency spans more than a decade on board (0.28 to 55 ms): a log axis
    pareto = figures.pareto(ok, stats.pareto_front(ok))
    assert pareto.get_axes()[0].get_xscale() == "log"
    plt.close(pareto)


def test_nothing_to_draw_gives_none(tables):
    _, ok = tables
    empty = ok.iloc[:0]
    assert figures.pareto(empty, stats.pareto_front(empty)) is None
    assert figures.speedup(stats.speedups(empty)) is None
    assert figures.tuning(stats.tuning(ok[ok["codegen"] == "untuned"])) is None
    one = ok[ok["primitive"] == "direct-dense"]  # one primitive per group: no "best" to show
    assert figures.best_primitive(stats.relative_latency(one)) is None
