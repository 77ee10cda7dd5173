"""Compress (and fine-tune) a trained model: `python compress.py compression.ratio=0.9`."""
from dlas.cli import entry


def run(cfg, sweep=None):
    from dlas.stages.compress import compressed_model

    datamodule, force = check(cfg, sweep)
    _, m = compressed_model(cfg, datamodule, force=force)
    print(f"compressed {cfg.model.name} with {cfg.compression.name}: "
          f"acc {m['accuracy_trained']:.4f} -> {m['accuracy_compressed']:.4f}, "
          f"sparsity {m['weight_sparsity']:.3f}, {m['size_bytes'] / 2**20:.2f} MiB, "
          f"{m['macs'] / 1e6:.1f} MMACs{' (reused)' if m['compress_reused'] else ''}", flush=True)
    return m


def check(cfg, sweep=None):
    from dlas.config import check_settings, make
    from dlas.stages.compress import check as check_compression
    from dlas.stages.force import Force

    force = Force.of(cfg.force, "compress", sweep)
    check_settings(cfg)
    datamodule = make(cfg, "dataset")
    check_compression(cfg, datamodule.input_shape)
    return datamodule, force


main = entry("compress", run, check)

if __name__ == "__main__":
    main()
