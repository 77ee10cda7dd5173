"""Runs a cross-compiled Relax VM library on the emulated aarch64 board's Python (under
qemu-user, dlas.hardware.emulated_root), for tests/primitives/test_int8_sdot.py:

    aarch64_vm.py LIB INPUTS.npz OUTPUTS.npz

main(x0, x1, ...) on the CPU with the arrays x0, x1, ... of INPUTS, its outputs saved as
arr_0, arr_1, ... Only tvm_ffi and TVM's runtime library are loaded, not the `tvm` package:
importing it costs ~30 s under qemu, this ~10 s.
"""
import ctypes
import os
import sys

import numpy as np
import tvm_ffi

CPU, POOLED = 1, 2  # DLPack device type, Relax VM allocator (tvm.relax.VirtualMachine's)

site = os.path.dirname(os.path.dirname(tvm_ffi.__file__))
ctypes.CDLL(os.path.join(site, "tvm", "lib", "libtvm_runtime.so"), ctypes.RTLD_GLOBAL)
lib, inputs, outputs = sys.argv[1:4]
vm = tvm_ffi.load_module(lib)["vm_load_executable"]()
vm["vm_initialization"](CPU, 0, POOLED)
xs = np.load(inputs)
outs = vm["main"](*(tvm_ffi.from_dlpack(xs[f"x{i}"]) for i in range(len(xs.files))))
np.savez(outputs, *(np.from_dlpack(out) for out in outs))
