"""Helpers for the hardware tests (a module of its own: `conftest` is not unique)."""
from __future__ import annotations

import subprocess
import time

import numpy as np
import torch
import tvm
import tvm.relax.frontend.torch  # noqa: F401 - registers relax.frontend.torch
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

LLVM = {"kind": "llvm"}


def live_in_group(pgid: int, wait_s: float = 3.0, at_most: int = 0) -> list[str]:
    """`ps` lines of the running processes (zombies do not count) in group pgid, after waiting
    up to wait_s for their number to drop to at_most."""
    deadline = time.monotonic() + wait_s
    while True:
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,pgid=,stat=,args="], capture_output=True,
                             text=True, check=True).stdout
        live = [line for line in out.splitlines()
                if int(line.split()[1]) == pgid and not line.split()[2].startswith("Z")]
        if len(live) <= at_most or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def compile_torch(model: torch.nn.Module, x: torch.Tensor, unwrap: bool = True):
    ep = torch.export.export(model.eval(), (x,))
    mod = tvm.relax.frontend.torch.from_exported_program(
        ep, keep_params_as_input=False, unwrap_unit_return_tuple=unwrap)
    return tvm.compile(mod, target=tvm.target.Target(LLVM))


def spin_module(iters: int):
    """A Relax module whose main spins `iters` loop steps (~1 ns each here): a slow model."""
    @I.ir_module
    class Spin:
        @T.prim_func
        def spin(x: T.Buffer((1, 4), "float32"), y: T.Buffer((1, 4), "float32")):
            for i in range(4):
                y[0, i] = x[0, i]
            for k in range(iters):
                y[0, k % 4] = y[0, k % 4] * T.float32(0.5) + x[0, (k + 1) % 4]

        @R.function
        def main(x: R.Tensor((1, 4), "float32")) -> R.Tensor((1, 4), "float32"):
            cls = Spin
            y = R.call_tir(cls.spin, (x,), out_ty=R.Tensor((1, 4), "float32"))
            return y

    return Spin


def crash_module():
    """A Relax module whose main reads 2**40 elements past its input: the process segfaults."""
    @I.ir_module
    class Crash:
        @T.prim_func
        def crash(x: T.Buffer((1, 4), "float32"), y: T.Buffer((1, 4), "float32")):
            for i in range(4):
                y[0, i] = x[0, T.int64(1 << 40) + T.int64(i)]

        @R.function
        def main(x: R.Tensor((1, 4), "float32")) -> R.Tensor((1, 4), "float32"):
            cls = Crash
            y = R.call_tir(cls.crash, (x,), out_ty=R.Tensor((1, 4), "float32"))
            return y

    return Crash


def inputs(n: int, shape=(3, 8, 8), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")
