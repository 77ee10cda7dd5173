"""Compile and measure points of the stack: `python deploy.py [-m] layer=value ...`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.stages.deploy import deploy, plan  # heavy (torch, TVM): not needed to reject bad configs
    from dlas.sweep import run_point

    return run_point(cfg, deploy, plan=plan, sweep=sweep, raise_on_failure=sweep is None)


def check(cfg):
    """What a sweep checks of each of its points before the first one runs."""
    from dlas.stages.deploy import plan
    from dlas.stages.force import Force

    Force.of(cfg.force, "compile")
    plan(cfg)


main = entry("deploy", run, check)

if __name__ == "__main__":
    main()
