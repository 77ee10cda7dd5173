"""A pickle that runs code when fully unpickled: what a hostile copy of an outputs folder holds."""
from __future__ import annotations

from pathlib import Path

import torch


class Payload:
    """Unpickling it creates `marker` (a harmless stand-in for a shell command)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def plant(path: Path, marker: Path) -> None:
    """Write the payload where a stored file was, and prove it is live: full unpickling runs it."""
    torch.save(Payload(marker), path)
    torch.load(path, weights_only=False)
    assert Path(marker).exists(), "the payload does not run: the test would prove nothing"
    Path(marker).unlink()
