"""Records: stage artifacts on disk and the results store."""
from dlas.store.artifacts import ArtifactStore, config_key
from dlas.store.results import LAYERS, ResultsStore

__all__ = ["ArtifactStore", "LAYERS", "ResultsStore", "config_key"]
