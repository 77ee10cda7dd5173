"""Synthetic results stores (tests/report/synthetic.py), built once per test session."""
from __future__ import annotations

import pytest

from tests.report.synthetic import grid_store


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """The full synthetic grid: its results.sqlite path."""
    path = tmp_path_factory.mktemp("grid") / "results.sqlite"
    grid_store(path)
    return path
