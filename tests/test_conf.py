"""Every config composes, and every object config in a layer group builds."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dlas.cli import CONF_DIR, group_options

EXPERIMENTS = group_options("experiment")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_configs_compose(make_cfg, experiment):
    cfg = make_cfg("deploy", [f"experiment={experiment}"])
    assert cfg.dataset.name and cfg.model.name and cfg.trainer.max_epochs


@pytest.mark.parametrize("config", ["train", "compress", "deploy"])
@pytest.mark.parametrize("debug", group_options("debug"))
def test_primary_configs_compose_with_debug(make_cfg, config, debug):
    cfg = make_cfg(config, [f"debug={debug}"])
    assert cfg.logger.mode == "disabled"


@pytest.mark.parametrize("group", ["compression", "primitive", "codegen", "hardware", "measure"])
def test_every_option_of_a_layer_group_builds(make_cfg, group):
    for option in group_options(group):
        cfg = make_cfg("deploy", [f"{group}={option}"])
        obj = instantiate(cfg[group])
        assert type(obj).__name__ == cfg[group]._target_.rsplit(".", 1)[1], option
        if "name" in cfg[group]:  # the name results rows and reports show
            assert obj.name == cfg[group].name, option


def test_every_group_has_options():
    for group in ("dataset", "model", "compression", "primitive", "codegen", "hardware"):
        assert group_options(group), group
    assert (Path(CONF_DIR) / "local" / "README.md").is_file()


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    folders = []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for _ in range(2):
            cfg = compose("deploy", [f"paths.root={tmp_path}"], return_hydra_config=True)
            folders.append((cfg.hydra.run.dir, cfg.hydra.sweep.dir))
    assert folders[0][0] != folders[1][0] and folders[0][1] != folders[1][1]
    assert folders[0][1].startswith(f"{tmp_path}/runs/multirun_")
