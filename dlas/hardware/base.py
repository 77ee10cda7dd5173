"""Hardware: where a compiled model runs: a TVM target (+ host, cross compiler) and an RPC key.

Every measurement goes through TVM RPC, also on this machine: `session()` starts a tracker and
server on 127.0.0.1 when no tracker is configured (LocalCPU), or connects to the configured one
(RemoteBoard: HiKey, Jetson, ... each a config naming tracker, key, target, host and cc).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import tvm
from tvm.support import cc as tvm_cc

from dlas.errors import DLASError
from dlas.hardware.local_rpc import LocalRPC, terminate_on_sigterm
from dlas.hardware.session import RemoteSession
from dlas.hardware.tracker import check_key

DEVICES = ("cpu", "gpu")
# Target kind -> the runtime device its code runs on (the name RPCSession / tvm.device use).
RUNTIME_DEVICES = {"llvm": "cpu", "c": "cpu", "cuda": "cuda", "opencl": "opencl",
                   "vulkan": "vulkan", "metal": "metal", "rocm": "rocm"}
CPU_KINDS = ("llvm", "c")


def _plain(value):
    """Nested mappings/sequences (e.g. OmegaConf containers from instantiate) as dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def make_target(spec, what: str = "hardware.target") -> tvm.target.Target:
    """A tvm Target from the dict form ({kind: llvm, mcpu: ...}), a bare kind, or a Target."""
    if isinstance(spec, tvm.target.Target):
        return spec
    spec = _plain(spec)
    kinds = sorted(tvm.target.Target.list_kinds())
    valid = ("a dict with 'kind' and its options, e.g. {kind: llvm, mtriple: aarch64-linux-gnu, "
             f"mattr: [+neon]}}; kinds: {', '.join(kinds)}")
    if isinstance(spec, dict) and spec.get("kind") not in kinds:
        raise DLASError(what, spec, valid, reason=f"unknown kind {spec.get('kind')!r}",
                        layer="hardware")
    if not isinstance(spec, dict | str):
        raise DLASError(what, spec, valid, reason="not a dict", layer="hardware")
    if isinstance(spec, dict) and spec.get("mcpu") == "host":
        spec = {**host_cpu(), **spec, "mcpu": host_cpu()["mcpu"]}
    try:
        return tvm.target.Target(spec)
    except Exception as err:  # TVM raises ValueError / TVMError / TypeError for bad options
        msg = str(err).strip().splitlines()
        raise DLASError(what, spec, valid, reason=msg[-1] if msg else type(err).__name__,
                        layer="hardware") from err


def host_cpu() -> dict:
    """This machine's LLVM triple and CPU name (`mcpu: host` in a target dict).

    Plain `llvm` means generic x86-64 (4-wide vectors, no FMA): 3.7x slower than the host CPU
    with DLAS's schedules on resnet18 here. TVM 0.27 rejects `mcpu: native`, so detect it.
    """
    detected = tvm.target.Target.from_device(tvm.cpu())
    return {k: str(detected.attrs[k]) for k in ("mtriple", "mcpu") if k in detected.attrs}


class Hardware:
    """A target to compile for and an RPC key to run under.

    name: label in results; device: cpu | gpu (which processor of a board); key: RPC key;
    target / host: dict form targets (host only when cross-compiling for a GPU target);
    cc: cross compiler used by export() (e.g. aarch64-linux-gnu-g++), None for the local one;
    tracker_host / tracker_port: None starts a private tracker + server on 127.0.0.1;
    connect_timeout_s: limit for reaching the tracker; session_timeout_s: the server ends a
    session after this long (0: never), so it must cover one whole measurement;
    request_timeout_s: how long to wait for a free server (default: session_timeout_s).
    """

    def __init__(self, name: str, device: str = "cpu", key: str = "local", target=None,
                 host=None, cc: str | None = None, tracker_host: str | None = None,
                 tracker_port: int | None = None, connect_timeout_s: float = 10,
                 session_timeout_s: float = 600, request_timeout_s: float | None = None,
                 startup_timeout_s: float = 60):
        if device not in DEVICES:
            raise DLASError("hardware.device", device, DEVICES, layer="hardware")
        if not key or not isinstance(key, str):
            raise DLASError("hardware.key", key, "a non-empty RPC key string", layer="hardware")
        if (tracker_host is None) != (tracker_port is None):
            missing = "tracker_port" if tracker_port is None else "tracker_host"
            raise DLASError(f"hardware.{missing}", None, layer="hardware",
                            valid="both tracker_host and tracker_port, or neither (local)")
        self.name, self.device, self.key, self.cc = name, device, key, cc
        self.host = make_target(host, "hardware.host") if host is not None else None
        target = make_target(target if target is not None else {"kind": "llvm"})
        self.target = tvm.target.Target(target, self.host) if self.host is not None else target
        kind = self.target.kind.name
        if (device == "cpu") != (kind in CPU_KINDS):
            raise DLASError("hardware.target", kind, CPU_KINDS if device == "cpu" else
                            sorted(set(RUNTIME_DEVICES) - set(CPU_KINDS)), layer="hardware",
                            reason=f"does not run on device={device!r}")
        if kind not in RUNTIME_DEVICES:
            raise DLASError("hardware.target", kind, sorted(RUNTIME_DEVICES), layer="hardware",
                            reason="DLAS cannot run this target kind over RPC")
        self.tracker_host, self.tracker_port = tracker_host, tracker_port
        self.connect_timeout_s, self.session_timeout_s = connect_timeout_s, session_timeout_s
        self.request_timeout_s, self.startup_timeout_s = request_timeout_s, startup_timeout_s

    @property
    def runtime_device(self) -> str:
        """The device name Measurement.run needs: cpu, cuda, opencl, ..."""
        return RUNTIME_DEVICES[self.target.kind.name]

    @property
    def is_local(self) -> bool:
        return self.tracker_host is None

    def export(self, executable, path) -> Path:
        """Write the compiled executable as a shared library the target can load."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if self.cc:
            if shutil.which(self.cc) is None:
                raise DLASError("hardware.cc", self.cc, "a cross compiler on PATH",
                                layer="hardware",
                                reason="not found; e.g. apt install g++-aarch64-linux-gnu")
            kwargs["fcompile"] = tvm_cc.cross_compiler(self.cc)
        executable.export_library(str(path), **kwargs)
        return path

    @contextmanager
    def session(self) -> Iterator[RemoteSession]:
        """A connected RPC session; local tracker/server (if ours) are always torn down."""
        local = None
        with terminate_on_sigterm():
            try:
                if self.is_local:
                    local = LocalRPC(self.key, self.startup_timeout_s,
                                     getattr(self, "num_threads", None)).start()
                    host, port = local.host, local.port
                else:
                    host, port = self.tracker_host, self.tracker_port
                sess = RemoteSession(self.key, host, port, connect_timeout_s=self.connect_timeout_s,
                                     session_timeout_s=self.session_timeout_s,
                                     request_timeout_s=self.request_timeout_s, local=local)
                try:
                    yield sess
                finally:
                    sess.abandon()  # also ends a call still in flight (e.g. after Ctrl-C)
            finally:
                if local is not None:
                    local.stop()

    def check(self) -> dict:
        """Before a sweep: is a server registered under the key? Returns the tracker summary."""
        if self.is_local:
            return {}  # started on demand by session()
        return check_key(self.tracker_host, self.tracker_port, self.key, self.connect_timeout_s)

    def __repr__(self) -> str:
        where = "local" if self.is_local else f"{self.tracker_host}:{self.tracker_port}"
        return (f"{type(self).__name__}(name={self.name!r}, key={self.key!r}, "
                f"target={self.target.kind.name}, {where})")


class LocalCPU(Hardware):
    """This machine's CPU, measured through a private loopback tracker + server."""

    def __init__(self, name: str = "local", device: str = "cpu", key: str = "local",
                 target=None, num_threads: int | None = None, **kwargs):
        # default: this CPU as detected (plain llvm is generic x86-64, ~3.7x slower here)
        super().__init__(name, device, key,
                         target if target is not None else {"kind": "llvm", "mcpu": "host"},
                         **kwargs)
        if num_threads is not None and (isinstance(num_threads, bool)
                                        or not isinstance(num_threads, int) or num_threads < 1):
            raise DLASError("hardware.num_threads", num_threads, "null or an integer >= 1",
                            layer="hardware")
        # TVM's own default is one thread per physical core: 1 on this 2-vCPU VM, where 2 threads
        # measured 5.6 ms against 10.6 ms on resnet18. Use every CPU this process may run on.
        self.num_threads = num_threads or len(os.sched_getaffinity(0))


class RemoteBoard(Hardware):
    """A device registered at an external tracker (HiKey 970, Jetson Xavier NX, ...)."""

    def __init__(self, name: str, tracker_host: str, tracker_port: int, key: str, **kwargs):
        if not tracker_host or not tracker_port:
            raise DLASError("hardware.tracker_host", tracker_host, "a tracker host and port",
                            layer="hardware", reason="a remote board needs its tracker")
        super().__init__(name, key=key, tracker_host=tracker_host, tracker_port=int(tracker_port),
                         **kwargs)
