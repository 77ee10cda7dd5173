"""Train a model on a dataset: `python train.py model=mobilenetv2 trainer.max_epochs=5`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.config import build
    from dlas.stages.train import trained_model

    datamodule = build(cfg, "dataset")
    _, metrics = trained_model(cfg, datamodule, force=cfg.force)
    print(f"trained {cfg.model.name} on {cfg.dataset.name}: val acc {metrics['val_acc']:.4f}"
          f"{' (reused)' if metrics['train_reused'] else ''}", flush=True)
    return metrics


main = entry("train", run)

if __name__ == "__main__":
    main()
