"""JIT-compiling LLVM IR for this CPU with llvmlite, caching by source, running on threads.

Every generated function has the signature `void f(ptr bufs, i64 start, i64 end)`: `bufs`
is an array of buffer pointers and the function handles items [start, end) of its
iteration space (elements, or GEMM tiles). That makes parallelism a host decision: the
range is cut into one chunk per core and the chunks run on a thread pool (ctypes releases
the GIL for the call) when the work is big enough to pay for the hand-off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

KernelFn = Any  # a ctypes function: (void**, int64, int64) -> None
_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_MIN_WORK = 1 << 16  # items x cost below which one thread is faster


class Jit:
    """One MCJIT engine for the process; modules are added once per distinct source."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        self.llvm = llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        self.tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                               features=llvm.get_host_cpu_features().flatten(),
                                               opt=3, codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.cache: dict[str, KernelFn] = {}
        self.lock = threading.Lock()
        self.threads = max(1, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def optimise(self, module: Any) -> None:
        llvm = self.llvm
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = True
        pto.loop_interleaving = True
        builder = llvm.create_pass_builder(self.tm, pto)
        builder.getModulePassManager().run(module, builder)

    def compile(self, source: str, name: str = "kern") -> KernelFn:
        """The function `name` of `source`, compiled once; renamed so sources never clash."""
        key = hashlib.sha1(source.encode()).hexdigest()[:20]
        with self.lock:
            found = self.cache.get(key)
            if found is not None:
                return found
            unique = f"{name}_{key}"
            module = self.llvm.parse_assembly(source.replace(f"@{name}(", f"@{unique}("))
            module.triple = self.tm.triple
            module.data_layout = str(self.tm.target_data)
            module.verify()
            self.optimise(module)
            self.engine.add_module(module)
            self.engine.finalize_object()
            fn = _SIGNATURE(self.engine.get_function_address(unique))
            self.cache[key] = fn
            return fn

    def run(self, fn: KernelFn, pointers: list[int], total: int, cost: int = 1) -> None:
        """Run items [0, total) of `fn` over `pointers`, split across cores when it pays."""
        if total <= 0:
            return
        array = (ctypes.c_void_p * len(pointers))(*pointers)
        address = ctypes.addressof(array)
        parts = min(self.threads, total) if total * cost >= PARALLEL_MIN_WORK else 1
        if parts <= 1 or self.pool is None:
            fn(address, 0, total)
            return
        bounds = np.linspace(0, total, parts + 1).astype(np.int64)
        futures = [self.pool.submit(fn, address, int(lo), int(hi))
                   for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
        for f in futures:
            f.result()


_JIT: Jit | None = None
_JIT_LOCK = threading.Lock()


def jit() -> Jit:
    global _JIT
    with _JIT_LOCK:
        if _JIT is None:
            _JIT = Jit()
    return _JIT
