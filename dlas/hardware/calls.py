"""Remote calls with a deadline, and which of their failures a fresh session can cure.

A TVM RPC call blocks in C++ on a socket and has no timeout of its own (the server-side
session_timeout only ends the whole session). So each call runs in a daemon thread and the caller
waits at most `timeout_s`: on a timeout the thread is abandoned (it ends when its socket closes,
e.g. when the session or the local server goes away) and the session must not be used again.
Waiting on an Event keeps Ctrl-C working while a call hangs.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from tvm.error import RPCError

from dlas.errors import DLASError


class RemoteTimeout(DLASError):
    """A remote call gave no answer in time; the session it used is unusable."""


class ConnectionLost(DLASError):
    """The RPC connection failed (server gone, socket closed, session expired)."""


# Failures of the transport rather than of the model: worth one retry with a fresh session.
RETRYABLE = (RemoteTimeout, ConnectionLost)


def call_with_timeout(fn: Callable, timeout_s: float | None, what: str):
    """Run fn() in a daemon thread; return its value, re-raise its error, or raise RemoteTimeout."""
    done = threading.Event()
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err
        finally:
            done.set()

    threading.Thread(target=target, name=f"dlas-rpc:{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise RemoteTimeout(what, reason=f"no answer within {timeout_s:g} s; the RPC session is "
                            "abandoned (raise the timeout for slow models or boards)", layer="hardware")
    if "error" in box:
        err = box["error"]
        if isinstance(err, RPCError | ConnectionError | BrokenPipeError | EOFError):
            raise ConnectionLost(what, reason=f"{type(err).__name__}: {_first_line(err)}",
                                 layer="hardware") from err
        raise err
    return box["value"]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
