"""Job counts as Hydra's sweeper expands them, and the progress line's counts and ETA."""
import pytest

from dlas.sweep.progress import Progress, duration, sweep_jobs


def test_sweep_jobs_is_the_basic_sweepers_product():
    jobs = sweep_jobs({"model": "resnet18,mobilenetv2", "codegen": "untuned"},
                      ["compression=none,int8,fp16", "seed=3"])
    assert len(jobs) == 6
    assert jobs[0] == ["model=resnet18", "codegen=untuned", "compression=none", "seed=3"]
    # a command-line axis replaces the params' axis of the same key
    assert len(sweep_jobs({"model": "resnet18,mobilenetv2"}, ["model=vgg16"])) == 1
    assert len(sweep_jobs({"compression.ratio": "range(0.1,1.0,0.2)"})) == 5
    assert sum(1 for _ in sweep_jobs({"a": "1,2"}, ["b=x,y,z"], max_batch_size=4)) == 6


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.6, "1m00s"), (603, "10m03s"),
                                           (3720, "1h02m"), (90061, "25h01m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_eta_comes_from_computed_jobs_only():
    progress = Progress(total=10)
    assert progress.line(0).endswith("ETA -")
    progress.add("ok", 0.2, reused=True)  # reused in a blink: must not drag the mean down
    assert progress.eta_s() is None
    progress.add("ok", 60)
    progress.add("failed", 120)
    progress.add("unsupported", 30)
    assert progress.done == 4 and progress.eta_s() == pytest.approx(6 * 70)
    assert progress.line(603) == ("[4/10] ok 2 (1 reused) · unsupported 1 · failed 1 · "
                                  "elapsed 10m03s · ETA 7m00s")


def test_unknown_total():
    progress = Progress(total=None)
    progress.add("ok", 5)
    assert progress.line(5).startswith("[1/?] ok 1 · ") and progress.line(5).endswith("ETA -")
