"""Running points: the task wrapper, W&B mirroring, sweep summaries."""
from dlas.sweep.callbacks import SweepSummary
from dlas.sweep.task import PointFailed, run_point

__all__ = ["PointFailed", "SweepSummary", "run_point"]
