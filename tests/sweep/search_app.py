"""A toy Hydra app the search tests drive with DLAS's Optuna sweeper: (x, y) -> a row whose
metrics are the objectives; y=bad is an unsupported point, y=boom raises."""
import hydra
from hydra.core.config_store import ConfigStore

from dlas.sweep.objectives import returned

ConfigStore.instance().store(name="toy", node={
    "x": 0.0, "y": "a", "objectives": {"loss": "minimize", "gain": "maximize"}})
SHIFT = {"a": 0.0, "b": 1.0}


@hydra.main(config_path=None, config_name="toy", version_base="1.3")
def main(cfg):
    if cfg.y == "boom":
        raise RuntimeError("the toy job crashed")
    key = f"{cfg.x}-{cfg.y}"
    if cfg.y not in SHIFT:
        row = {"key": key, "status": "unsupported", "layer": "model", "reason": "no such y"}
    else:
        row = {"key": key, "status": "ok",
               "metrics": {"loss": (cfg.x - 2) ** 2 + SHIFT[cfg.y], "gain": cfg.x}}
    return returned(row, cfg.objectives)


if __name__ == "__main__":
    main()
