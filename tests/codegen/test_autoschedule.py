"""MetaSchedule auto-scheduling: a tiny budget on a tiny model, tuned through loopback RPC.

One tuning run (module fixture) is shared: the first build tunes, the second with the same
budget must reuse the database and tune nothing, a larger budget tunes again.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from dlas.codegen import AutoSchedule, import_model
from dlas.codegen import front_passes, inference_passes, relax_pipeline
from dlas.codegen.autoschedule import has_data_dependent_loops, tuning_target
from dlas.codegen.tasks import select_tasks, tunable_tasks
from dlas.codegen.tuning import LEDGER, Ledger, target_digest
from dlas.errors import DLASError
from dlas.hardware import LocalCPU
from dlas.primitives.direct import Direct
from dlas.primitives.gemm import Gemm

pytestmark = pytest.mark.slow

TRIALS = 4
SHARE = 0.15  # of the default schedules' time: the convs (~25 % and ~65 %), not the pool (~6 %)


def tiny_net(sparse: bool = False) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    if sparse:
        with torch.no_grad():
            w = net[2].weight
            w[torch.rand_like(w) < 0.8] = 0
    return net


def run(executable, x: torch.Tensor) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x.numpy())).numpy()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Two builds with the same budget and database: (codegen, stats of each, outputs)."""
    db = tmp_path_factory.mktemp("tuning")
    hardware = LocalCPU()
    x = torch.randn(1, 3, 16, 16)
    net = tiny_net()
    mod = import_model(net, x)
    ledger = db / target_digest(tuning_target(hardware.target, hardware)) / LEDGER
    built, ledgers = [], []
    for _ in range(2):
        codegen = AutoSchedule(trials=TRIALS, trials_per_iter=2, database_dir=str(db),
                               check_rounds=3, min_task_share=SHARE)
        built.append(codegen.build(mod, Direct("direct"), hardware.target, hardware=hardware))
        ledgers.append(json.loads(ledger.read_text()))
    out1, out2 = run(built[0].executable, x), run(built[1].executable, x)
    ref = net(x).detach().numpy()
    return dict(db=db, hardware=hardware, mod=mod, x=x, net=net, ref=ref, ledgers=ledgers,
                first=built[0].stats, second=built[1].stats, out1=out1, out2=out2)


def test_tuned_build_matches_pytorch(tuned):
    np.testing.assert_allclose(tuned["out1"], tuned["ref"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tuned["out2"], tuned["ref"], rtol=1e-4, atol=1e-5)


def test_first_build_tunes_every_conv_task_through_rpc(tuned):
    stats = tuned["first"]
    # the two conv2d tasks take the time; reshape/mean/matmul are under min_task_share
    assert stats["tasks"] == 2 and stats["small_tasks"] >= 1
    assert stats["tuned_tasks"] == 2 and stats["reused_tasks"] == 0
    assert stats["task_budget"] == TRIALS // 2
    assert stats["tuning_trials"] == TRIALS
    assert stats["tuning_failed_trials"] < TRIALS  # measured on the target, not all failures
    assert stats["tuned_funcs"] >= 1 and stats["unscheduled_funcs"] == 0
    assert stats["tuning_s"] > 0
    db = tuned["db"] / target_digest(tuning_target(tuned["hardware"].target, tuned["hardware"]))
    records = (db / "database_tuning_record.json").read_text().splitlines()
    assert len(records) >= TRIALS - stats["tuning_failed_trials"]
    ledger = json.loads((db / LEDGER).read_text())
    assert sorted(e.get("budget", 0) for e in ledger.values()) == (
        [0] * stats["small_tasks"] + [TRIALS // 2] * 2)
    # every task's default was timed once, the small ones too: that is how they were found small
    assert len(ledger) == stats["tasks"] + stats["small_tasks"]
    assert all(e["default_ms"] > 0 for e in ledger.values())


def test_same_budget_again_reuses_the_database(tuned):
    stats = tuned["second"]
    assert stats["tuned_tasks"] == 0 and stats["reused_tasks"] == 2
    assert stats["tuning_trials"] == 0
    assert stats["tuned_funcs"] == tuned["first"]["tuned_funcs"]  # schedules come from the DB
    assert stats["tuning_s"] < tuned["first"]["tuning_s"]
    assert tuned["ledgers"][1] == tuned["ledgers"][0]  # nothing timed again, nothing moved


def test_default_schedules_are_candidates(tuned):
    """Every tuned task's default schedule was measured and committed, then checked side by
    side against the best searched ones: the applied one is never slower than untuned as
    measured (with 2 trials a task, it usually wins). A reuse reports the same checks."""
    stats = tuned["first"]
    assert stats["checked_tasks"] == stats["tuned_tasks"] == 2 and stats["check_s"] > 0
    # each checked default either stayed or was beaten (by that much)
    assert stats["default_won_tasks"] + stats["improved_tasks"] == stats["checked_tasks"]
    assert (stats["improved_speedup_max"] >= stats["improved_speedup_geomean"] > 1) == (
        stats["improved_tasks"] > 0)
    again = tuned["second"]
    assert again["check_s"] == 0 and all(again[k] == stats[k] for k in (
        "checked_tasks", "default_won_tasks", "improved_tasks", "improved_speedup_max"))
    db = tuned["db"] / target_digest(tuning_target(tuned["hardware"].target, tuned["hardware"]))
    checks = [e["verified"] for e in json.loads((db / LEDGER).read_text()).values()
              if "verified" in e]
    assert sorted(c["winner"] for c in checks) == sorted(
        ["default"] * stats["default_won_tasks"] + ["searched"] * stats["improved_tasks"])
    assert all(c["default_ms"] > 0 and c["budget"] == TRIALS // 2 for c in checks)
    traces = (db / "database_tuning_record.json").read_text()
    assert traces.count("dlas.schedule_rule") >= stats["tuned_tasks"]


def test_trials_go_where_the_time_goes():
    """A task's share is its default's time where it was timed, FLOPs where it was not: a
    matmul with 0.1 % of the FLOPs that takes half the time gets trials, a conv that was
    timed fast does not, whatever its FLOPs."""
    target = LocalCPU().target
    tasks = tunable_tasks(relax_pipeline(inference_passes() + front_passes(Direct(), target),
                                         target)(import_model(tiny_net(),
                                                              torch.randn(1, 3, 16, 16))), target)
    conv1, conv2 = [t for t in tasks if "conv2d" in t.task_name]
    (matmul,) = [t for t in tasks if "matmul" in t.task_name]
    by_flops, _ = select_tasks(tasks, [None] * len(tasks), 0.01)
    assert set(by_flops) == {conv1, conv2}
    times = {conv1: 0.001, matmul: 1.0}  # the rest ran in ~1 ms, or not at all (conv2)
    keep, small = select_tasks(tasks, [times.get(t, 1.0 if t is not conv2 else None)
                                       for t in tasks], 0.2)
    assert matmul in keep and conv1 in small and conv2 in keep  # (conv2: by its FLOPs)
    assert sorted(map(id, keep + small)) == sorted(map(id, tasks))


def test_a_larger_budget_would_tune_again(tuned):
    """The ledger asks for the tasks again once the per-task budget grows."""
    hardware = tuned["hardware"]
    target = tuning_target(hardware.target, hardware)
    ledger = Ledger(tuned["db"] / target_digest(target) / LEDGER)
    every = tunable_tasks(relax_pipeline(
        inference_passes() + front_passes(Direct("direct"), target), target)(tuned["mod"]), target)
    tasks, _ = select_tasks(every, [ledger.default_ms(t) for t in every], SHARE)
    assert ledger.lacking(tasks, AutoSchedule(trials=TRIALS).task_budget(len(tasks))) == []
    bigger = AutoSchedule(trials=2 * TRIALS).task_budget(len(tasks))
    assert bigger == TRIALS and len(ledger.lacking(tasks, bigger)) == 2


def test_sparse_loops_keep_the_default_schedule_and_say_so(tuned):
    net = tiny_net(sparse=True)
    mod = import_model(net, tuned["x"])
    # no trials: what is checked is that they never reach MetaSchedule (it needs static loops)
    codegen = AutoSchedule(trials=0, database_dir=str(tuned["db"]), check_rounds=3)
    # gemm's CSR rows run to indptr[o + 1] (direct's CSR pads rows to a static length)
    executable, stats = codegen.build(mod, Gemm("gemm", format="csr"), tuned["hardware"].target,
                               hardware=tuned["hardware"])
    assert stats["sparse_layers"] == 1 and stats["data_dependent_funcs"] == 1
    assert "data-dependent" in stats["schedule_note"]
    assert stats["unscheduled_funcs"] == 0
    np.testing.assert_allclose(run(executable, tuned["x"]), net(tuned["x"]).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_zero_trials_applies_the_database_only(tuned):
    codegen = AutoSchedule(trials=0, database_dir=str(tuned["db"]), check_rounds=3)
    executable, stats = codegen.build(tuned["mod"], Direct("direct"), tuned["hardware"].target,
                               hardware=tuned["hardware"])
    assert stats["tuned_tasks"] == 0 and stats["tuning_trials"] == 0
    assert stats["tuned_funcs"] >= 1  # the records of the earlier runs
    np.testing.assert_allclose(run(executable, tuned["x"]), tuned["ref"], rtol=1e-4, atol=1e-5)


def test_data_dependent_loops_are_detected():
    from tvm import te

    indptr = te.placeholder((5,), "int32", name="indptr")
    x = te.placeholder((16,), name="x")

    def row(i):
        k = te.reduce_axis((0, indptr[i + 1] - indptr[i]), name="k")
        return te.sum(x[indptr[i] + k], axis=k)

    sparse = te.create_prim_func([indptr, x, te.compute((4,), row)])
    k = te.reduce_axis((0, 16), name="k")
    dense = te.create_prim_func([x, te.compute((1,), lambda i: te.sum(x[k], axis=k))])
    assert has_data_dependent_loops(sparse) and not has_data_dependent_loops(dense)


@pytest.mark.parametrize("kwargs, what", [
    ({"trials": -1}, "codegen.trials"), ({"trials_per_task": 0}, "codegen.trials_per_task"),
    ({"trials": 2.5}, "codegen.trials"), ({"min_task_share": 1.5}, "codegen.min_task_share"),
    ({"runner_timeout_s": 0}, "codegen.runner_timeout_s"), ({"space": "ansor"}, "codegen.space")])
def test_bad_settings_name_the_value(kwargs, what):
    with pytest.raises(DLASError, match=what):
        AutoSchedule(**kwargs)


def test_board_target_without_core_count_is_refused():
    board = type("Board", (), {"num_threads": None})()
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    with pytest.raises(DLASError, match="num-cores"):
        tuning_target(target, board)
    cores = tuning_target(target, type("Board", (), {"num_threads": 4})())
    assert int(cores.attrs["num-cores"]) == 4
