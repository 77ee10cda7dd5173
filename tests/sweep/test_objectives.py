"""Objectives by name: what a multirun job returns so that any sweeper plugin can search."""
import math
import pickle

import pytest
from hydra.core.utils import JobReturn, JobStatus

import deploy
from dlas.errors import ConfigError
from dlas.sweep.objectives import Value, Values, check_names, directions, returned, values
from dlas.sweep.task import run_point

OBJ = {"accuracy_compiled": "maximize", "latency_ms_median": "minimize"}
OK = {"key": "k", "status": "ok", "metrics": {"accuracy_compiled": 0.9, "latency_ms_median": 2.5,
                                               "noisy": False, "target": "llvm"}}


def test_values_of_an_ok_row_in_config_order():
    assert values(OK, {"latency_ms_median": "minimize", "accuracy_compiled": "maximize"}) \
        == ([2.5, 0.9], None)
    out = returned(OK, OBJ)
    assert isinstance(out, Values) and out == [0.9, 2.5] and out.row is OK
    single = returned(OK, {"latency_ms_median": "minimize"})
    assert isinstance(single, Value) and float(single) == 2.5 and single.row is OK
    assert returned(OK, None) is OK  # no objectives: the row, as before
    # launchers (joblib, submitit) pickle the return value: the row travels with it
    assert pickle.loads(pickle.dumps(out)).row == OK
    assert pickle.loads(pickle.dumps(single)).row == OK


def test_a_point_not_ok_or_without_the_objective_is_nan_with_the_reason():
    row = {"status": "unsupported", "layer": "primitive", "reason": "no GPU schedule"}
    vals, why = values(row, OBJ)
    assert all(math.isnan(v) for v in vals) and why == "unsupported [primitive] no GPU schedule"
    vals, why = values(OK, {"accuracy_compiled": "maximize", "noisy": "minimize"})
    assert math.isnan(vals[0]) and "'noisy' is not a number" in why
    assert "accuracy_compiled, latency_ms_median" in why  # the numeric columns it could be


def test_bad_objectives_are_refused_in_one_line(make_cfg):
    with pytest.raises(ConfigError, match="objectives.latency_ms_median='fastest'.*maximize"):
        directions({"latency_ms_median": "fastest"})
    with pytest.raises(ConfigError, match="at least one objective"):
        directions({})
    with pytest.raises(ConfigError, match="objectives='latency'.*latency_ms_median"):
        check_names({"latency": "minimize"}, [OK])
    check_names({"latency": "minimize"}, [])  # nothing stored to check against yet
    # deploy's check of a sweep's points (before any work) says it too
    with pytest.raises(ConfigError, match="fastest"):
        deploy.check(make_cfg(overrides=["objectives.latency_ms_median=fastest"]))


def test_an_unsupported_point_is_a_failed_trial_with_its_reason(make_cfg):
    import optuna

    from dlas.errors import Unsupported
    from dlas.sweep.search import tell

    def plan(cfg):  # a combination refused before any work (as deploy's plan does)
        raise Unsupported("primitive", "gemm", reason="not on this target", layer="primitive")

    cfg = make_cfg()
    row = run_point(cfg, None, plan=plan, sweep="s", raise_on_failure=False)
    assert row["status"] == "unsupported"
    job = JobReturn(status=JobStatus.COMPLETED, _return_value=deploy.objective_values(cfg, row))
    study = optuna.create_study(directions=list(OBJ.values()))
    trial = study.ask()
    tell(study, trial, job, OBJ)
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.FAIL
    assert frozen.user_attrs == {"key": row["key"], "status": "unsupported",
                                 "reason": row["reason"]}
