"""Train a model on a dataset: `python train.py model=mobilenetv2 trainer.max_epochs=5`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.stages.train import trained_model

    datamodule, force = check(cfg, sweep)
    _, metrics = trained_model(cfg, datamodule, force=force)
    print(f"trained {cfg.model.name} on {cfg.dataset.name}: val acc {metrics['val_acc']:.4f}"
          f"{' (reused)' if metrics['train_reused'] else ''}", flush=True)
    return metrics


def check(cfg, sweep=None):
    from dlas.config import make, check_settings
    from dlas.stages.force import Force

    force = Force.of(cfg.force, "train", sweep)
    check_settings(cfg)
    make(cfg, "model", weights=None)
    return make(cfg, "dataset"), force


main = entry("train", run, check)

if __name__ == "__main__":
    main()
