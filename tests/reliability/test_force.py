"""force=<stage>: what it recomputes, that the recomputed output replaces the stored one,
and that one run (a sweep) recomputes a shared output once."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dlas.errors import ConfigError
from dlas.stages.force import Force
from dlas.stages.produce import produce


def test_force_names_the_first_stage_recomputed():
    assert not any(Force.of(False, "compile").recomputes(s)
                   for s in ("train", "compress", "compile", "measure"))
    deploy_true = Force.of(True, "compile")
    assert [deploy_true.recomputes(s) for s in ("train", "compress", "compile", "measure")] == \
        [False, False, True, True]
    assert Force.of("measure", "compile").recomputes("measure")
    assert not Force.of("measure", "compile").recomputes("compile")
    assert all(Force.of("all", "compile").recomputes(s) for s in ("train", "compress"))
    assert Force.of(True, "train").first == "train" and Force.of("true", "compress").first == "compress"


@pytest.mark.parametrize("value, entry", [("bogus", "compile"), ("compile", "train"), (3, "compile")])
def test_a_bad_force_value_names_the_valid_ones(value, entry):
    with pytest.raises(ConfigError, match="valid: false, true, all, train"):
        Force.of(value, entry)


def test_force_replaces_the_output_and_a_sweep_recomputes_it_once(tmp_path):
    cfg = OmegaConf.create({"paths": {"artifacts": str(tmp_path)}})
    made = []

    def run(force):
        def compute():
            made.append(force.run)
            return f"output {len(made)}"

        return produce(cfg, "train", "k", force=force, compute=compute,
                       load=lambda folder: (folder / "f").read_text(),
                       save=lambda output, folder: (folder / "f").write_text(output))

    assert run(Force.of(False, "train")) == ("output 1", False)
    assert run(Force.of(False, "train")) == ("output 1", True)
    sweep = Force.of("train", "compile", sweep="sweep-1")
    assert run(sweep) == ("output 2", False)  # replaced, not the old one kept
    assert run(sweep) == ("output 2", True)   # the next point of the same sweep reuses it
    assert run(Force.of("train", "compile", sweep="sweep-2")) == ("output 3", False)
    assert run(Force.of("compile", "compile", sweep="sweep-3")) == ("output 3", True)
