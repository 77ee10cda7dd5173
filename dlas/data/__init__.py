"""LightningDataModules of the dataset layer."""
from __future__ import annotations

from dlas.data.base import ClassificationDataModule
from dlas.data.cifar10 import CIFAR10DataModule
from dlas.data.digits import DigitsDataModule
from dlas.data.imagenet import ImageNetDataModule

__all__ = ["CIFAR10DataModule", "ClassificationDataModule", "DigitsDataModule", "ImageNetDataModule"]
