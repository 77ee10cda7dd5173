"""Remote calls with a deadline, and which of their failures a fresh session can cure.

A TVM RPC call blocks in C++ on a socket and has no timeout of its own (the server-side
session_timeout only ends the whole session). So each call runs on a daemon worker thread and
the caller waits at most `timeout_s`: on a timeout the worker is abandoned (it ends when its
socket closes, e.g. when the local server is killed) and the session must not be used again.
Waiting on an Event keeps Ctrl-C working while a call hangs.
"""
from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable

from tvm.error import RPCError, RPCSessionTimeoutError

from dlas.errors import DLASError


class RemoteTimeout(DLASError):
    """A remote call gave no answer in time; the session it used is unusable."""


class ConnectionLost(DLASError):
    """The RPC connection failed (server gone, socket closed, session expired)."""


# Failures of the transport rather than of the model: worth one retry with a fresh session.
RETRYABLE = (RemoteTimeout, ConnectionLost)


class _Worker:
    """A daemon thread running calls one at a time (a new thread per call costs ~0.3 ms)."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="dlas-rpc-call", daemon=True).start()

    def _loop(self):
        while True:
            fn, done, box = self.jobs.get()
            try:
                box["value"] = fn()
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = err
            finally:
                done.set()
                fn = box = None  # an abandoned call's result (e.g. a late session) must not linger


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def call_with_timeout(fn: Callable, timeout_s: float | None, what: str):
    """Run fn() on a worker thread; return its value, re-raise its error, or raise RemoteTimeout."""
    with _idle_lock:
        worker = _idle.pop() if _idle else _Worker()
    done, box = threading.Event(), {}
    worker.jobs.put((fn, done, box))
    if not done.wait(timeout_s):  # the worker stays stuck in the call: never reuse it
        raise RemoteTimeout(what, reason=f"no answer within {timeout_s:g} s; the RPC session is "
                            "abandoned (raise the timeout for slow models or boards)",
                            layer="hardware")
    with _idle_lock:
        _idle.append(worker)
    if "error" in box:
        err = box["error"]
        if _is_transport_error(err):
            raise ConnectionLost(what, reason=f"{type(err).__name__}: {_last_line(err)}",
                                 layer="hardware") from err
        if isinstance(err, RPCError):  # raised on the remote side, e.g. a wrong input shape
            raise DLASError(what, reason=f"failed on the remote side: {_last_line(err)}",
                            layer="hardware") from err
        raise err
    return box["value"]


# A dead peer shows up as `InternalError: Socket SockChannel::Send Error:Broken pipe` or
# `Check failed: (code == RPCCode::kReturn) is false: code=1` (the peer shut down).
_TRANSPORT = re.compile(r"SockChannel|Socket|RPCCode|Broken pipe|Connection (reset|refused)",
                        re.IGNORECASE)


def _is_transport_error(err: BaseException) -> bool:
    if isinstance(err, RPCSessionTimeoutError | ConnectionError | EOFError):
        return True
    if isinstance(err, RPCError):  # the remote side answered with an error: the link is fine
        return False
    return isinstance(err, Exception) and bool(_TRANSPORT.search(_last_line(err)))


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__  # TVM puts the message last
