"""One exception type for every bad input DLAS can name.

A DLASError carries what was wrong (the setting and its value) and what would have been
right, so the entry points can print it as one line and exit non-zero, and the sweep's
task wrapper can record it in the results store with the layer it came from.
"""
from __future__ import annotations

from collections.abc import Iterable


class DLASError(Exception):
    """A bad value, a missing resource or an unsupported combination, said in one line.

    what:  the setting or thing that is wrong, e.g. "compression.ratio" or "RPC tracker"
    value: the bad value as given
    valid: the accepted values (an iterable of choices) or a sentence describing them
    layer: the stack layer it belongs to (dataset, model, compression, primitive, codegen,
           hardware), filled in by whoever knows it
    """

    def __init__(self, what: str, value=None, valid: Iterable | str | None = None,
                 *, reason: str | None = None, layer: str | None = None):
        self.what, self.value, self.valid, self.reason, self.layer = what, value, valid, reason, layer
        super().__init__(self._message())

    def _message(self) -> str:
        msg = f"{self.what}={self.value!r}" if self.value is not None else self.what
        if self.reason:
            msg += f": {self.reason}"
        if self.valid is not None:
            valid = self.valid if isinstance(self.valid, str) else ", ".join(map(str, self.valid))
            msg += f" (valid: {valid})"
        return msg


class Unsupported(DLASError):
    """A combination of layer values that cannot run, e.g. a primitive on a target that lacks it.

    Recorded with status `unsupported` rather than `failed`: nothing is broken, the point is
    simply not in the space this stack can run.
    """


class ConfigError(DLASError):
    """A bad setting, found before any work: said in one line (exit 2), never a results row,
    since the point it would describe is not a point of the stack."""


class in_layer:
    """Attribute any exception raised inside the block to a stack layer (unless it has one).

    The task wrapper reads it to record which layer failed, for DLASErrors and for errors
    from deep inside a library alike.
    """

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            if isinstance(exc, DLASError):
                exc.layer = exc.layer or self.name
            elif getattr(exc, "dlas_layer", None) is None:
                try:
                    exc.dlas_layer = self.name
                except AttributeError:  # some builtin exceptions take no attributes
                    pass
        return False


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-blank line of an error message, cut to `limit` characters: what a
    one-line message or a results row can hold (an exception without text gives its type)."""
    text = error if isinstance(error, str) else str(error)
    empty = "" if isinstance(error, str) else type(error).__name__
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), empty)[:limit]


def layer_of(exc: BaseException) -> str | None:
    return exc.layer if isinstance(exc, DLASError) else getattr(exc, "dlas_layer", None)
