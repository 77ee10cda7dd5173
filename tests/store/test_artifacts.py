import os

from omegaconf import OmegaConf

from dlas.store.artifacts import ArtifactStore, code_version, config_key


def test_config_key_is_stable_and_order_independent():
    a = OmegaConf.create({"x": 1, "y": {"z": [1, 2]}})
    b = OmegaConf.create({"y": {"z": [1, 2]}, "x": 1})
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key(OmegaConf.create({"x": 2, "y": {"z": [1, 2]}}))


def test_write_is_atomic_and_keeps_config(tmp_path):
    store = ArtifactStore(tmp_path)
    assert not store.exists("trained", "k1")
    try:
        with store.write("trained", "k1", {"a": 1}) as tmp:
            (tmp / "model.pt").write_text("half")
            raise RuntimeError("killed mid-way")
    except RuntimeError:
        pass
    assert not store.exists("trained", "k1")
    assert not [p for p in (tmp_path / "trained").iterdir()]  # temporary dir cleaned up
    with store.write("trained", "k1", {"a": 1}) as tmp:
        (tmp / "model.pt").write_text("whole")
    assert store.exists("trained", "k1")
    assert (store.path("trained", "k1") / "model.pt").read_text() == "whole"
    assert OmegaConf.load(store.path("trained", "k1") / "config.yaml").a == 1


def test_a_new_output_replaces_the_stored_one(tmp_path):
    """force=...: the recomputed output is published, not the old one kept (it was, before)."""
    store = ArtifactStore(tmp_path)
    with store.write("compiled", "k", {}, run="a") as tmp:
        (tmp / "f").write_text("first")
    assert store.made_by("compiled", "k") == "a"
    with store.write("compiled", "k", {}, run="b") as tmp:
        (tmp / "f").write_text("second")
    assert (store.path("compiled", "k") / "f").read_text() == "second"
    assert store.made_by("compiled", "k") == "b"
    assert os.listdir(tmp_path / "compiled") == ["k"]  # nothing old or temporary left


def test_code_version_follows_the_sources(tmp_path):
    (tmp_path / "codegen").mkdir()
    (tmp_path / "codegen" / "a.py").write_text("x = 1\n")
    before = code_version("codegen", root=tmp_path)
    assert code_version("codegen", root=tmp_path) == before
    (tmp_path / "codegen" / "a.py").write_text("x = 2\n")
    code_version.cache_clear()  # (cached per process: sources do not change while DLAS runs)
    assert code_version("codegen", root=tmp_path) != before
    assert code_version("codegen", "primitives") != code_version("codegen")
