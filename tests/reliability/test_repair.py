"""A real point whose stored outputs were tampered with: force=true recompiles a truncated
library (it used to keep and measure the old one), and planted pickles in the trained and
compressed models are refused by path and recomputed, never run."""
from __future__ import annotations

import logging

import pytest

import deploy
from dlas.stages.keys import compile_key, compress_key, train_key
from dlas.store import ArtifactStore
from dlas.store.artifacts import file_digest, read_json
from tests.reliability.payload import plant


@pytest.mark.slow
def test_force_repairs_a_truncated_library_and_planted_pickles_never_run(make_cfg, tmp_path,
                                                                          caplog, seed_outputs):
    seed_outputs(tmp_path)  # the point's stages, stored by a real run
    cfg = make_cfg(overrides=["debug=fast", "measure.repeat=2"])
    store = ArtifactStore(cfg.paths.artifacts)
    trained = store.path("trained", train_key(cfg)) / "model.pt"
    compressed = store.path("compressed", compress_key(cfg)) / "weights.pt"
    lib = store.path("compiled", compile_key(cfg)) / "model.so"
    assert trained.is_file() and compressed.is_file() and lib.is_file()
    lib.write_bytes(lib.read_bytes()[:4096])  # a copy cut short
    marker = tmp_path / "pwned"
    plant(trained, marker)
    plant(compressed, marker)

    with caplog.at_level(logging.WARNING):
        row = deploy.run(make_cfg(overrides=["debug=fast", "measure.repeat=2", "force=true"]))
    assert row["status"] == "ok", row["reason"]
    assert not marker.exists()
    m = row["metrics"]
    assert not m["compile_reused"] and not m["compress_reused"] and not m["train_reused"]
    assert str(trained) in caplog.text and str(compressed) in caplog.text
    assert file_digest(lib) == read_json(lib.parent / "metrics.json")["lib_sha256"]
    assert m["measure_retries"] == 0
