"""The machinery of a MetaSchedule run for `autoschedule`: where the tuning database lives and
which budget each task has had (the ledger), each task's default schedule as a candidate, the
builder's build and export functions, and progress output."""
from __future__ import annotations

import hashlib
import inspect
import json
import linecache
import logging
import math
import os
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
from dlas.store.artifacts import code_version

log = logging.getLogger("dlas.codegen.autoschedule")  # one logger for the whole tuning story
LEDGER = "dlas_budget.json"


# -- the database and its ledger -------------------------------------------------------------

def target_digest(target: tvm.target.Target) -> str:
    """A directory name for a target: its kind and a hash of its full description, TVM's
    version and DLAS's schedules (a changed default schedule starts a new database: its old
    records and ledger would keep the old defaults and never tune again)."""
    text = (json.dumps(plain(target.export()), sort_keys=True, default=str) + tvm.__version__
            + code_version("primitives", "codegen"))
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
            old = self.entries.get(key, {}).get("budget", 0)
            self.entries[key] = {"task": task.task_name, "budget": max(old, budget)}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)



# -- tuning runs -----------------------------------------------------------------------------

def default_schedule(func: tirx.PrimFunc, rules: list, target: tvm.target.Target):
    """The schedule the untuned build gives `func` (the first rule that applies), or None."""
    for rule in rules:
        space = rule.apply(func, target, False)
        if space is not None:
            return space if isinstance(space, s_tir.Schedule) else space[0]
    return None


def measure_defaults(tasks: list[ms.ExtractedTask], rules: list, target, builder, runner,
                     database, device: str = "cpu") -> dict[ms.ExtractedTask, float]:
    """Build and time each task's default schedule with the tuning builder and runner and
    commit it to the database as a tuning record; task -> its mean seconds."""
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
        measured[task] = sum(secs) / len(secs)
    log.info("tuning: default schedules of %d/%d tasks measured as candidates",
             len(measured), len(tasks))
    return measured


def best_secs(database, task: ms.ExtractedTask) -> float:
    """Mean seconds of the task's best record in the database (inf if none)."""
    if not database.has_workload(task.dispatched[0]):
        return math.inf
    top = database.get_top_k(database.commit_workload(task.dispatched[0]), 1)
    if not top or not top[0].run_secs:
        return math.inf
    return sum(float(t) for t in top[0].run_secs) / len(top[0].run_secs)


def improvement_stats(database, defaults: dict[ms.ExtractedTask, float]) -> dict:
    """How the search did against the measured defaults (task -> mean seconds): tasks where
    the default stayed best, tasks it improved, and the speedup of the best record over the
    default per improved task (geometric mean and max; 1.0 when none improved)."""
    speedups = [secs / best_secs(database, task) for task, secs in defaults.items()]
    improved = [s for s in speedups if s > 1]
    geomean = math.exp(sum(map(math.log, improved)) / len(improved)) if improved else 1.0
    return {"default_won_tasks": len(speedups) - len(improved),
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


def build_candidate(mod, target, _params):
    """The builder's build function: TVM's default without importing every tensor intrinsic
    (`tvm.s_tir.tensor_intrin` takes 33 s to import here, in each fresh builder process;
    DLAS's search spaces do not tensorize)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def exporter(cc: str | None):
    """The builder's export function: a shared library, cross-compiled when `cc` is set.
    A closure, so the builder's worker processes get it by value (no dlas import there)."""

    def export(mod) -> str:
        import os as _os
        import tempfile as _tempfile

        from tvm.support import cc as _cc

        path = _os.path.join(_tempfile.mkdtemp(), "tuning_candidate.so")
        mod.export_library(path, fcompile=_cc.cross_compiler(cc) if cc else None)
        return path

    return export


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
