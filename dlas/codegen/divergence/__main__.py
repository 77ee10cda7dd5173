"""`python -m dlas.codegen.divergence [--samples N] layer=value ...`: the divergence report of
one point, with deploy.py's config and overrides (stages come from the artifact store, or
are run as deploy would), run on the point's hardware through its RPC session."""
from __future__ import annotations

import logging
import os
import sys

USAGE = "usage: python -m dlas.codegen.divergence [--samples N] [layer=value ...]"
SAMPLES = 8  # validation samples: ~10^4-10^6 elements per probe on 32x32 models


def parse(argv: list[str]) -> tuple[int, list[str]]:
    from dlas.errors import DLASError

    samples, overrides, args = SAMPLES, [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if arg == "--samples" or arg.startswith("--samples="):
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not value.isdigit() or int(value) < 1:
                raise DLASError("--samples", value, "an integer >= 1")
            samples = int(value)
        elif arg.startswith("-"):
            raise DLASError("option", arg, "--samples N, or layer=value overrides")
        else:
            overrides.append(arg)
    return samples, overrides


def point_config(overrides: list[str]):
    """deploy.py's config with `overrides`, or one line and exit 2 (as the entry points)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from dlas.cli import CONF_DIR, _hydra_message, check_group_overrides, fail

    check_group_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="deploy", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        fail(_hydra_message(exc))


def run(cfg, samples: int) -> str:
    from dlas.codegen.divergence import divergence, report
    from dlas.compression.metrics import number_format
    from dlas.errors import in_layer
    from dlas.stages.compress import compressed_model
    from dlas.stages.deploy import plan

    planned = plan(cfg)  # the point's layers, its settings checked, as deploy.py does
    primitive, codegen, hardware = planned.primitive, planned.codegen, planned.hardware
    with in_layer("dataset"):
        x, _ = planned.datamodule.eval_arrays(samples)
    with in_layer("hardware"):
        hardware.check()
    net, _ = compressed_model(cfg, planned.datamodule)
    fmt = number_format(net)
    rtol = float(cfg.logit_rtol[fmt])
    with in_layer("codegen"):
        rows = divergence(net, x, primitive, codegen, hardware.target, fmt=fmt, rtol=rtol,
                          hardware=hardware)
    steps = (f"logit_rtol.{fmt}={rtol:g} x max|ref| of each tensor" if fmt != "int8" else
             "int8 probes their scale; layer outputs the next quantize's scale, vs PyTorch's "
             f"layer on the compiled int8 input; logits logit_rtol.int8={rtol:g} x max|ref|")
    title = (f"{cfg.dataset.name} {cfg.model.name} {cfg.compression.name} "
             f"{primitive.name}-{primitive.format} {codegen.name} {hardware.name} | {fmt}, "
             f"{len(x)} samples | step: {steps}")
    return report(rows, title)


def main(argv: list[str] | None = None) -> None:
    from dlas.cli import fail
    from dlas.errors import ConfigError, DLASError

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        samples, overrides = parse(sys.argv[1:] if argv is None else argv)
        cfg = point_config(overrides)
        print(run(cfg, samples), flush=True)
    except DLASError as exc:
        layer = f"[{exc.layer}] " if exc.layer else ""
        fail(f"{layer}{exc}", 2 if isinstance(exc, ConfigError) else 1)


if __name__ == "__main__":
    main()
