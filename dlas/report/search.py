"""The report's view of a search (DLAS's Optuna sweeper): its trials, the front it found, the
hypervolume after each trial, and the same for the grid of measured points it is compared with.

Hypervolume: the volume dominated by a front up to a reference point, every objective turned
into one to minimize (maximized ones negated); Optuna's own computation (optuna._hypervolume,
optuna pinned in requirements.txt). The reference point is the grid's worst value of each
objective pushed out by REF_MARGIN of its range, so that the grid's extreme points count too;
the search and the grid use the same one, and their ratio is the comparison. The study is
read from search.sqlite beside the results store (JSON values, nothing unpickled).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlas.errors import DLASError
from dlas.sweep.search import STORAGE_NAME

REF_MARGIN = 0.1


@dataclass
class Search:
    name: str
    objectives: dict[str, str]   # column -> maximize|minimize
    trials: pd.DataFrame         # number, state, status, reason, key, params..., objectives


def load_search(results: str | Path, study: str | None) -> Search | None:
    """The study named (or the newest with `latest`) in search.sqlite beside the results store;
    None for study=null, or for `latest` when no search was run."""
    if study is None or study == "":
        return None
    path = Path(results).with_name(STORAGE_NAME)
    if not path.is_file():
        if study == "latest":
            return None
        raise DLASError("report.search", study, "latest, null",
                        reason=f"no search was run on this store ({path} does not exist)")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path.resolve()}"
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        return None
    if study == "latest":
        chosen = max(summaries, key=lambda s: s.datetime_start or pd.Timestamp.min).study_name
    elif study in {s.study_name for s in summaries}:
        chosen = study
    else:
        raise DLASError("report.search", study, ["latest", "null"] + sorted(
            s.study_name for s in summaries), reason=f"no such study in {path}")
    loaded = optuna.load_study(study_name=chosen, storage=storage)
    objectives = loaded.user_attrs.get("objectives") or {
        f"objective_{i}": d.name.lower() for i, d in enumerate(loaded.directions)}
    records = []
    for t in loaded.get_trials(deepcopy=False):
        if t.user_attrs.get("interrupted") or "repeat_of" in t.user_attrs or \
                not t.state.is_finished():
            continue  # (a repeat of a tried point is that point's trial again)
        rec = {"number": t.number, "state": t.state.name, "status": t.user_attrs.get("status"),
               "key": t.user_attrs.get("key"), "reason": t.user_attrs.get("reason"),
               "finished": t.datetime_complete, **{f"param:{k}": v for k, v in t.params.items()}}
        for name, value in zip(objectives, t.values or [None] * len(objectives)):
            rec[name] = value
        records.append(rec)
    return Search(chosen, objectives, pd.DataFrame.from_records(records))


def _losses(table: pd.DataFrame, objectives: dict) -> np.ndarray:
    cols = [(-1.0 if d == "maximize" else 1.0) * table[c].astype(float)
            for c, d in objectives.items()]
    return np.column_stack(cols) if cols else np.empty((0, 0))


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by `losses` (rows of objectives to minimize) up to `reference`."""
    from optuna._hypervolume import compute_hypervolume

    inside = losses[np.isfinite(losses).all(axis=1) & (losses < reference).all(axis=1)] \
        if len(losses) else losses
    return float(compute_hypervolume(inside, reference)) if len(inside) else 0.0


def on_front(losses: np.ndarray) -> np.ndarray:
    """True for rows no other row dominates (<= everywhere, < somewhere)."""
    n = len(losses)
    return np.array([not any((losses[j] <= losses[i]).all() and (losses[j] < losses[i]).any()
                             for j in range(n) if j != i) for i in range(n)], dtype=bool)


def compare(search: Search, grid: pd.DataFrame) -> dict:
    """The search against the grid (the report's measured ok points with every objective):
    trials (with on_front and, where a grid exists, the hypervolume so far), grid (with
    grid_front), the comparison table, the grid's hypervolume and the reference point."""
    obj = search.objectives
    trials = search.trials.copy()
    grid = grid.dropna(subset=list(obj)) if set(obj) <= set(grid.columns) else grid.iloc[0:0]
    grid = grid.assign(grid_front=on_front(_losses(grid, obj)) if len(grid) else [])
    out = {"trials": trials, "grid": grid, "table": pd.DataFrame(), "grid_hv": None,
           "reference": None}
    if trials.empty:
        return out
    done = (trials["state"] == "COMPLETE").to_numpy()
    losses = _losses(trials, obj)
    trials["on_front"] = False
    trials.loc[done, "on_front"] = on_front(losses[done])
    if grid.empty:
        return out
    g = _losses(grid, obj)
    lo, hi = g.min(axis=0), g.max(axis=0)
    reference = hi + REF_MARGIN * np.where(hi > lo, hi - lo, np.abs(hi) + 1e-12)
    trials["hypervolume"] = [hypervolume(losses[: i + 1][done[: i + 1]], reference)
                             for i in range(len(trials))]
    grid_hv = hypervolume(g, reference)
    in_grid = int(trials.loc[done, "key"].isin(set(grid["key"])).sum())
    search_hv = float(trials["hypervolume"].iloc[-1])
    out["table"] = pd.DataFrame([
        {"what": "grid: the report's measured points", "points": len(grid),
         "on_front": int(grid["grid_front"].sum()), "hypervolume": grid_hv, "of_grid": 1.0},
        {"what": f"search {search.name}: {len(trials)} trials, {int(done.sum())} complete "
                 f"({in_grid} of them grid points)", "points": int(done.sum()),
         "on_front": int(trials["on_front"].sum()), "hypervolume": search_hv,
         "of_grid": search_hv / grid_hv if grid_hv else None}])
    out.update(grid_hv=grid_hv, reference=reference)
    return out
