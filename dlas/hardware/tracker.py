"""Asking an RPC tracker what it has, with a deadline and errors that say what to run next.

tvm.rpc.connect_tracker retries a refused connection for 60 s in 5 s steps, and its request()
re-sends a request whose answer is late, so neither can be bounded. Here the (small) tracker
protocol is spoken over a socket with a timeout; a request that times out is withdrawn by
closing its socket, so it cannot grab a server later. Connecting to the granted server is TVM's.
"""
from __future__ import annotations

import socket
import struct
import time

from tvm.rpc import base as rpc_base

from dlas.errors import DLASError


def _how_to_start(host: str, port: int) -> str:
    return (f"a running RPC tracker: start one with `python -m tvm.exec.rpc_tracker --host 0.0.0.0 "
            f"--port {port} --port-end {port + 10}` and check it with "
            f"`python -m tvm.exec.query_rpc_tracker --host {host} --port {port}`")


def _tracker_error(host: str, port: int, reason: str) -> DLASError:
    return DLASError("RPC tracker", f"{host}:{port}", _how_to_start(host, port), reason=reason,
                     layer="hardware")


def _ask(host: str, port: int, message: list, timeout_s: float, *, connect_timeout_s: float):
    """Send one tracker request and return its answer; the socket waits at most timeout_s."""
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except OSError as err:
        raise _tracker_error(host, port, f"cannot connect within {connect_timeout_s:g} s "
                                         f"({type(err).__name__}: {err})") from err
    # closing the socket also withdraws a queued request: the tracker skips closed requesters
    with sock:
        try:
            sock.sendall(struct.pack("<i", rpc_base.RPC_TRACKER_MAGIC))
            magic = struct.unpack("<i", rpc_base.recvall(sock, 4))[0]
        except (OSError, struct.error) as err:
            raise _tracker_error(host, port, f"no tracker handshake within {connect_timeout_s:g} s "
                                             f"({type(err).__name__}: {err})") from err
        if magic != rpc_base.RPC_TRACKER_MAGIC:
            raise _tracker_error(host, port, "something answers there, but not a TVM RPC tracker")
        sock.settimeout(timeout_s)
        rpc_base.sendjson(sock, message)
        code, value = rpc_base.recvjson(sock)  # socket.timeout (an OSError) after timeout_s
    if code != rpc_base.TrackerCode.SUCCESS:
        raise _tracker_error(host, port, f"request {message[0]} failed with code {code}")
    return value


def tracker_summary(host: str, port: int, timeout_s: float = 10) -> dict:
    """The tracker's summary dict ({"server_info": [...], "queue_info": {key: {free, pending}}})."""
    try:
        return _ask(host, port, [rpc_base.TrackerCode.SUMMARY], timeout_s,
                    connect_timeout_s=timeout_s)
    except (OSError, ValueError) as err:
        raise _tracker_error(host, port, f"no summary within {timeout_s:g} s "
                                         f"({type(err).__name__}: {err})") from err


def request_server(host: str, port: int, key: str, timeout_s: float | None,
                   connect_timeout_s: float = 10, priority: int = 1) -> tuple[str, int, str]:
    """Wait (at most timeout_s; None: forever) for a free server under key: (host, port, matchkey).

    TVM's TrackerSession.request cannot be bounded (it retries on its own), hence this.
    """
    try:
        url, server_port, matchkey = _ask(host, port, [rpc_base.TrackerCode.REQUEST, key, "",
                                                       priority], timeout_s,
                                          connect_timeout_s=connect_timeout_s)
    except socket.timeout as err:
        raise TimeoutError(f"no server under {key!r} became free within {timeout_s:g} s") from err
    return url, int(server_port), matchkey


def registered_keys(summary: dict) -> dict[str, int]:
    """RPC key -> number of servers registered under it (busy or free)."""
    keys: dict[str, int] = {}
    for item in summary.get("server_info", []):
        kind, _, key = item["key"].partition(":")
        if kind == "server":
            keys[key] = keys.get(key, 0) + 1
    return keys


def check_key(host: str, port: int, key: str, timeout_s: float = 10) -> dict:
    """The summary, after making sure at least one server is registered under `key`.

    Either failure (no tracker there, or no server under the key) says what to start where."""
    serve = (f"on the device run `python -m tvm.exec.rpc_server --tracker {host}:{port} "
             f"--key {key}`")
    try:
        summary = tracker_summary(host, port, timeout_s)
    except DLASError as err:
        raise DLASError("RPC key", key, layer="hardware",
                        reason=f"no board is registered under it at tracker {host}:{port}: the "
                               f"tracker is not reachable: {err}; then {serve}") from err
    keys = registered_keys(summary)
    if key not in keys:
        raise DLASError("RPC key", key, sorted(keys) or "none: no server is registered at all",
                        layer="hardware",
                        reason=f"no board is registered under it at tracker {host}:{port}; "
                               f"{serve}, then check with `python -m tvm.exec.query_rpc_tracker "
                               f"--host {host} --port {port}`")
    return summary


def wait_for_key(host: str, port: int, key: str, timeout_s: float, alive=lambda: True) -> float:
    """Poll until a server under `key` is registered and free; return the seconds waited."""
    start = time.perf_counter()
    while True:
        summary = tracker_summary(host, port, timeout_s)
        if summary.get("queue_info", {}).get(key, {}).get("free", 0) > 0:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout_s or not alive():
            raise DLASError("RPC key", key, sorted(registered_keys(summary)), layer="hardware",
                            reason=f"no free server registered under it at {host}:{port} "
                                   f"within {timeout_s:g} s")
        time.sleep(0.02)
