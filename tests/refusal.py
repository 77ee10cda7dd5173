"""What every refusal prints: one `error: ...` line on stderr and no traceback anywhere; and
a script run as a user runs it, to see that."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(args: list[str], outputs: Path, script: str = "deploy.py",
               timeout: float = 180) -> subprocess.CompletedProcess:
    """`python <script> <args>` from the repository root, outputs under `outputs`, no W&B."""
    env = {**os.environ, "DLAS_OUTPUTS": str(outputs)}
    return subprocess.run([sys.executable, script, *args, "logger.mode=disabled"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def error_line(stdout: str, stderr: str) -> str:
    """The refusal's one line (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stdout + stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]
