"""The entry points as a user runs them: bad input gives one line and a non-zero exit."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args, tmp_path, script="deploy.py", timeout=120):
    env = {**os.environ, "DLAS_OUTPUTS": str(tmp_path)}
    return subprocess.run([sys.executable, script, *args, "logger.mode=disabled"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, expected", [
    (["model=foo"], "model='foo': no such model config (valid: densenet161, efficientnet_b0, "
                    "mnasnet1_0, mobilenetv2, resnet18, resnet50, vgg16)"),
    (["-m", "model=resnet18,foo"], "model='foo'"),
    (["primitive=winograd"], "valid: direct"),
    (["modle=resnet18"], "modle"),
    (["compression=unstructured", "compression.ratio=1.5"], "compression.ratio=1.5"),
    (["compression=unstructured", "compression.ratio=abc"], "compression.ratio='abc'"),
    (["primitive.format=coo"], "primitive.format='coo'"),
    (["compression=int8", "compression.steps.0.calibration_batches=0"], "calibration_batches=0"),
    (["compression=channel", "compression.steps=[channel,prune_all]"],
     "compression step='prune_all'"),
    (["hardware.tracker_host=127.0.0.1", "hardware.tracker_port=1"], "127.0.0.1:1"),
])
def test_bad_input_gives_one_line(args, expected, tmp_path):
    out = run(args, tmp_path)
    assert out.returncode != 0
    err = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in out.stderr + out.stdout
    assert len(err) == 1 and err[0].startswith("error: "), out.stderr
    assert expected in err[0]
