"""Bad settings, damaged files and Ctrl-C as a user meets them: one line naming the bad value,
a non-zero exit, no traceback, no results row, and nothing expensive done first."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import deploy
from dlas.errors import ConfigError
from dlas.store.results import ResultsStore
from tests.refusal import error_line, run_script

ROOT = Path(__file__).resolve().parents[2]


def one_line(out) -> str:
    return error_line(out.stdout, out.stderr)


@pytest.mark.parametrize("overrides, expected", [
    (["seed=abc"], "seed='abc' (valid: an integer >= 0)"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1: DLAS budgets training in epochs"),
    (["compression=channel", "compression.ratio=0.99"],
     "compression.ratio=0.99: layer conv1 (64 channels) would keep 0 channels"),
    (["force=bogus"], "force='bogus'"),
    (["remeasure=-1"], "remeasure=-1 (valid: false, true (3 rounds) or a number of rounds"),
])
def test_a_bad_setting_is_refused_before_training_and_is_no_row(overrides, expected, make_cfg):
    cfg = make_cfg(overrides=["debug=fast", *overrides])
    with pytest.raises(ConfigError) as err:
        deploy.run(cfg)
    assert str(err.value).startswith(expected)
    assert not (Path(cfg.paths.artifacts) / "trained").exists()  # nothing was trained
    assert ResultsStore(cfg.paths.results).rows() == []  # a config error is not a point


def test_an_outputs_path_that_cannot_be_a_folder(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    out = run_script([f"paths.root={afile}/outputs"], tmp_path / "outputs")
    assert out.returncode == 2
    assert "Not a directory" in one_line(out) and "paths.root" in one_line(out)


def test_a_damaged_results_store_is_named_and_kept(tmp_path):
    store = tmp_path / "results.sqlite"
    store.write_bytes(os.urandom(4096))
    before = store.read_bytes()
    for script in ("deploy.py", "report.py"):
        out = run_script([f"paths.results={store}"], tmp_path / "outputs", script)
        assert out.returncode == 1
        line = one_line(out)
        assert f"paths.results='{store}'" in line and "not a usable results store" in line
    assert store.read_bytes() == before  # never lost: nothing is written over it
    assert not (tmp_path / "outputs" / "artifacts").exists()  # refused before any training


def test_a_config_file_that_is_not_yaml(tmp_path):
    (tmp_path / "conf" / "local").mkdir(parents=True)  # as conf/local/default.yaml would be
    (tmp_path / "conf" / "local" / "default.yaml").write_text("dataset:\n  data_dir: [open\n")
    out = run_script(["--config-dir", str(tmp_path / "conf")], tmp_path / "outputs")
    assert out.returncode == 2
    assert one_line(out).startswith(f"error: {tmp_path}/conf/local/default.yaml, line 3: "
                                    "not valid YAML")


def test_ctrl_c_stops_with_one_line_and_records_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "deploy.py", "debug=fast", "logger.mode=disabled"],
                            cwd=ROOT, env={**os.environ, "DLAS_OUTPUTS": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # Ctrl-C while the model trains (Hydra logs to stdout)
        if "training resnet18" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("error: interrupted: finished points are kept")
    assert ResultsStore(tmp_path / "results.sqlite").rows() == []
