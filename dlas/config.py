"""Building objects from config nodes, with errors that name the layer and the bad value."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from dlas.errors import ConfigError, DLASError, Unsupported
from dlas.values import integer


def make(cfg: DictConfig, group: str, **kwargs):
    """`instantiate(cfg[group])`, re-raising what a constructor refuses (a DLASError, or any
    error while building) as a ConfigError of layer `group` instead of Hydra's wrapped
    exception; an Unsupported combination stays Unsupported."""
    node = cfg[group]
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, DLASError):
            cause.layer = cause.layer or group
            if isinstance(cause, ConfigError | Unsupported):
                raise cause from None
            raise ConfigError(cause.what, cause.value, cause.valid, reason=cause.reason,
                              layer=cause.layer) from None
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        raise ConfigError(group, node.get("name", node.get("_target_"))
                          if isinstance(node, DictConfig) else node,
                          reason=_one_line(detail), layer=group) from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(group, reason=_one_line(str(exc)), layer=group) from exc


def check_settings(cfg: DictConfig) -> None:
    """The run settings outside the layer objects, checked before any work (ConfigError)."""
    seed = cfg.get("seed")
    integer("seed", seed, 0, error=ConfigError)
    if cfg.get("trainer") is not None:
        epochs = cfg.trainer.get("max_epochs")
        integer("trainer.max_epochs", epochs, 1, layer="model", error=ConfigError,
                reason="DLAS budgets training in epochs, so that one config trains one model")


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())[:500]


def plain(value):
    """Nested mappings/sequences (OmegaConf containers from instantiate, TVM's Map/Array) as
    dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value
