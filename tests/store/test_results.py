import sqlite3
import threading

import pytest

from dlas.store.results import ResultsStore

LAYERS = dict(dataset="digits", model="resnet18", compression="none", primitive="direct-dense",
              codegen="untuned", hardware="local")


def test_record_upserts_one_row_per_key(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.record("k", status="failed", layers=LAYERS, layer="hardware", reason="boom")
    store.record("k", status="ok", layers=LAYERS, metrics={"latency_ms_median": 1.5}, sweep="s1")
    rows = store.rows()
    assert len(rows) == 1
    assert rows[0]["status"] == "ok" and rows[0]["metrics"]["latency_ms_median"] == 1.5
    assert store.rows(sweep="s1", model="resnet18")[0]["key"] == "k"
    assert store.rows(sweep="other") == []
    store.mark_seen("k", "s2")
    # the point belongs to both sweeps; its row still says which sweep measured it
    assert [r["key"] for r in store.rows(sweep="s1")] == [r["key"] for r in store.rows(sweep="s2")]
    assert store.get("k")["sweep"] == "s1"
    assert set(store.sweeps()) == {"s1", "s2"}


def test_wal_mode_and_bad_input(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    mode = sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with pytest.raises(ValueError):
        store.record("k", status="great", layers=LAYERS)
    with pytest.raises(ValueError):
        store.rows(metrics="x")


def test_concurrent_writers(tmp_path):
    path = tmp_path / "r.sqlite"

    def write(i):
        ResultsStore(path).record(f"k{i}", status="ok", layers=LAYERS)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ResultsStore(path).rows()) == 16
