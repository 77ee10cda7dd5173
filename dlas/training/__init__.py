"""Training of the model layer's nets: a LightningModule and fit/evaluate helpers."""
from __future__ import annotations

from dlas.training.batchnorm import recalibrate_batchnorm
from dlas.training.fit import evaluate, fit, set_threads
from dlas.training.module import Classifier

__all__ = ["Classifier", "evaluate", "fit", "recalibrate_batchnorm", "set_threads"]
