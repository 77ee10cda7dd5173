"""The `autoschedule` code generator: MetaSchedule searches a schedule for every tunable task.

A build is the untuned one with a search in the middle: the primitive's legalization and
fusion, then MetaSchedule (tvm.s_tir.meta_schedule) over the fused PrimFuncs, each candidate
built here and timed on the target through the RPC key the final measurement uses (a board
tunes on itself), then the best schedules applied from the database, the default schedules
for whatever the search did not cover, and TVM's lowering.

The search space (`space`): DLAS's default schedule of the task (its tiles and whether each
stage runs parallel are `sample_perfect_tile` draws whose decisions are the heuristic's,
schedule_utils.sampled_split and sampled_parallel; how far LLVM may unroll is a
`sample_categorical`, sampled_unroll),
MetaSchedule's generic sketches (on a VNNI target these include the dot-product
tensorized ones), or both. The default's measured record seeds the evolutionary search,
whose mutators move its decisions.

Two kinds of function keep their default schedule and the row counts them:
- functions with data-dependent loops (the sparse primitives' CSR/BSR loops run to an
  extent read from `indptr`): MetaSchedule's search spaces need static loop extents;
- tasks under `min_task_share` of the model's time (each default schedule is timed once,
  the time kept in the ledger), that got no trials within the budget, or whose every
  candidate failed.

The tuning database is per target (`database_dir/<target digest>/`), shared by every model,
compression and primitive, since tasks are keyed by their PrimFunc's structure. A ledger
next to it records the per-task budget each task was tuned with, so a task already tuned
with at least the budget asked now is not tuned again: a re-run recomputes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir import meta_schedule as ms

from dlas.codegen import auto_format
from dlas.codegen.pipeline import (Build, RecordScheduleStats, back_passes,
                                   default_schedule_pass, front_passes, inference_passes,
                                   relax_pipeline)
from dlas.codegen.tasks import scheduled_names, select_tasks, tunable_tasks
from dlas.codegen.tuning import (LEDGER, Ledger, TuningProgress, default_schedule,
                                 improvement_stats, measure_defaults, open_database,
                                 quiet_metaschedule, target_digest, verify_best)
from dlas.codegen.tuning_builder import PooledBuilder, candidate_builder, exporter
from dlas.codegen.untuned import Untuned
from dlas.config import plain
from dlas.errors import DLASError
from dlas.primitives.base import LayerCounts, Primitive
from dlas.primitives.schedule_utils import extent, root_blocks
from dlas.store.locks import wait_for_lock

log = logging.getLogger(__name__)
# search spaces: DLAS's default schedule with its sampled tiles, MetaSchedule's own
# sketches (PostOrderApply with the target's rules), or both
SPACES = ("dlas", "generic", "union")


class AutoSchedule(Untuned):
    """Config: conf/codegen/autoschedule.yaml.

    trials: measured candidates over all tasks; trials_per_task: at most this many for one
    task; trials_per_iter: candidates per search round (lowered when the budget is spread
    thin, so that every task gets a round); database_dir: where the per-target databases
    live; builder_timeout_s / runner_timeout_s: limits for building / timing one candidate;
    number / repeat / min_repeat_ms: how one candidate is timed on the target;
    min_task_share: tasks with less than this share of the model's time (each task's
    default schedule timed once on the target; FLOPs where it did not run) keep their
    default schedule (reshapes, element-wise ops: trials go where the time goes);
    population_size / genetic_iters: the evolutionary search's size per round (TVM's
    defaults, 512 and 4, cost ~50 s of search per round on 2 cores);
    space: what the search explores (SPACES: "dlas" = the default schedule's sampled tiles,
    "generic" = MetaSchedule's sketches, "union" = both);
    check_rounds / check_top_k: after the search, each task's default and its check_top_k
    best searched schedules are timed side by side in check_rounds rounds (verify_best).
    The stats `build` returns add tuning_s, tasks, tuned/reused/untuned task counts, how
    many tasks the search improved over the default and by how much, and how many
    functions kept their default schedule and why.
    """

    def __init__(self, name: str = "autoschedule", trials: int = 200, trials_per_task: int = 64,
                 trials_per_iter: int = 16, database_dir: str = "outputs/artifacts/tuning",
                 builder_timeout_s: float = 60, runner_timeout_s: float = 60, number: int = 3,
                 repeat: int = 1, min_repeat_ms: int = 20, min_task_share: float = 0.01,
                 population_size: int = 128, genetic_iters: int = 2, seed: int = 0,
                 space: str = "union", check_rounds: int = 7, check_top_k: int = 3):
        super().__init__(name)
        if space not in SPACES:
            raise DLASError("codegen.space", space, SPACES, layer="codegen")
        self.space = space
        for what, value, low in (("trials", trials, 0), ("trials_per_task", trials_per_task, 1),
                                 ("trials_per_iter", trials_per_iter, 1), ("number", number, 1),
                                 ("repeat", repeat, 1), ("min_repeat_ms", min_repeat_ms, 0),
                                 ("check_rounds", check_rounds, 1),
                                 ("check_top_k", check_top_k, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DLASError(f"codegen.{what}", value, f"an integer >= {low}", layer="codegen")
        for what, value in (("builder_timeout_s", builder_timeout_s),
                            ("runner_timeout_s", runner_timeout_s)):
            if not isinstance(value, int | float) or value <= 0:
                raise DLASError(f"codegen.{what}", value, "> 0 seconds", layer="codegen")
        self.trials, self.trials_per_task, self.trials_per_iter = trials, trials_per_task, trials_per_iter
        self.database_dir = Path(database_dir)
        self.builder_timeout_s, self.runner_timeout_s = builder_timeout_s, runner_timeout_s
        self.evaluator = ms.runner.EvaluatorConfig(number=number, repeat=repeat,
                                                   min_repeat_ms=min_repeat_ms)
        if not 0 <= min_task_share < 1:
            raise DLASError("codegen.min_task_share", min_task_share, "a fraction in [0, 1)",
                            layer="codegen")
        self.min_task_share = float(min_task_share)
        self.population_size, self.genetic_iters = int(population_size), int(genetic_iters)
        self.seed = seed
        self.check_rounds, self.check_top_k = check_rounds, check_top_k

    # -- the build -----------------------------------------------------------------------------

    def build(self, mod: tvm.IRModule, primitive: Primitive, target: tvm.target.Target,
              hardware=None) -> Build:
        """Compile `mod`, tuning its tasks on `hardware` (default: this CPU over loopback RPC)."""
        from dlas.hardware.base import LocalCPU  # codegen must not import hardware at load time

        hardware = hardware if hardware is not None else LocalCPU(target=target)
        primitive, choices = auto_format.resolve(mod, primitive, target, hardware)
        target = tuning_target(target, hardware)
        counts = LayerCounts()
        rules = self.rules(primitive, target)
        fused = relax_pipeline(inference_passes() + front_passes(primitive, target, counts),
                               target)(mod)
        prescheduled = scheduled_names(fused)  # kernels a primitive writes ready-scheduled
        fused, kept = schedule_data_dependent(fused, rules, target)
        tasks = tunable_tasks(fused, target)

        db_dir = self.database_dir / target_digest(target)
        start = time.perf_counter()
        # one tuner per database at a time: a second process waits, then finds its tasks in
        # the ledger instead of tuning them again (and two tuners would disturb each other's timing)
        with wait_for_lock(db_dir.parent / f".{db_dir.name}.lock", f"tuning database {db_dir}"):
            # read once, under the lock: the search adds to it and the build applies from it
            # (opening registers the tensor intrinsics its and the checked winners' records name)
            searched = open_database(db_dir)
            tuning = self.tune(tasks, target, hardware, db_dir, rules, searched)
            checked = Ledger(db_dir / LEDGER).database(tasks)
        tuning["tuning_s"] = time.perf_counter() - start

        applied = RecordScheduledNames()
        record = RecordScheduleStats()
        # each task's side-by-side winner first; the search's best where there is none
        database = ms.database.OrderedUnionDatabase(checked, searched)
        with target:  # (the pass reads the current target when it is made)
            apply_db = relax.transform.MetaScheduleApplyDatabase()
        passes = ([apply_db, applied, default_schedule_pass(rules), record]
                  + self._require(primitive, target) + back_passes(target))
        with database:
            executable = tvm.compile(fused, target=target,
                                     relax_pipeline=relax_pipeline(passes, target))
        tuned_funcs = sorted(set(applied.names) - set(kept) - set(prescheduled))
        stats = {**record.stats, **counts.stats, **tuning,
                 "tuning_database": str(db_dir),
                 "tuned_funcs": len(tuned_funcs),
                 "default_schedule_funcs": record.stats["scheduled_funcs"] - len(tuned_funcs),
                 "data_dependent_funcs": len(kept),
                 "prescheduled_funcs": len(prescheduled),
                 "schedule_note": schedule_note(kept, prescheduled, tuning)}
        return auto_format.finish(Build(executable, stats, record.profile(counts)), choices)

    def task_budget(self, n_tasks: int) -> int:
        """Trials one task gets: an even share of the total, at most trials_per_task."""
        if n_tasks == 0 or self.trials == 0:
            return 0
        return min(self.trials_per_task, max(1, self.trials // n_tasks))

    def tune(self, tasks: list[ms.ExtractedTask], target, hardware, db_dir: Path,
             rules: list, database: ms.database.Database) -> dict:
        """Time the default schedules the ledger has no time for, pick the tasks worth
        trials, tune those that lack this budget, check each tuned task's winner side by side
        with its default schedule; the counts for the row.

        Each task's default schedule is measured once (its time kept in the ledger) and goes
        into the database as one more candidate (the seed the search mutates); the tasks
        with at least min_task_share of the model's default time are tuned (select_tasks).
        After the search, verify_best times the default and the best searched schedules in
        interleaved rounds and the ledger keeps the winner, which is what the build applies:
        a searched schedule replaces the default only when it is faster side by side. A task
        tuned before without that check (older databases), or checked with fewer rounds, gets
        it now. `default_won_tasks` / `improved_tasks` count the model's checked tasks.
        `database`: db_dir's search database (tuning.open_database), which the search adds
        to."""
        ledger = Ledger(db_dir / LEDGER)
        with contextlib.ExitStack() as stack:
            tools = []  # (builder, runner), set up the first time something is measured

            def measuring():
                if not tools:
                    tools.append(self._measuring(stack, hardware))
                return tools[0]

            untimed = [t for t in tasks if ledger.default_ms(t) is None] if self.trials else []
            if untimed:
                log.info("tuning: timing the default schedules of %d tasks (where the trials "
                         "go)", len(untimed))
                ledger.record_defaults(measure_defaults(untimed, rules, target, *measuring(),
                                                        database, hardware.runtime_device))
            selected, small = select_tasks(tasks, [ledger.default_ms(t) for t in tasks],
                                           self.min_task_share)
            budget = self.task_budget(len(selected))
            todo = ledger.lacking(selected, budget)
            unchecked = [t for t in ledger.unverified(selected, self.check_rounds)
                         if t not in todo]
            stats = {"tasks": len(selected), "small_tasks": len(small), "task_budget": budget,
                     "tuned_tasks": len(todo),
                     "reused_tasks": len(selected) - len(todo) if budget else 0,
                     "tuning_trials": 0, "tuning_failed_trials": 0, "check_s": 0.0}
            if not todo and not unchecked and selected and budget:
                log.info("tuning: all %d tasks already tuned with >= %d trials each in %s",
                         len(selected), budget, db_dir)
            if todo:
                stats.update(self._search(todo, budget, target, hardware, db_dir, rules,
                                          *measuring(), database))
                ledger.update(todo, budget)
            if todo or unchecked:
                start = time.perf_counter()
                ledger.record_verified(verify_best(todo + unchecked, database, rules, target,
                                                   *measuring(), hardware.runtime_device,
                                                   self.check_rounds, self.check_top_k))
                stats["check_s"] = time.perf_counter() - start
        return {**stats, **improvement_stats(ledger.checks(selected))}

    def _measuring(self, stack: contextlib.ExitStack, hardware) -> tuple:
        """(builder, runner) timing candidates on `hardware` through its tracker, open until
        `stack` closes."""
        hardware.check()  # a board that is not registered fails here, not in every trial
        host, port, _ = stack.enter_context(hardware.tracker())
        stack.enter_context(quiet_metaschedule())
        # one pool of build workers for the defaults, every search round and the check,
        # importing TVM while the runner's worker does
        builder = PooledBuilder(max_workers=len(os.sched_getaffinity(0)),
                                timeout_sec=self.builder_timeout_s,
                                f_build=candidate_builder(), f_export=exporter(hardware.cc))
        builder.start()
        stack.callback(builder.close)
        runner = ms.runner.RPCRunner(
            rpc_config=ms.runner.RPCConfig(
                tracker_host=host, tracker_port=port, tracker_key=hardware.key,
                session_timeout_sec=int(self.runner_timeout_s)),
            evaluator_config=self.evaluator, max_workers=1)
        return builder, runner

    def _search(self, todo: list[ms.ExtractedTask], budget: int, target, hardware,
                db_dir: Path, rules: list, builder, runner, database) -> dict:
        """MetaSchedule's evolutionary search over `todo`, seeded with the default schedules."""
        # equal rounds: a search round costs 10-20 s here whatever its size, so no short tail
        rounds = math.ceil(budget / self.trials_per_iter)
        per_iter = math.ceil(budget / rounds)
        log.info("tuning %d tasks on %s, %d trials each (%d in all), database %s",
                 len(todo), hardware.name, budget, budget * len(todo), db_dir)
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=self.population_size, genetic_num_iters=self.genetic_iters,
            init_min_unmeasured=min(50, self.population_size))
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            todo, work_dir=str(db_dir), seed=self.seed, strategy=strategy,
            space=design_space(self.space, rules, target),
            num_threads=getattr(hardware, "num_threads", None) or "physical")
        progress = TuningProgress([c.task_name for c in contexts], budget * len(todo))
        with ms.Profiler() as prof:  # (the defaults were measured and committed: the seeds)
            ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(db_dir),
                          max_trials_global=budget * len(todo), max_trials_per_task=budget,
                          num_trials_per_iter=per_iter, builder=builder, runner=runner,
                          database=database,
                          measure_callbacks=ms.MeasureCallback.create("default") + [progress],
                          task_scheduler="round-robin")
        log.debug("tuning profile: %s", prof.table())
        return {"tuning_trials": progress.trials, "tuning_failed_trials": progress.failed}

    def __repr__(self) -> str:
        return (f"AutoSchedule(trials={self.trials}, trials_per_task={self.trials_per_task}, "
                f"database_dir={str(self.database_dir)!r})")


# -- the search space ------------------------------------------------------------------------

def design_space(kind: str, rules: list, target: tvm.target.Target):
    """The space generator of `kind` (SPACES). DLAS's space is the task's default schedule,
    its trace replayed onto MetaSchedule's schedule: the sampled tiles are what the
    evolutionary search draws and mutates. In a union the postprocessors and mutators are
    the target's (as for the generic sketches alone)."""
    if kind == "generic":
        return "post-order-apply"

    def dlas_schedule(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        with target:
            default = default_schedule(sch.mod["main"], rules, target)
        if default is None:  # (alone, the function as it is: a task needs one space)
            return [] if kind == "union" else [sch]
        default.trace.apply_to_schedule(sch, remove_postproc=False)
        return [sch]

    if kind == "dlas":
        return ms.space_generator.ScheduleFn(dlas_schedule, sch_rules=[])
    return ms.space_generator.SpaceGeneratorUnion(
        [ms.space_generator.ScheduleFn(dlas_schedule, sch_rules=[], postprocs=[],
                                       mutator_probs={}),
         ms.space_generator.PostOrderApply()])


# -- targets and databases -------------------------------------------------------------------

def tuning_target(target: tvm.target.Target, hardware) -> tvm.target.Target:
    """MetaSchedule's CPU rules need the core count in the target (`num-cores`)."""
    if target.kind.name != "llvm" or "num-cores" in target.attrs:
        return target
    cores = getattr(hardware, "num_threads", None)
    if not cores:
        raise DLASError("hardware.target", str(target), "a target dict with num-cores",
                        layer="hardware", reason="MetaSchedule needs the board's core count "
                        "(e.g. {kind: llvm, ..., num-cores: 4})")
    config = {k: v for k, v in target.export().items() if k not in ("host", "keys", "tag")}
    host = target.host
    return tvm.target.Target({**plain(config), "num-cores": int(cores)}, host)


# -- which functions MetaSchedule gets -------------------------------------------------------

def has_data_dependent_loops(func: tirx.PrimFunc) -> bool:
    """True when a loop around any block (nested ones too) runs to a non-constant extent."""
    sch = s_tir.Schedule(func)
    blocks = root_blocks(sch)
    while blocks:
        block = blocks.pop()
        if any(extent(sch, loop) is None for loop in sch.get_loops(block)):
            return True
        blocks.extend(sch.get_child_blocks(block))
    return False


def schedule_data_dependent(mod: tvm.IRModule, rules: list, target: tvm.target.Target
                            ) -> tuple[tvm.IRModule, list[str]]:
    """Give functions with data-dependent loops their default schedule now (MetaSchedule
    cannot search them); returns the module and their names."""
    names = [gv.name_hint for gv, f in mod.functions_items()
             if isinstance(f, tirx.PrimFunc) and has_data_dependent_loops(f)]
    if not names:
        return mod, []
    sub = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint in names})
    with target:
        sub = default_schedule_pass(rules)(sub)
    updated = mod.clone()
    for gv, func in sub.functions_items():
        updated.update_func(gv, func)
    return updated, names


@tvm.transform.module_pass(opt_level=0, name="DLASRecordScheduledNames")
class RecordScheduledNames:
    """Identity pass noting which PrimFuncs carry a schedule at this point of the pipeline."""

    def __init__(self):
        self.names: list[str] = []

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        self.names = scheduled_names(mod)
        return mod


def schedule_note(kept: list[str], prescheduled: list[str], tuning: dict) -> str:
    """What the row says about functions that did not get a searched schedule."""
    notes = []
    if kept:
        notes.append(f"{len(kept)} function(s) with data-dependent (sparse) loops keep the "
                     "primitive's default schedule: MetaSchedule cannot search them")
    if prescheduled:
        notes.append(f"{len(prescheduled)} function(s) come scheduled from the primitive "
                     "(hand-written sparse kernels) and keep that schedule")
    if tuning.get("small_tasks"):
        notes.append(f"{tuning['small_tasks']} task(s) under min_task_share of the default "
                     "schedules' time keep the default schedule")
    if tuning.get("task_budget", 0) == 0 and tuning.get("tasks"):
        notes.append("trials=0: nothing tuned, database schedules only")
    return "; ".join(notes)
