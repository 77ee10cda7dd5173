"""DLAS's Optuna sweeper (hydra/sweeper=dlas_optuna) on a toy Hydra app (tests/sweep/search_app.py):
multi-objective front, resume with continuing trial numbers, failed trials, a launcher."""
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("search_app.py")
SPACE = ["x=range(0,10)", "y=choice(a,b)"]


def search(tmp_path, *args, app=APP, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the app finds hydra_plugins/ there
    out = subprocess.run([sys.executable, str(app), "-m", "hydra/sweeper=dlas_optuna",
                          f"hydra.sweeper.storage={tmp_path}/search.sqlite",
                          f"hydra.sweep.dir={tmp_path}/multirun", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def trials(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/search.sqlite").trials


def test_multi_objective_search_resumes_where_it_stopped(tmp_path):
    first = search(tmp_path, *SPACE, "hydra.sweeper.n_trials=4", "hydra.sweeper.study_name=toy")
    assert "0 of 4 trials done; objectives loss (minimize), gain (maximize)" in first.stdout
    again = search(tmp_path, *SPACE, "hydra.sweeper.n_trials=7", "hydra.sweeper.study_name=toy")
    assert "4 of 7 trials done" in again.stdout
    done = [t for t in trials(tmp_path, "toy") if "repeat_of" not in t.user_attrs]
    assert len(done) == 7 and all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    assert len({tuple(sorted(t.params.items())) for t in done}) == 7  # no point twice
    # job numbers are trial numbers: the resumed run's jobs did not overwrite the first's
    assert {int(p.name) for p in (tmp_path / "multirun").iterdir()} == {t.number for t in done}
    assert min(t.number for t in done if f"#{t.number} :" in again.stderr + again.stdout) >= 4
    # the front printed is the study's Pareto front (minimize loss, maximize gain)
    front = again.stdout.split("front:")[1]
    on_front = [t for t in done if not any(o.values[0] <= t.values[0] and o.values[1] >= t.values[1]
                                           and o.values != t.values for o in done)]
    assert front.startswith(f" {len(on_front)} trials")
    for t in on_front:
        assert f"#{t.number} " in front


def test_failed_and_unsupported_points_are_failed_trials_and_the_search_goes_on(tmp_path):
    # (NSGA-II with seed 0 repeats points, so the budget ends this search before the space does)
    out = search(tmp_path, "x=range(0,2)", "y=choice(a,bad,boom)", "hydra.sweeper.n_trials=6",
                 "hydra.sweeper.study_name=toy", "hydra/sweeper/sampler=nsgaii")
    assert "all 6 points of the space were tried" not in out.stdout  # the budget ended it
    done = [t for t in trials(tmp_path, "toy") if "repeat_of" not in t.user_attrs]
    by_y = {t.params["y"]: t for t in done}
    assert by_y["bad"].state == optuna.trial.TrialState.FAIL
    assert by_y["bad"].user_attrs["status"] == "unsupported"
    assert by_y["bad"].user_attrs["reason"] == "no such y"
    assert by_y["boom"].state == optuna.trial.TrialState.FAIL
    assert by_y["boom"].user_attrs["reason"] == "the job raised: the toy job crashed"
    assert "2 trials complete, 4 failed" in out.stdout


def test_a_trial_left_running_by_a_killed_search_is_asked_again(tmp_path):
    study = optuna.create_study(study_name="toy", storage=f"sqlite:///{tmp_path}/search.sqlite",
                                directions=["minimize", "maximize"])
    study.enqueue_trial({"x": 3, "y": "b"})
    killed = study.ask({"x": IntDistribution(0, 9), "y": CategoricalDistribution(["a", "b"])})
    assert killed.params == {"x": 3, "y": "b"}  # RUNNING, as a killed search leaves it
    out = search(tmp_path, *SPACE, "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=toy")
    assert "0 of 2 trials done, 1 interrupted (asked again)" in out.stdout
    first, retried = trials(tmp_path, "toy")[:2]
    assert first.number == killed.number and first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["interrupted"] is True
    assert retried.params == {"x": 3, "y": "b"} and retried.values == [2.0, 3.0]


def test_search_under_the_joblib_launcher(tmp_path):
    out = search(tmp_path, *SPACE, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.study_name=toy")
    assert "Joblib.Parallel(n_jobs=2" in out.stderr + out.stdout
    done = [t for t in trials(tmp_path, "toy") if "repeat_of" not in t.user_attrs]
    assert [t.state for t in done] == [optuna.trial.TrialState.COMPLETE] * 4


@pytest.mark.parametrize("args, expected", [
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0"),
    (["objectives.latency_ms_median=fastest"], "objectives.latency_ms_median='fastest'"),
])
def test_deploy_refuses_a_bad_search_in_one_line(tmp_path, args, expected):
    env = {**os.environ, "DLAS_OUTPUTS": str(tmp_path)}
    out = subprocess.run([sys.executable, "deploy.py", "-m", "hydra/sweeper=dlas_optuna",
                          "model=choice(resnet18,mobilenetv2)", "logger.mode=disabled", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    err = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], out.stderr
