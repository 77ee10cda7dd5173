"""The machinery of a MetaSchedule run for `autoschedule`: where the tuning database lives and
which budget each task has had (the ledger), each task's default schedule as a candidate, and
progress output (the builder: tuning_builder.py)."""
from __future__ import annotations

import hashlib
import inspect
import json
import linecache
import logging
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from dlas.config import plain
from dlas.primitives.int8_intrin import fix_stock_vnni, register_all
from dlas.store.artifacts import code_version

log = logging.getLogger("dlas.codegen.autoschedule")  # one logger for the whole tuning story
LEDGER = "dlas_budget.json"
CHECKED = "checked"  # next to the ledger: each task's side-by-side winner (Ledger.database)
TIE = 0.02  # a searched schedule must be this much faster than the default, side by side


# -- the database and its ledger -------------------------------------------------------------

# What a tuning record depends on besides TVM: the primitives' computes and schedules and the
# codegen modules that pick and apply the default schedules (not the tuning machinery: a
# change there keeps the database).
SCHEDULE_SOURCES = ("primitives", "codegen/schedules.py", "codegen/gpu.py", "codegen/untuned.py",
                    "codegen/pipeline.py")


def target_digest(target: tvm.target.Target) -> str:
    """A directory name for a target: its kind and a hash of its full description, TVM's
    version and DLAS's schedules (a changed default schedule starts a new database: its old
    records and ledger would keep the old defaults and never tune again)."""
    text = (json.dumps(plain(target.export()), sort_keys=True, default=str) + tvm.__version__
            + code_version(*SCHEDULE_SOURCES))
    return f"{target.kind.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def task_hash(task: ms.ExtractedTask) -> str:
    return str(tvm_ffi.structural_hash(task.dispatched[0]))


class Ledger:
    """task hash -> the largest per-task budget it has been tuned with, in a JSON file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def budget(self, task: ms.ExtractedTask) -> int:
        return int(self.entries.get(task_hash(task), {}).get("budget", 0))

    def lacking(self, tasks: list[ms.ExtractedTask], budget: int) -> list[ms.ExtractedTask]:
        """The tasks not yet tuned with at least `budget` trials each."""
        return [t for t in tasks if budget and self.budget(t) < budget]

    def update(self, tasks: list[ms.ExtractedTask], budget: int) -> None:
        for task in tasks:
            key = task_hash(task)
            old = self.entries.get(key, {})
            self.entries[key] = {**old, "task": task.task_name,
                                 "budget": max(old.get("budget", 0), budget)}
        self._save()

    def default_ms(self, task: ms.ExtractedTask) -> float | None:
        """The task's default schedule as first timed for this database (record_defaults)."""
        value = self.entries.get(task_hash(task), {}).get("default_ms")
        return float(value) if value is not None else None

    def record_defaults(self, times: dict[str, tuple[str, float]]) -> None:
        """Keep each task's default time (task hash -> (name, ms)): measured once, so the
        tasks chosen for trials stay the same from one build to the next."""
        for key, (name, ms_) in times.items():
            self.entries.setdefault(key, {"task": name})["default_ms"] = ms_
        self._save()

    def verified(self, task: ms.ExtractedTask) -> dict | None:
        """The side-by-side check (verify_best) of the task's current budget, if done."""
        entry = self.entries.get(task_hash(task), {})
        check = entry.get("verified")
        return check if check and check.get("budget") == entry.get("budget") else None

    def checks(self, tasks: list[ms.ExtractedTask]) -> list[dict]:
        """The side-by-side checks of those of `tasks` that have one."""
        return [c for c in map(self.verified, tasks) if c is not None]

    def unverified(self, tasks: list[ms.ExtractedTask], rounds: int = 1
                   ) -> list[ms.ExtractedTask]:
        """Tasks tuned (a budget in the ledger) whose winner was not checked side by side
        with at least `rounds` rounds."""
        return [t for t in tasks if self.budget(t)
                and (self.verified(t) or {}).get("rounds", 0) < rounds]

    def record_verified(self, checks: dict[str, tuple[dict, ms.database.TuningRecord]]
                        ) -> None:
        """Keep each task's check and its winning record (in a database of its own next to
        the ledger, replaced when the task is checked again)."""
        for key, (check, record) in checks.items():
            folder = self.path.parent / CHECKED / key
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            database = ms.database.JSONDatabase(work_dir=str(folder))
            database.commit_tuning_record(ms.database.TuningRecord(
                record.trace, database.commit_workload(record.workload.mod), record.run_secs,
                record.target, record.args_info))
            entry = self.entries.setdefault(key, {"task": check["task"], "budget": 0})
            entry["verified"] = {**check, "budget": entry["budget"]}
        self._save()

    def database(self, tasks: list[ms.ExtractedTask]) -> ms.database.MemoryDatabase:
        """The checked winner of each task that has one, as the only record of its workload."""
        database = ms.database.MemoryDatabase()
        for task in tasks:
            folder = self.path.parent / CHECKED / task_hash(task)
            if self.verified(task) is None or not folder.is_dir():
                continue
            for record in ms.database.JSONDatabase(work_dir=str(folder)).get_all_tuning_records():
                database.commit_tuning_record(ms.database.TuningRecord(
                    record.trace, database.commit_workload(task.dispatched[0]),
                    record.run_secs, record.target, record.args_info))
        return database

    def _save(self) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def open_database(db_dir: Path) -> ms.database.JSONDatabase:
    """The tuning database of `db_dir`. Its records may name any tensor intrinsic a search
    used (DLAS's, TVM's VNNI one): all are registered first, or loading the records fails."""
    register_all()
    import_tensor_intrinsics()
    fix_stock_vnni()
    db_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(db_dir))


# -- tuning runs -----------------------------------------------------------------------------

def default_schedule(func: tirx.PrimFunc, rules: list, target: tvm.target.Target):
    """The schedule the untuned build gives `func` (the first rule that applies), or None,
    as a search space (tunable: with the decisions the untuned build leaves fixed)."""
    for rule in rules:
        space = rule.apply(func, target, True)
        if space is not None:
            return space if isinstance(space, s_tir.Schedule) else space[0]
    return None


def measure_defaults(tasks: list[ms.ExtractedTask], rules: list, target, builder, runner,
                     database, device: str = "cpu") -> dict[str, tuple[str, float]]:
    """Build and time each task's default schedule with the tuning builder and runner and
    commit it to the database as a tuning record (the search's seed). Returns task hash ->
    (task name, milliseconds) of those that ran."""
    scheduled = []
    for task in tasks:
        with target:
            sch = default_schedule(task.dispatched[0]["main"], rules, target)
        if sch is not None:
            scheduled.append((task, sch))
        else:
            log.debug("tuning: no default schedule for %s", task.task_name)
    if not scheduled:
        return {}
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, sch in scheduled])
    try:
        measured = _commit_defaults(scheduled, built, target, runner, database, device)
    finally:
        remove_artifacts(built)
    log.info("tuning: default schedules of %d/%d tasks measured as candidates", len(measured),
             len(tasks))
    return measured


def _commit_defaults(scheduled, built, target, runner, database, device: str
                     ) -> dict[str, tuple[str, float]]:
    inputs, kept = [], []
    for (task, sch), result in zip(scheduled, built):
        if result.error_msg is not None:
            log.debug("tuning: default schedule of %s did not build: %s", task.task_name,
                      result.error_msg[:300])
        else:
            args = ms.arg_info.ArgInfo.from_prim_func(task.dispatched[0]["main"])
            inputs.append(ms.runner.RunnerInput(result.artifact_path, device, args))
            kept.append((task, sch, args))
    measured = {}
    for (task, sch, args), future in zip(kept, runner.run(inputs)):
        result = future.result()
        if result.error_msg is not None or not result.run_secs:
            log.debug("tuning: default schedule of %s did not run: %s", task.task_name,
                      (result.error_msg or "")[-600:])
            continue
        secs = [float(t) for t in result.run_secs]
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, secs,
                                                               target, args))
        measured[task_hash(task)] = (task.task_name, sum(secs) / len(secs) * 1e3)
    return measured


def remove_artifacts(built: list[ms.builder.BuilderResult]) -> None:
    """The builder's exported libraries (a temporary folder each) once they were timed."""
    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)


def verify_best(tasks: list[ms.ExtractedTask], database, rules: list, target, builder, runner,
                device: str = "cpu", rounds: int = 7, top_k: int = 3) -> dict[str, tuple]:
    """Time each task's default schedule and its `top_k` best searched records side by side,
    in `rounds` interleaved rounds, and pick the winner.

    The search times each candidate once, whenever its turn comes: on a machine whose speed
    drifts, a candidate timed in a fast moment beats a default timed in a slow one. Here a
    task's candidates are timed one after another, each round in the reverse order of the
    last, and each keeps its fastest round (load and drift only add time). A searched
    schedule replaces the default only when it is more than TIE faster. Returns task hash
    -> (the check, for the Ledger; the winner as a tuning record)."""
    jobs = []  # (task, workload, [(kind, scheduled module, trace)], its arguments)
    for task in tasks:
        func = task.dispatched[0]
        if not database.has_workload(func):
            continue
        workload = database.commit_workload(func)
        with target:
            default = default_schedule(func["main"], rules, target)
        candidates = [("default", default.mod, default.trace)] if default is not None else []
        for record in database.get_top_k(workload, top_k + 1):
            sch = s_tir.Schedule(func)
            try:
                record.trace.apply_to_schedule(sch, remove_postproc=False)
            except Exception as err:  # noqa: BLE001 - a record that no longer replays
                log.debug("tuning: a record of %s does not replay: %s", task.task_name, err)
                continue
            if default is not None and tvm_ffi.structural_equal(sch.mod, default.mod):
                continue  # (the default's own record)
            if sum(kind == "searched" for kind, _, _ in candidates) < top_k:
                candidates.append(("searched", sch.mod, record.trace))
        if candidates:
            jobs.append((task, workload, candidates,
                         ms.arg_info.ArgInfo.from_prim_func(func["main"])))
    flat = [(j, c) for j, job in enumerate(jobs) for c in range(len(job[2]))]
    built = builder.build([ms.builder.BuilderInput(jobs[j][2][c][1], target) for j, c in flat])
    times: dict[tuple[int, int], list[float]] = {}
    try:
        runnable = [(j, c, ms.runner.RunnerInput(result.artifact_path, device, jobs[j][3]))
                    for (j, c), result in zip(flat, built) if result.error_msg is None]
        for r in range(rounds):
            order = runnable if r % 2 == 0 else runnable[::-1]
            futures = runner.run([inp for _, _, inp in order])
            for (j, c, _), future in zip(order, futures):
                result = future.result()
                if result.error_msg is None and result.run_secs:
                    secs = [float(t) for t in result.run_secs]
                    times.setdefault((j, c), []).append(sum(secs) / len(secs))
    finally:
        remove_artifacts(built)
    checks = {}
    for j, (task, workload, candidates, args) in enumerate(jobs):
        secs = {c: min(times[(j, c)]) for c in range(len(candidates)) if (j, c) in times}
        if not secs:
            log.debug("tuning: no candidate of %s ran in the check", task.task_name)
            continue
        searched = [c for c in secs if candidates[c][0] == "searched"]
        best = min(searched, key=secs.get) if searched else None
        default = 0 if candidates[0][0] == "default" and 0 in secs else None
        if default is None or (best is not None and secs[best] < (1 - TIE) * secs[default]):
            winner = best
        else:
            winner = default
        record = ms.database.TuningRecord(candidates[winner][2], workload, [secs[winner]],
                                          target, args)
        checks[task_hash(task)] = ({
            "task": task.task_name, "winner": candidates[winner][0], "rounds": rounds,
            "default_ms": secs[default] * 1e3 if default is not None else None,
            "searched_ms": secs[best] * 1e3 if best is not None else None,
            "speedup": secs[default] / secs[winner] if default is not None else None},
            record)
    log.info("tuning: checked %d tasks side by side (%d rounds): a searched schedule won %d",
             len(checks), rounds, sum(c["winner"] == "searched" for c, _ in checks.values()))
    return checks


def improvement_stats(checks: list[dict]) -> dict:
    """How the search did against the default schedules, from the side-by-side checks of a
    model's tasks: tasks where the default stayed, tasks a searched schedule won, and its
    speedup over the default per won task (geometric mean and max; 1.0 when none)."""
    improved = [c["speedup"] for c in checks
                if c["winner"] == "searched" and c["speedup"] is not None]
    geomean = math.exp(sum(map(math.log, improved)) / len(improved)) if improved else 1.0
    return {"checked_tasks": len(checks),
            "default_won_tasks": sum(c["winner"] == "default" for c in checks),
            "improved_tasks": len(improved),
            "improved_speedup_geomean": round(geomean, 4),
            "improved_speedup_max": round(max(improved, default=1.0), 4)}


def import_tensor_intrinsics() -> None:
    """Import `tvm.s_tir.tensor_intrin` (MetaSchedule's TuneContext does on first use) in
    seconds instead of 30-60 s: each of its ~250 `T.prim_func`s calls `inspect.stack()`,
    which looks up the module of every frame by scanning all of `sys.modules` (thousands
    with torch loaded). The parser reads only the frames and the source line of each, so
    they are given without the search."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        frame, frames = sys._getframe(1), []
        while frame is not None:
            code = frame.f_code
            line = linecache.getline(code.co_filename, frame.f_lineno)
            frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno,
                                            code.co_name, [line] if line else None,
                                            0 if line else None))
            frame = frame.f_back
        return frames

    original, inspect.stack = inspect.stack, stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401, PLC0415 - registers every intrinsic
    finally:
        inspect.stack = original


@contextmanager
def quiet_metaschedule():
    """MetaSchedule logs every round's task table at INFO; DLAS prints its own progress."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@derived_object
class TuningProgress(ms.measure_callback.PyMeasureCallback):
    """After each measured batch: trials done of the budget, the task, its best time so far."""

    def __init__(self, task_names: list[str], total: int):
        self.task_names, self.total = task_names, total
        self.trials = self.failed = 0
        self.best: dict[int, float] = {}
        self.start = time.perf_counter()

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        self.trials += len(measure_candidates)
        for built, ran in zip(builder_results, runner_results):
            if built.error_msg is not None or ran.error_msg is not None or not ran.run_secs:
                self.failed += 1
                continue
            secs = sum(float(s) for s in ran.run_secs) / len(ran.run_secs)
            self.best[task_id] = min(self.best.get(task_id, math.inf), secs)
        best = self.best.get(task_id)
        log.info("tuning: %d/%d trials | task %d/%d %s best %s | %d failed | %.0f s",
                 self.trials, self.total, task_id + 1, len(self.task_names),
                 self.task_names[task_id], f"{best * 1e3:.4f} ms" if best else "-",
                 self.failed, time.perf_counter() - self.start)
