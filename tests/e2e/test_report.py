"""report.py on a real (tiny) sweep: deploy.py measures one point, report.py reports it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dlas.store import ResultsStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, seed_outputs):
    """A results store with one real point, measured by a one-point sweep with its profile
    (its stages stored by the session's default point)."""
    root = seed_outputs(tmp_path_factory.mktemp("outputs"))
    proc = subprocess.run([sys.executable, "deploy.py", "-m", "debug=fast", "measure.repeat=2",
                           "measure.profile=true", "measure.profile_repeat=2"],
                          cwd=ROOT, env={**os.environ, "DLAS_OUTPUTS": str(root)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def report(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env |= {"DLAS_OUTPUTS": str(root), "HOME": str(root), "NETRC": str(root / ".netrc"),
            # no W&B account in this HOME, but matplotlib's font cache of the real one
            "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR",
                                           str(Path.home() / ".cache" / "matplotlib"))}
    return subprocess.run([sys.executable, "report.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_report_of_a_real_sweep(outputs):
    proc = report(outputs, "report.sweep=latest", "report.where=hardware=local,model=resnet18")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = outputs / "report"
    assert f"report: {out / 'report.html'} (1 points: 1 ok, 0 unsupported, 0 failed)" in proc.stdout
    assert proc.stdout.count("[not enough data]") == 4  # one point decides nothing
    row = ResultsStore(outputs / "results.sqlite").rows()[0]
    points = pd.read_csv(out / "points.csv")
    assert points.loc[0, "latency_ms"] == pytest.approx(row["metrics"]["latency_ms_median"])
    assert points.loc[0, "size_bytes"] == row["metrics"]["size_bytes"]
    page = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3  # pareto, correlations, status
    assert "Not drawn: no compressed point has an uncompressed twin" in page
    # the per-layer profile: resnet18's 20 convs, each with its kernel time, printed and stored
    assert "per-layer profile of 1 points" in proc.stdout and 'id="profile"' in page
    calls = pd.read_csv(out / "profile.csv")
    convs = calls[calls["layer"].str.startswith("conv")]
    assert len(convs) == 20 and (convs["ms"] > 0).all() and (convs["format"] == "dense").all()
    assert convs["macs"].sum() == pytest.approx(row["metrics"]["macs"], rel=0.05)
    assert calls["share"].sum() == pytest.approx(1.0)
    # W&B with no account: an offline run of the sweep's group, for `wandb sync`
    runs = list((outputs / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and "W&B summary run:" in proc.stdout


def test_bad_filter_is_one_line(outputs):
    proc = report(outputs, "report.where=model=vgg16", "logger.mode=disabled")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: report.where model='vgg16': no such value in the "
                                   "results store (valid: resnet18)")
