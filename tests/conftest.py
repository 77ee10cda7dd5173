"""Shared fixtures: Hydra configs composed the way the entry points compose them."""
from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir

from dlas.cli import CONF_DIR


def pytest_configure(config):
    # Started in the background by a non-interactive shell (`pytest &`, nohup), pytest inherits
    # SIGINT ignored, and so would every process it starts (an ignored signal survives exec):
    # the Ctrl-C tests need it delivered as in a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    # Under `--dist loadfile` a worker takes the next file whole when it is free: files holding a
    # slow test go first, so the run does not end on one worker still busy with a long file.
    # The first file that starts from the session's default point (`seed_outputs`) leads, so
    # one worker makes the point while the other runs other files; the rest of those files
    # close the slow group, when the point is long made (test_deploy and test_report, next to
    # each other in collection order, had one worker wait on the other's lock).
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    seeded = list(dict.fromkeys(item.path for item in items
                                if "seed_outputs" in item.fixturenames))

    def rank(item) -> tuple[bool, int]:
        if item.path in seeded:
            return item.path not in slow, 0 if item.path == seeded[0] else 2
        return item.path not in slow, 1

    items.sort(key=rank)  # stable: the order within each group


@pytest.fixture
def make_cfg(tmp_path):
    """compose(config, overrides) with outputs under a per-test folder and W&B off."""

    def make(config_name: str = "deploy", overrides: list[str] = ()):
        base = [f"paths.root={tmp_path}", "logger.mode=disabled"]
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=base + list(overrides))

    return make


@pytest.fixture(autouse=True)
def declared_metrics(monkeypatch):
    """Every row a test records carries only metrics dlas/store/schema.py declares."""
    from dlas.store.results import ResultsStore
    from dlas.store.schema import undeclared

    record = ResultsStore.record

    def checked(self, key, **kwargs):
        unknown = undeclared(kwargs.get("metrics") or {})
        assert not unknown, f"metrics not declared in dlas/store/schema.py: {unknown}"
        return record(self, key, **kwargs)

    monkeypatch.setattr(ResultsStore, "record", checked)


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (e.g. a board tracker that is not there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def digits():
    """The embedded digits data set, set up (small batches keep tests fast)."""
    from dlas.data import DigitsDataModule

    datamodule = DigitsDataModule(batch_size=32)
    datamodule.setup("fit")
    return datamodule


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    """A machine with no W&B account: no key, no mode, an empty home and netrc."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))


@pytest.fixture(scope="session")
def default_point_artifacts(tmp_path_factory) -> Path:
    """The stored stages of the default point at debug=fast (digits, resnet18 trained, not
    compressed, compiled with direct/untuned for the local CPU), made once per run (for all
    workers) by a real deploy.run: the tests that start from them copy them (`seed_outputs`)
    instead of training and compiling resnet18 again each."""
    import deploy

    # once for the run: pytest-xdist's workers share the folder above their own temp folders
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "default_point"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("deploy", [f"paths.root={root}", "logger.mode=disabled", "debug=fast"])
    with FileLock(shared / "default_point.lock"):
        if not (root / "done").exists():
            row = deploy.run(cfg)
            assert row["status"] == "ok", row["reason"]
            (root / "done").touch()
    return Path(cfg.paths.artifacts)


@pytest.fixture(scope="session")
def seed_outputs(default_point_artifacts):
    """seed_outputs(root): an outputs folder whose artifacts are the default point's (a copy:
    tests may damage theirs), and no results: every point is still measured."""

    def seed(root: Path) -> Path:
        shutil.copytree(default_point_artifacts, Path(root) / "artifacts", dirs_exist_ok=True)
        return Path(root)

    return seed
