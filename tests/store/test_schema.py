"""The metric schema: docs/metrics.md is generated from it, and the names the report reads
are declared (rows written by the tests are checked by tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

from dlas.store.schema import KINDS, METRICS, NUMBERS, markdown, undeclared

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_schema():
    assert (ROOT / "docs" / "metrics.md").read_text() == markdown(), \
        "run: python -m dlas.store.schema > docs/metrics.md"


def test_every_metric_has_a_kind_and_a_meaning():
    for name, metric in METRICS.items():
        assert metric.kind in KINDS and metric.what, name
    assert "latency_ms_median" in NUMBERS and "number_format" not in NUMBERS


def test_undeclared_names_are_listed():
    assert undeclared({"latency_ms_median": 1.0, "latency_ms": 2.0, "acc": 0.5}) == [
        "acc", "latency_ms"]


def test_the_report_reads_declared_metrics():
    from dlas.report.table import ALWAYS

    assert undeclared(dict.fromkeys(ALWAYS)) == []
