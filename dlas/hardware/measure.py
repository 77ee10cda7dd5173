"""Running a compiled model on the target through RPC: its outputs and its latency.

Outputs come from one `main` call per sample (the model is compiled for batch 1); latency from
TVM's time_evaluator on the first sample after warm-up calls, with a minimum time per repeat so
that a repeat is long enough to time. Every remote call has a deadline; a dropped connection or a
timeout is retried once on a fresh session when the session can give one (RemoteSession).
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from dlas.errors import DLASError, first_line
from dlas.hardware.base import RUNTIME_DEVICE
from dlas.hardware.calls import RETRYABLE, call_with_timeout
from dlas.values import integer
from dlas.values import number as as_number

log = logging.getLogger(__name__)


@dataclass
class MeasureResult:
    logits: np.ndarray                 # [N, classes], one row per input sample
    latency: dict = field(default_factory=dict)  # latency_ms_* stats, noisy, upload_s, ...
    times_ms: np.ndarray | None = None  # each timed repeat (what the stats summarise)


class Measurement:
    """warmup: untimed calls first; repeat: timed repeats; number: runs per repeat (TVM raises it
    until a repeat lasts min_repeat_ms); timeout_s: limit per remote call; retries: fresh-session
    retries after a dropped connection or timeout; noisy_cv: CV above which a result is flagged;
    profile: also time each PrimFunc alone (profile.py), profile_repeat repeats each."""

    def __init__(self, warmup: int = 3, repeat: int = 15, number: int = 1,
                 min_repeat_ms: float = 50, timeout_s: float = 120, retries: int = 1,
                 noisy_cv: float = 0.1, profile: bool = False, profile_repeat: int = 5):
        for what, value, low in (("warmup", warmup, 0), ("repeat", repeat, 1),
                                 ("number", number, 1), ("retries", retries, 0),
                                 ("profile_repeat", profile_repeat, 1)):
            integer(f"measure.{what}", value, low, layer="hardware")
        as_number("measure.min_repeat_ms", min_repeat_ms, 0, layer="hardware")
        as_number("measure.timeout_s", timeout_s, 0, low_open=True, valid="> 0 seconds",
                  layer="hardware")
        self.warmup, self.repeat, self.number = int(warmup), int(repeat), int(number)
        self.min_repeat_ms, self.timeout_s = float(min_repeat_ms), float(timeout_s)
        self.retries, self.noisy_cv = int(retries), float(noisy_cv)
        if not isinstance(profile, bool):
            raise DLASError("measure.profile", profile, "true or false", layer="hardware")
        self.profile, self.profile_repeat = profile, int(profile_repeat)

    def run(self, session, lib_path, inputs: np.ndarray, *, device: str = "cpu") -> MeasureResult:
        devices = tuple(dict.fromkeys(RUNTIME_DEVICE.values()))
        if device not in devices:
            raise DLASError("measure device", device, devices, layer="hardware")
        lib_path = Path(lib_path)
        if not lib_path.is_file():
            raise DLASError("compiled library", str(lib_path), "an exported .so file",
                            reason="not found", layer="hardware")
        inputs = np.ascontiguousarray(inputs)
        if inputs.ndim < 2 or len(inputs) == 0:
            raise DLASError("measure inputs shape", inputs.shape, "[N, C, H, W] with N >= 1",
                            layer="hardware")
        retried: list[str] = []  # the row says why a measurement needed a fresh session
        for attempt in range(self.retries + 1):
            try:
                result = self._run_once(session, lib_path, inputs, device)
                result.latency.update(measure_retries=len(retried), measure_retry_reasons=retried)
                return result
            except RETRYABLE as err:
                if hasattr(session, "abandon"):
                    session.abandon()  # before the failed attempt's remote handles are freed
                if attempt == self.retries or not hasattr(session, "reconnect"):
                    raise
                reason = first_line(err)
                retried.append(reason)
                log.warning("measurement attempt %d failed (%s); retrying on a fresh session",
                            attempt + 1, reason)
                try:
                    session.reconnect()
                except DLASError as gone:  # e.g. the board went away: say both in the row
                    raise DLASError(gone.what, gone.value, gone.valid, layer="hardware",
                                    reason=f"the measurement failed ({reason}), then no fresh "
                                           f"session: {gone.reason or first_line(gone)}") from gone
        raise AssertionError("unreachable")

    def call(self, fn, what: str, timeout_s: float | None = None):
        """fn() on the target with a deadline (timeout_s, default measure.timeout_s)."""
        return call_with_timeout(fn, timeout_s or self.timeout_s, what)

    def load(self, sess, lib_path: Path, device: str):
        """(the library loaded on the target, its device, upload seconds)."""
        # Our own loopback server sees this file system: it loads the library in place (the
        # server resolves an absolute path as itself) instead of receiving a copy (1 s for 45 MB).
        same_host = getattr(sess, "local", None) is not None
        remote_name = (str(lib_path.resolve()) if same_host
                       else f"dlas-{uuid.uuid4().hex[:8]}-{lib_path.name}")
        t0 = time.perf_counter()
        if not same_host:
            self.call(lambda: sess.upload(str(lib_path), remote_name), f"upload {lib_path.name}")
        upload_s = time.perf_counter() - t0

        def load():
            rlib = sess.load_module(remote_name)
            if not same_host:  # loaded (dlopen'ed): the copy is no longer needed there
                sess.remove(remote_name)
            return rlib, sess.device(device, 0)

        return (*self.call(load, f"load {lib_path.name} on the {device}"), upload_s)

    def _run_once(self, sess, lib_path: Path, inputs: np.ndarray, device: str) -> MeasureResult:
        t0 = time.perf_counter()
        rlib, dev, upload_s = self.load(sess, lib_path, device)

        def start_vm():
            vm = relax.VirtualMachine(rlib, dev)
            return vm, vm["main"]

        vm, main = self.call(start_vm, f"start the VM of {lib_path.name} on the {device}")
        load_s = time.perf_counter() - t0 - upload_s

        # one remote input buffer, refilled per sample: one round trip less than a new tensor
        x = self.call(lambda: tvm.runtime.empty((1, *inputs.shape[1:]),
                                                 str(inputs.dtype), dev), "input allocation")

        def infer(sample):
            x.copyfrom(sample)
            out = main(x)
            if not hasattr(out, "numpy"):
                raise DLASError("model output", type(out).__name__, "a single tensor",
                                layer="hardware", reason="main returns a tuple over RPC; import "
                                "with unwrap_unit_return_tuple=True")
            return out.numpy()

        logits = []
        t0 = time.perf_counter()
        for i in range(len(inputs)):
            logits.append(self.call(lambda: infer(inputs[i:i + 1]), f"inference on sample {i}"))
        call_s = (time.perf_counter() - t0) / len(inputs)
        logits = np.concatenate(logits).reshape(len(inputs), -1)

        self.call(lambda: x.copyfrom(inputs[:1]), "input upload")  # time the first sample
        t0 = time.perf_counter()
        for _ in range(self.warmup):
            self.call(lambda: main(x), "warm-up run")
        one_run_s = (time.perf_counter() - t0) / self.warmup if self.warmup else call_s

        # time_evaluator is one call of repeat x max(min_repeat_ms, number runs): budget for it
        timing_s = self.timeout_s + 2 * self.repeat * (self.min_repeat_ms / 1e3
                                                        + self.number * one_run_s)

        def timing():
            evaluator = vm.time_evaluator("main", dev, number=self.number, repeat=self.repeat,
                                          min_repeat_ms=int(round(self.min_repeat_ms)))
            return evaluator(x)

        bench = self.call(timing, "time_evaluator", timing_s)
        times_ms = np.asarray(bench.results) * 1e3
        latency = latency_stats(times_ms, self.noisy_cv)
        latency.update(upload_s=upload_s, load_s=load_s, call_ms=call_s * 1e3)
        return MeasureResult(logits=logits, latency=latency, times_ms=times_ms)


def latency_stats(times_ms: np.ndarray, noisy_cv: float) -> dict:
    """Summary of per-repeat times (ms): median, p90, mean, std, min, max, CV and the noisy flag."""
    times_ms = np.asarray(times_ms, dtype=float)
    mean = float(times_ms.mean())
    cv = float(times_ms.std() / mean) if mean > 0 else float("inf")
    return {"latency_ms_median": float(np.median(times_ms)),
            "latency_ms_p90": float(np.percentile(times_ms, 90)),
            "latency_ms_mean": mean, "latency_ms_std": float(times_ms.std()),
            "latency_ms_min": float(times_ms.min()), "latency_ms_max": float(times_ms.max()),
            "latency_cv": cv, "latency_repeats": int(times_ms.size), "noisy": cv > noisy_cv}
