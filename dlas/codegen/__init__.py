"""The codegen layer: torch.export -> Relax, DLAS's build pipelines, default schedules."""
from dlas.codegen.autoschedule import AutoSchedule
from dlas.codegen.frontend import import_model
from dlas.codegen.pipeline import (RecordScheduleStats, back_passes, front_passes,
                                   inference_passes, relax_pipeline, schedule_stats)
from dlas.codegen.schedules import generic_rules
from dlas.codegen.untuned import Untuned

__all__ = ["AutoSchedule", "RecordScheduleStats", "Untuned", "back_passes", "front_passes", "generic_rules",
           "import_model", "inference_passes", "relax_pipeline", "schedule_stats"]
