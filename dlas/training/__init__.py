"""Training of the model layer's nets: a LightningModule and fit/evaluate helpers."""
from __future__ import annotations

import logging
import warnings

import pytorch_lightning  # noqa: F401  (sets its loggers up on import; quieted below)

# Lightning's start-up chatter (GPU available, tips, seeds) adds nothing to a DLAS log, and
# Lightning 2.6 on torch 2.14 warns about its own use of a deprecated pytree API every fit.
for _name in ("pytorch_lightning", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")

from dlas.training.batchnorm import recalibrate_batchnorm
from dlas.training.fit import evaluate, fit, set_threads
from dlas.training.module import Classifier

__all__ = ["Classifier", "evaluate", "fit", "recalibrate_batchnorm", "set_threads"]
