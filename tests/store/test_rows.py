"""Row files: jobs on other hosts hand rows over as files; the head's store takes them in,
once per point, and a row whose job died before the database write is not lost."""
import json
import os
import time

import pytest

from dlas.errors import DLASError
from dlas.store.results import ResultsStore, network_filesystem

LAYERS = dict(dataset="digits", model="resnet18", compression="none", primitive="direct-dense",
              codegen="untuned", hardware="local")


def test_a_rows_only_job_never_opens_sqlite_and_the_head_takes_its_rows_in_once(tmp_path):
    db, rows = tmp_path / "head" / "results.sqlite", tmp_path / "shared" / "rows"
    job = ResultsStore(db, rows=rows, rows_only=True)
    job.record("k1", status="ok", layers=LAYERS, sweep="s1", metrics={"latency_ms_median": 2.0},
               profile=[{"call": 0, "latency_ms_median": 1.0}])
    job.record("k2", status="failed", layers=LAYERS, sweep="s1", layer="hardware", reason="gone")
    job.mark_seen("k1", "s2")  # another sweep reused k1
    assert not db.exists()  # nothing of SQLite where the job ran
    assert job.get("k1")["metrics"] == {"latency_ms_median": 2.0}  # a job's reuse check
    # the same row as the database gives it; the profile comes apart, as there
    assert "profile" not in job.get("k1") and job.profile("k1")[0]["latency_ms_median"] == 1.0
    # a writer still at work (or killed mid-write) leaves only a hidden temporary file
    (rows / ".k3.json.tmp123").write_text('{"key": "k3", "sta')

    head = ResultsStore(db, rows=rows)
    assert head.ingest() == 2
    assert {r["key"]: r["status"] for r in head.rows()} == {"k1": "ok", "k2": "failed"}
    assert head.get("k1")["metrics"] == {"latency_ms_median": 2.0}
    assert head.get("k1").keys() == job.get("k1").keys() and head.profile("k1") == job.profile("k1")
    assert [r["key"] for r in head.rows(sweep="s2")] == ["k1"]
    assert head.ingest() == 0  # nothing new: nothing taken in, no second row
    job.record("k2", status="ok", layers=LAYERS, sweep="s3")  # the point measured again
    assert head.ingest() == 1
    assert len(head.rows()) == 2 and head.get("k2")["status"] == "ok"


def test_a_row_whose_job_died_before_the_database_write_is_taken_in(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite", rows=tmp_path / "rows")
    store.record("k", status="ok", layers=LAYERS, metrics={"epochs": 1})
    assert json.loads((tmp_path / "rows" / "k.json").read_text())["metrics"] == {"epochs": 1}
    row = store.get("k") | {"metrics": {"epochs": 2}, "finished": time.time() + 1}
    store.files.write(row)  # the file written, then the job killed: no database write
    assert store.get("k")["metrics"] == {"epochs": 1}
    assert store.ingest() == 1 and store.get("k")["metrics"] == {"epochs": 2}
    # an older file (e.g. copied back from a node) never replaces a newer row
    store.files.write(row | {"metrics": {"epochs": 0}, "finished": 1.0})
    assert store.ingest() == 0 and store.get("k")["metrics"] == {"epochs": 2}


def test_the_store_is_refused_on_a_network_filesystem(tmp_path, monkeypatch):
    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              f"server:/export {tmp_path}/nfs nfs4 rw,relatime 0 0\n"
              f"/dev/sdb1 {tmp_path}/nfs/local ext4 rw 0 0\n")
    assert network_filesystem(tmp_path / "nfs" / "outputs", mounts) == f"nfs4 at {tmp_path}/nfs"
    assert network_filesystem(tmp_path / "nfs" / "local" / "x", mounts) is None  # deeper mount
    assert network_filesystem(tmp_path / "elsewhere", mounts) is None
    import dlas.store.results as results

    monkeypatch.setattr(results, "network_filesystem",
                        lambda path: network_filesystem(path, mounts))
    with pytest.raises(DLASError, match="network filesystem .nfs4 at .*paths.rows"):
        ResultsStore(tmp_path / "nfs" / "outputs" / "results.sqlite")
    assert not (tmp_path / "nfs" / "outputs" / "results.sqlite").exists()
    with pytest.raises(DLASError, match="paths.rows_only"):
        ResultsStore(tmp_path / "r.sqlite", rows_only=True)


def test_point_locks_live_beside_the_row_files(tmp_path):
    store = ResultsStore(tmp_path / "head.sqlite", rows=tmp_path / "rows", rows_only=True)
    with store.lock("k"):
        assert os.path.exists(tmp_path / "rows" / ".locks" / "k.lock")
