"""Hardware: where a compiled model runs: a TVM target (+ host, cross compiler) and an RPC key.

Every measurement goes through TVM RPC, also on this machine: `session()` starts a tracker and
server on 127.0.0.1 when no tracker is configured (LocalCPU, LocalCUDA), or connects to the
configured one (RemoteBoard: HiKey, Jetson, ... each a config naming tracker, key, the targets
of its CPU and GPU, and the cross compiler).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import tvm
from tvm.support import cc as tvm_cc

from dlas.config import plain
from dlas.errors import DLASError
from dlas.hardware.local_rpc import LocalRPC, terminate_on_sigterm
from dlas.hardware.session import RemoteSession
from dlas.hardware.tracker import check_key
from dlas.store.locks import wait_for_lock
from dlas.values import integer

DEVICE_CHOICES = ("cpu", "gpu")  # the `hardware.device` setting
# Target kind -> the runtime device its code runs on (the name RPCSession / tvm.device use).
RUNTIME_DEVICE = {"llvm": "cpu", "c": "cpu", "cuda": "cuda", "opencl": "opencl",
                   "vulkan": "vulkan", "metal": "metal", "rocm": "rocm"}
CPU_KINDS = ("llvm", "c")


def make_target(spec, what: str = "hardware.target") -> tvm.target.Target:
    """A tvm Target from the dict form ({kind: llvm, mcpu: ...}), a bare kind, or a Target."""
    if isinstance(spec, tvm.target.Target):
        return spec
    spec = plain(spec)
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
    targets: instead of target, one per device ({cpu: ..., gpu: ...}) of a board with both:
    `device` picks the target, and a GPU's host defaults to the board's CPU target;
    cc: cross compiler used by export() (e.g. aarch64-linux-gnu-g++), None for the local one;
    tracker_host / tracker_port: None starts a private tracker + server on 127.0.0.1;
    connect_timeout_s: limit for reaching the tracker; session_timeout_s: the server ends a
    session after this long (0: never), so it must cover one whole measurement;
    request_timeout_s: how long to wait for a free server (default: session_timeout_s);
    machine: the physical machine, when several hardware configs are variants of one (ISA
    level, threads: local, local_avx2, local_1thread); default: the name. Rows record it and
    the report says when the hardware it compares are variants of one machine.
    measure_lock: a lock file every process on this host uses for this device (local CPU,
    local GPU): a session holds it, so parallel jobs never time at once on one device
    (training and compiling still overlap). Boards need none: the tracker gives a server to
    one session at a time.
    """

    # threads of the TVM runtime on the server DLAS starts itself (LocalCPU); None where the
    # server is someone else's (a board's rpc_server decides)
    num_threads: int | None = None

    def __init__(self, name: str, device: str = "cpu", key: str = "local", target=None,
                 host=None, cc: str | None = None, targets: Mapping | None = None,
                 tracker_host: str | None = None,
                 tracker_port: int | None = None, connect_timeout_s: float = 10,
                 session_timeout_s: float = 600, request_timeout_s: float | None = None,
                 startup_timeout_s: float = 60, machine: str | None = None,
                 measure_lock: str | None = None):
        if device not in DEVICE_CHOICES:
            raise DLASError("hardware.device", device, DEVICE_CHOICES, layer="hardware")
        if not key or not isinstance(key, str):
            raise DLASError("hardware.key", key, "a non-empty RPC key string", layer="hardware")
        if (tracker_host is None) != (tracker_port is None):
            missing = "tracker_port" if tracker_port is None else "tracker_host"
            raise DLASError(f"hardware.{missing}", None, layer="hardware",
                            valid="both tracker_host and tracker_port, or neither (local)")
        self.name, self.device, self.key, self.cc = name, device, key, cc
        self.machine = machine or name
        if targets is not None:
            target, host = _pick(targets, device, target, host)
        self.host = make_target(host, "hardware.host") if host is not None else None
        target = make_target(target if target is not None else {"kind": "llvm"})
        self.target = tvm.target.Target(target, self.host) if self.host is not None else target
        kind = self.target.kind.name
        if (device == "cpu") != (kind in CPU_KINDS):
            raise DLASError("hardware.target", kind, CPU_KINDS if device == "cpu" else
                            sorted(set(RUNTIME_DEVICE) - set(CPU_KINDS)), layer="hardware",
                            reason=f"does not run on device={device!r}")
        if kind not in RUNTIME_DEVICE:
            raise DLASError("hardware.target", kind, sorted(RUNTIME_DEVICE), layer="hardware",
                            reason="DLAS cannot run this target kind over RPC")
        self.tracker_host, self.tracker_port = tracker_host, tracker_port
        self.connect_timeout_s, self.session_timeout_s = connect_timeout_s, session_timeout_s
        self.request_timeout_s, self.startup_timeout_s = request_timeout_s, startup_timeout_s
        self.measure_lock = measure_lock

    @property
    def runtime_device(self) -> str:
        """The device name Measurement.run needs: cpu, cuda, opencl, ..."""
        return RUNTIME_DEVICE[self.target.kind.name]

    @property
    def is_local(self) -> bool:
        return self.tracker_host is None

    def check_cc(self) -> None:
        """The configured (cross) compiler must be on PATH: it links the exported library."""
        if self.cc and shutil.which(self.cc) is None:
            triple = re.fullmatch(r"(.+)-g\+\+", self.cc)
            package = f"g++-{triple[1]}" if triple else "the cross compiler's package"
            raise DLASError("hardware.cc", self.cc, "a compiler on PATH", layer="hardware",
                            reason=f"not found, so no library can be exported for "
                                   f"{self.name}; set it up with `apt-get install {package}` "
                                   "(README: Boards)")

    def export(self, executable, path) -> Path:
        """Write the compiled executable as a shared library the target can load."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if self.cc:
            self.check_cc()
            kwargs["fcompile"] = tvm_cc.cross_compiler(self.cc)
        executable.export_library(str(path), **kwargs)
        return path

    @contextmanager
    def tracker(self) -> Iterator[tuple[str, int, LocalRPC | None]]:
        """(host, port, local) of a tracker with a server under the key: the configured one
        (local None), or a private loopback tracker + server started now and always stopped;
        held under the device's measurement lock (MetaSchedule times candidates through it)."""
        with self._tracker() as found, self.device_lock():
            yield found

    @contextmanager
    def _tracker(self) -> Iterator[tuple[str, int, LocalRPC | None]]:
        if not self.is_local:
            yield self.tracker_host, self.tracker_port, None
            return
        local = LocalRPC(self.key, self.startup_timeout_s,
                         self.num_threads).start()
        try:
            yield local.host, local.port, local
        finally:
            local.stop()

    @contextmanager
    def device_lock(self) -> Iterator[float]:
        """Hold the host-wide measurement lock of this device (if any); the seconds waited."""
        if not self.measure_lock:
            yield 0.0
            return
        with wait_for_lock(Path(self.measure_lock), f"{self.name}'s measurement lock",
                           "measuring on it") as waited:
            yield waited

    @contextmanager
    def session(self) -> Iterator[RemoteSession]:
        """A connected RPC session, under the device's measurement lock; local tracker/server
        (if ours) are always torn down. A private server starts before the lock is taken
        (starting one is no more timing than a compile, which may overlap a measurement)."""
        with terminate_on_sigterm(), self._tracker() as (host, port, local), \
                self.device_lock() as waited:
            sess = RemoteSession(self.key, host, port, connect_timeout_s=self.connect_timeout_s,
                                 session_timeout_s=self.session_timeout_s,
                                 request_timeout_s=self.request_timeout_s, local=local)
            sess.lock_wait_s = waited
            try:
                yield sess
            finally:
                sess.abandon()  # also ends a call still in flight (e.g. after Ctrl-C)

    def check(self) -> dict:
        """Before a sweep: is a server registered under the key, and is the cross compiler
        there? Returns the tracker summary."""
        summary = {} if self.is_local else check_key(  # local: started on demand by session()
            self.tracker_host, self.tracker_port, self.key, self.connect_timeout_s)
        self.check_cc()
        return summary

    def __repr__(self) -> str:
        where = "local" if self.is_local else f"{self.tracker_host}:{self.tracker_port}"
        return (f"{type(self).__name__}(name={self.name!r}, key={self.key!r}, "
                f"target={self.target.kind.name}, {where})")


def _pick(targets: Mapping, device: str, target, host) -> tuple:
    """(target, host) of `device` from a board's per-device targets."""
    targets = plain(targets)
    if not isinstance(targets, dict) or device not in targets:
        raise DLASError("hardware.device", device,
                        sorted(targets) if isinstance(targets, dict) else None,
                        layer="hardware", reason="this hardware has no target for it")
    if target is not None:
        raise DLASError("hardware.target", plain(target), layer="hardware",
                        valid="either target or targets (one per device), not both")
    if host is None and device != "cpu":
        host = targets.get("cpu")  # a board's GPU code is launched by its own CPU
    return targets[device], host


class LocalCPU(Hardware):
    """This machine's CPU, measured through a private loopback tracker + server."""

    def __init__(self, name: str = "local", device: str = "cpu", key: str = "local",
                 target=None, num_threads: int | None = None, **kwargs):
        # default: this CPU as detected (plain llvm is generic x86-64: resnet18 ran ~3.7x slower
        # with it than with the detected mcpu on a 2-core AVX-512 VM)
        super().__init__(name, device, key,
                         target if target is not None else {"kind": "llvm", "mcpu": "host"},
                         **kwargs)
        integer("hardware.num_threads", num_threads, 1, optional=True, layer="hardware")
        # TVM's own default is one thread per physical core: 1 on this 2-vCPU VM, where 2 threads
        # measured 5.6 ms against 10.6 ms on resnet18. Use every CPU this process may run on.
        self.num_threads = num_threads or len(os.sched_getaffinity(0))


# Used when no GPU is here to ask (a build-only host): Hopper, the newest arch CUDA 12 and 13
# both compile for. Set hardware.target.arch for another GPU.
DEFAULT_CUDA_ARCH = "sm_90"


def cuda_arch() -> str | None:
    """sm_XY of this host's first CUDA GPU, None when TVM sees none."""
    dev = tvm.cuda(0)
    return "sm_" + dev.compute_version.replace(".", "") if dev.exist else None


class LocalCUDA(LocalCPU):
    """A CUDA GPU of this machine, measured through the private loopback tracker + server
    like `local`. target.arch null: detected from the GPU (DEFAULT_CUDA_ARCH without one,
    which still builds); host: the code launching the kernels (this CPU)."""

    def __init__(self, name: str = "local_cuda", device: str = "gpu", key: str = "local_cuda",
                 target=None, host=None, **kwargs):
        target = dict(plain(target) if target is not None else {"kind": "cuda"})
        if target.get("kind") == "cuda" and not target.get("arch"):
            target["arch"] = cuda_arch() or DEFAULT_CUDA_ARCH
        super().__init__(name, device, key, target,
                         host=host if host is not None else {"kind": "llvm", "mcpu": "host"},
                         **kwargs)

    def check(self) -> dict:
        """No CUDA GPU here: fail at once (before any training), not when the server loads
        the library."""
        if tvm.cuda(0).exist:
            return super().check()
        raise DLASError("hardware", self.name, layer="hardware",
                        valid="hardware=local, or a board's GPU (hikey/xavier device=gpu) "
                              "through its tracker",
                        reason="no CUDA GPU on this host (TVM finds no CUDA device: no NVIDIA "
                               "GPU or driver, libcuda.so.1); it can build for CUDA but not run")

    @contextmanager
    def session(self) -> Iterator[RemoteSession]:
        self.check()
        with super().session() as sess:
            yield sess


class RemoteBoard(Hardware):
    """A device registered at an external tracker (HiKey 970, Jetson Xavier NX, ...)."""

    def __init__(self, name: str, tracker_host: str, tracker_port: int, key: str, **kwargs):
        if not tracker_host or not tracker_port:
            raise DLASError("hardware.tracker_host", tracker_host, "a tracker host and port",
                            layer="hardware", reason="a remote board needs its tracker")
        super().__init__(name, key=key, tracker_host=tracker_host, tracker_port=int(tracker_port),
                         **kwargs)
