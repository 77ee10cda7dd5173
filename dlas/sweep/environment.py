"""What a row records about the machine and software it was measured with."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(target=None) -> dict:
    import torch
    import tvm

    return {"tvm": tvm.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "host": socket.gethostname(),
            "cpu": cpu_model(), "git_commit": git_commit(),
            "target": str(target) if target is not None else None,
            # the cluster job that measured it (SLURM array task), for its logs
            "slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID")),
            "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID")}
