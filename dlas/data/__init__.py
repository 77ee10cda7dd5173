"""LightningDataModules of the dataset layer."""
from __future__ import annotations

from dlas.data.base import ClassificationDataModule
from dlas.data.digits import DigitsDataModule

__all__ = ["ClassificationDataModule", "DigitsDataModule"]
