"""Every sweep experiment expands to the jobs and distinct points its header claims."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlas.cli import CONF_DIR, group_options
from dlas.stages.keys import point_key
from dlas.sweep.progress import sweep_jobs

CLAIM = re.compile(r"^# (\d+) jobs, (\d+) distinct points", re.M)
SWEEPS = [e for e in group_options("experiment")
          if "sweeper:" in (Path(CONF_DIR) / "experiment" / f"{e}.yaml").read_text()]


def claimed(experiment: str) -> tuple[int, int]:
    match = CLAIM.search((Path(CONF_DIR) / "experiment" / f"{experiment}.yaml").read_text())
    assert match, f"{experiment}.yaml must state '# N jobs, M distinct points'"
    return int(match[1]), int(match[2])


@pytest.fixture
def composer(tmp_path):
    base = [f"paths.root={tmp_path}", "logger.mode=disabled"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield lambda overrides=(): compose("deploy", base + list(overrides),
                                           return_hydra_config=True)


def test_the_study_configs_are_sweeps():
    assert {"smoke", "study_local", "study"} <= set(SWEEPS)


@pytest.mark.parametrize("experiment", SWEEPS)
def test_sweep_expands_to_the_claimed_jobs(composer, experiment):
    cfg = composer([f"experiment={experiment}"])
    assert cfg.hydra.mode.name == "MULTIRUN"  # `python deploy.py experiment=...` sweeps, no -m
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    jobs = sweep_jobs(params)
    assert len(jobs) == claimed(experiment)[0]
    # every swept config group option exists (Hydra would only say so when it reaches it)
    for key, value in {tuple(o.split("=", 1)) for job in jobs for o in job}:
        if (Path(CONF_DIR) / key).is_dir():
            assert value in group_options(key), f"{experiment}: no {key} config {value!r}"


@pytest.mark.parametrize("experiment", ["smoke", "study_local", "gpu_check"])
def test_local_sweeps_have_the_claimed_distinct_points(composer, experiment):
    """Each job composed as Hydra composes it; jobs whose point key is equal are one point."""
    jobs = sweep_jobs(OmegaConf.to_container(composer([f"experiment={experiment}"])
                                             .hydra.sweeper.params))
    keys = {point_key(composer([f"experiment={experiment}", *job])) for job in jobs}
    assert len(keys) == claimed(experiment)[1]


def test_study_axes_resolve_to_the_claimed_distinct_points(composer):
    """The study's conditional axes (weight format, board device) resolved by composing each
    combination of the axes they depend on; the 10080 jobs are too many to compose each."""
    jobs = [dict(o.split("=", 1) for o in job) for job in sweep_jobs(OmegaConf.to_container(
        composer(["experiment=study"]).hydra.sweeper.params))]
    resolved = {}
    for axes, settings in [(("compression", "grid.format"), ["primitive.format"]),
                           (("hardware", "grid.device"), ["hardware.name", "hardware.device"])]:
        for combo in {tuple(job[a] for a in axes) for job in jobs}:
            cfg = composer(["experiment=study", *(f"{a}={v}" for a, v in zip(axes, combo))])
            resolved[axes, combo] = tuple(OmegaConf.select(cfg, s) for s in settings)
    assert resolved[("hardware", "grid.device"), ("xavier", "gpu")] == ("xavier-gpu", "gpu")
    assert resolved[("hardware", "grid.device"), ("local", "gpu")] == ("local", "cpu")
    assert resolved[("compression", "grid.format"), ("int8", "csr")] == ("dense",)
    points = {(job["dataset"], job["model"], job["compression"], job["primitive"], job["codegen"],
               resolved[("compression", "grid.format"), (job["compression"], job["grid.format"])],
               resolved[("hardware", "grid.device"), (job["hardware"], job["grid.device"])])
              for job in jobs}
    assert len(points) == claimed("study")[1]


def test_command_line_replaces_an_axis(composer):
    params = OmegaConf.to_container(composer(["experiment=study_local"]).hydra.sweeper.params)
    jobs = sweep_jobs(params, ["model=resnet18", "codegen=untuned", "seed=1"])
    assert len(jobs) == 48 // 4 and all("seed=1" in job for job in jobs)
    assert {j[0] for j in jobs} == {"model=resnet18"}  # the axis keeps its place
