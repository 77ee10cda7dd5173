"""DLAS's Optuna sweeper: search the layers for the objectives' front instead of a full grid.

The plugin (hydra_plugins/dlas_optuna_sweeper) is thin; this is what it does. Ask/tell on an
Optuna study in SQLite beside the results store (`search.sqlite`), keyed by the search (space,
fixed overrides, objectives, sampler) unless named: running the same command again resumes
it, trial numbers (and Hydra job numbers, hence sweep subfolders) continue, and a trial a
killed run left running is marked failed (`interrupted`) and its point asked again first.
Points already in the results store are answered from it by the jobs themselves (run_point's
resume). A job's row rides on its return value (dlas.sweep.objectives): a point that is not
ok, or that lacks an objective, is a FAIL trial with the row's reason.

Why not hydra-optuna-sweeper 1.3.0: it pins optuna<3 (hence sqlalchemy<2, alembic<1.14 for
SQLite), restarts job numbers on resume and needs a float from the job
(../shared/research/scale.md §2).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock, Timeout
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf

from dlas.errors import ConfigError, DLASError, first_line
from dlas.store.artifacts import config_key
from dlas.sweep.objectives import check_names, directions, row_of

log = logging.getLogger(__name__)
STORAGE_NAME = "search.sqlite"


def distribution(override: Override):
    """Hydra's sweep syntax as an Optuna distribution: `a,b` / `choice(a,b)` categorical,
    `range(1,5)` integers 1..4 (Python's range: stop excluded), `interval(lo,hi)` floats
    (`tag(log, interval(...))` on a log scale)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if override.is_interval_sweep():
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    if (override.is_range_sweep() and not value.shuffle and len(choices) > 1
            and all(isinstance(c, int) for c in choices)):
        return IntDistribution(choices[0], choices[-1], step=choices[1] - choices[0])
    return CategoricalDistribution(choices)


def space(arguments: Sequence[str], params: dict | None) -> tuple[dict, list[str]]:
    """({override key: distribution}, fixed overrides) from the config's `params` (as in
    Hydra's basic sweeper: an experiment's `hydra.sweeper.params`) and the command line,
    which wins."""
    merged = {}
    for text in [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments):
        try:
            override = OverridesParser.create().parse_overrides([text])[0]
        except Exception as exc:  # Hydra's grammar errors are multi-line
            raise ConfigError("search override", text, reason=first_line(exc)) from None
        merged[override.get_key_element()] = override
    dists, fixed = {}, []
    for key, override in merged.items():
        if override.is_sweep_override():
            dists[key] = distribution(override)
        else:
            fixed.append(override.input_line)
    return dists, fixed


def override_value(value) -> str:
    """A sampled value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def study_name(dists: dict, fixed: list[str], objectives: dict, sampler: dict) -> str:
    return "search-" + config_key({k: repr(d) for k, d in dists.items()}, sorted(fixed),
                                  objectives, sampler)[:12]


def storage_path(setting: str | None, config: DictConfig) -> Path:
    """`hydra.sweeper.storage`, or search.sqlite beside the results store."""
    if setting:
        return Path(setting)
    results = OmegaConf.select(config, "paths.results")
    if not results:
        raise ConfigError("hydra.sweeper.storage", None, "a path for the study's SQLite file",
                          reason="this app has no paths.results to put it beside")
    return Path(results).with_name(STORAGE_NAME)


def interrupted_trials(study) -> list:
    """Trials a killed run left RUNNING (the study's lock says no search holds it now): FAIL,
    marked `interrupted`, and their points enqueued so they are asked again first."""
    import optuna

    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("interrupted", True)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params)
    return stale


def spent(study) -> int:
    """Trials that count against the budget: the finished ones but the interrupted and the
    repeats of a tried point."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished()
               and not t.user_attrs.get("interrupted") and "repeat_of" not in t.user_attrs)


def space_size(dists: dict) -> int | None:
    """How many points a space of categorical and integer distributions has (None: floats)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    size = 1
    for d in dists.values():
        if isinstance(d, CategoricalDistribution):
            size *= len(d.choices)
        elif isinstance(d, IntDistribution) and not d.log:
            size *= (d.high - d.low) // d.step + 1
        else:
            return None
    return size


def ask(study, dists: dict, n: int, patience: int = 200) -> list:
    """n trials at points not tried yet. A sampler proposes tried points again (small
    categorical spaces, a random first generation): each repeat is told the earlier trial's
    outcome at once (`repeat_of`), costs no job and no budget; none found in `patience`
    proposals (e.g. every point tried) gives fewer."""
    import optuna

    tried = {_point(t.params): t for t in study.get_trials(deepcopy=False)
             if t.state.is_finished() and not t.user_attrs.get("interrupted")}
    out, pending = [], set()
    if space_size(dists) is not None and len(tried) >= space_size(dists):
        return out
    for _ in range(patience):
        if len(out) == n:
            break
        trial = study.ask(dists)
        point = _point(trial.params)
        earlier = tried.get(point)
        if earlier is None and point not in pending:
            out.append(trial)
            pending.add(point)
            continue
        trial.set_user_attr("repeat_of", earlier.number if earlier else "pending")
        if earlier is not None and earlier.state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, earlier.values)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return out


def _point(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def tell(study, trial, ret: JobReturn, objectives: dict):
    """Record a job's outcome in its trial: its values, or FAIL with the status and reason."""
    import optuna

    status, reason, vals = "failed", None, None
    try:
        value = ret.return_value  # (a job that raised re-raises here)
    except Exception as exc:
        reason = f"the job raised: {first_line(exc)}"
    else:
        row = row_of(value)
        if isinstance(row, dict):
            status, reason = row.get("status", "ok"), row.get("reason")
            if row.get("key"):
                trial.set_user_attr("key", row["key"])
        try:
            vals = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        except (TypeError, ValueError):
            reason = f"the job returned {type(value).__name__}, not the objectives' values"
        if vals is not None and len(vals) != len(objectives):
            reason, vals = f"{len(vals)} values for {len(objectives)} objectives", None
        if vals is not None and any(math.isnan(v) for v in vals):
            reason = reason or "an objective is not a number in the row"
            vals = None
    trial.set_user_attr("status", status)
    if vals is None:
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, vals)


def run_search(*, arguments: Sequence[str], config: DictConfig, launch: Callable,
               compose: Callable[[list[str]], DictConfig], sampler: dict, n_trials: int,
               n_jobs: int, storage: str | None, name: str | None, params: dict | None):
    """Ask n_trials points (n_jobs at a time), launch them, tell their objectives; returns
    the study's best trials (its front for several objectives)."""
    import optuna
    from hydra.utils import instantiate

    if not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError("hydra.sweeper.n_trials", n_trials, "an integer >= 1")
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError("hydra.sweeper.n_jobs", n_jobs, "an integer >= 1")
    objectives = directions(OmegaConf.to_container(config.get("objectives")) if
                            OmegaConf.is_config(config.get("objectives")) else
                            config.get("objectives"))
    dists, fixed = space(arguments, params)
    if not dists:
        raise ConfigError("search space", " ".join(arguments) or None,
                          "overrides in sweep syntax, e.g. model=choice(resnet18,mobilenetv2), "
                          "compression.ratio=interval(0.3,0.9)",
                          reason="nothing to search")
    results = OmegaConf.select(config, "paths.results")
    if results and Path(results).is_file():
        from dlas.store.results import ResultsStore

        check_names(objectives, ResultsStore(results).rows())
    path = storage_path(storage, config)
    name = name or study_name(dists, fixed, objectives, sampler)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.parent / f".{path.name}.locks" / f"{name}.lock")
    try:
        path.parent.joinpath(f".{path.name}.locks").mkdir(exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise DLASError("hydra.sweeper.study_name", name, reason=f"another search is running this "
                        f"study (lock {lock.lock_file}); wait for it, or give another "
                        "study_name") from None
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{path.resolve()}",
                                    directions=list(objectives.values()), load_if_exists=True)
        if [d.name.lower() for d in study.directions] != list(objectives.values()):
            raise ConfigError("objectives", objectives, reason=f"study {name} in {path} was made "
                              f"for {len(study.directions)} objectives of other directions; give "
                              "another hydra.sweeper.study_name")
        study.set_user_attr("objectives", objectives)
        study.set_user_attr("space", {k: repr(d) for k, d in dists.items()})
        study.set_user_attr("fixed", fixed)
        stale = interrupted_trials(study)
        done = spent(study)
        # seeded per resume: a sampler restarted with its first seed would ask the same
        # points again
        seed = sampler.get("seed")
        study.sampler = instantiate({**sampler, **({"seed": seed + len(study.trials)}
                                                   if seed is not None else {})})
        print(f"search: study {name} in {path}: {done} of {n_trials} trials done"
              + (f", {len(stale)} interrupted (asked again)" if stale else "")
              + f"; objectives {', '.join(f'{k} ({v})' for k, v in objectives.items())}",
              flush=True)
        size = space_size(dists)
        while done < n_trials:
            trials = ask(study, dists, min(n_jobs, n_trials - done))
            if not trials:
                print(f"search: all {size} points of the space were tried", flush=True)
                break
            batch = [fixed + [f"{k}={override_value(v)}" for k, v in t.params.items()]
                     for t in trials]
            for trial, overrides in zip(trials, batch):
                _check(compose(overrides), study, trial, overrides)
            for trial, ret in zip(trials, launch(batch, trials[0].number)):
                tell(study, trial, ret, objectives)
            done += len(trials)
        print(front_text(study, objectives), flush=True)
        return study.best_trials
    finally:
        lock.release()


def _check(job: DictConfig, study, trial, overrides: list[str]):
    """The entry point's check of the trial's settings (as CheckPoints does for a grid): a bad
    value stops the search with one line, its trial failed (not left running)."""
    import optuna

    from dlas.cli import CHECKS

    check = CHECKS.get(OmegaConf.select(job, "hydra.job.config_name"))
    if check is None:
        return
    try:
        check(job)
    except ConfigError as exc:
        trial.set_user_attr("reason", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise ConfigError(exc.what, exc.value, exc.valid,
                          reason=f"{exc.reason or 'bad value'} [search point: "
                                 f"{' '.join(overrides)}]") from None


def front_text(study, objectives: dict) -> str:
    """The trials on the front (the best trial for one objective), one line each."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                and "repeat_of" not in t.user_attrs]
    failed = sum(1 for t in trials if t.state == optuna.trial.TrialState.FAIL
                 and not t.user_attrs.get("interrupted") and "repeat_of" not in t.user_attrs)
    best = sorted((t for t in study.best_trials if "repeat_of" not in t.user_attrs),
                  key=lambda t: t.values) if complete else []
    lines = [f"search: {len(complete)} trials complete, {failed} failed; "
             f"front: {len(best)} trials"]
    for t in best:
        vals = "  ".join(f"{k}={v:.6g}" for k, v in zip(objectives, t.values))
        point = " ".join(f"{k}={override_value(v)}" for k, v in t.params.items())
        lines.append(f"  #{t.number:<4} {vals}  | {point}")
    return "\n".join(lines)
