"""Compile and measure points of the stack: `python deploy.py [-m] layer=value ...`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.stages.deploy import deploy  # heavy (torch, TVM): not needed to reject bad configs
    from dlas.sweep import run_point

    return run_point(cfg, deploy, sweep=sweep, raise_on_failure=sweep is None)


main = entry("deploy", run)

if __name__ == "__main__":
    main()
