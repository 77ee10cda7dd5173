"""Compile and measure points of the stack: `python deploy.py [-m] layer=value ...`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.stages.deploy import deploy, plan  # heavy (torch, TVM): not needed to reject bad configs
    from dlas.sweep import run_point
    from dlas.sweep.remeasure import remeasure, rounds_of

    if sweep is None:  # (a sweep re-times all its points first, interleaved: RemeasurePoints)
        remeasure([cfg], rounds_of(cfg.remeasure))
    return run_point(cfg, deploy, plan=plan, sweep=sweep, raise_on_failure=sweep is None)


def check(cfg):
    """What a sweep checks of each of its points before the first one runs."""
    from dlas.stages.deploy import plan
    from dlas.stages.force import Force
    from dlas.sweep.objectives import directions
    from dlas.sweep.remeasure import rounds_of

    if cfg.get("objectives"):
        directions(cfg.objectives)

    Force.of(cfg.force, "compile")
    rounds_of(cfg.remeasure)
    plan(cfg)


def objective_values(cfg, row):
    """A multirun job's return: the objectives' values, for any sweeper plugin."""
    from dlas.sweep.objectives import returned

    return returned(row, cfg.get("objectives"))


main = entry("deploy", run, check, returns=objective_values)

if __name__ == "__main__":
    main()
