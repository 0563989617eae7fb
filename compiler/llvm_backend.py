"""The `llvm` backend: a Graph's scheduled Kernels as JIT-compiled, vectorised CPU code.

Each Kernel of `compiler.schedule.schedule(graph)` becomes one LLVM function over a range
of its output elements (`compiler.llvm_jit` runs the range on all cores when it pays).
Elementwise and reduce kernels evaluate their fused expression per element (contiguous
reads index by the flat position, which lets the loop vectoriser emit SIMD code). A
contraction becomes gathers that pack its operands into the micro-kernel's panel layouts
(an implicit im2col through the Views), the GEMM of `compiler.llvm_gemm`, and an
epilogue function applying bias, activation and requantisation.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from compiler.ir import NUMPY_DTYPES, Graph, Op
from compiler.llvm_gemm import GemmPlan, gemm_ir, plan
from compiler.llvm_ir import NEG_INF, REG_TYPE, STORE_TYPE, IREmitter
from compiler.llvm_jit import jit
from compiler.llvm_opencl_common import (
    Point,
    classify,
    debug_kernel,
    debug_level,
    flatten,
    lower_expr,
    packed_coords,
    reduce_identity,
    scatter_index,
    unflatten,
)
from compiler.reference import check_inputs
from compiler.schedule import Kernel, schedule


def _module(em: IREmitter, nslots: int, out_dtype: str, loop: list[str], value: str,
            latch_from: str = "loop") -> str:
    """Wrap per-element code (using %gid, %p0.., giving `value`) in the element loop."""
    head = ["define void @kern(ptr noalias nocapture readonly %bufs, i64 %start, i64 %end) {",
            "entry:"]
    for slot in range(nslots):
        head += [f"  %p{slot}.p = getelementptr inbounds ptr, ptr %bufs, i64 {slot}",
                 f"  %p{slot} = load ptr, ptr %p{slot}.p"]
    head += [f"  %pout.p = getelementptr inbounds ptr, ptr %bufs, i64 {nslots}",
             "  %pout = load ptr, ptr %pout.p",
             "  %any = icmp slt i64 %start, %end",
             "  br i1 %any, label %loop, label %exit",
             "loop:",
             f"  %gid = phi i64 [ %start, %entry ], [ %next, %{latch_from} ]"]
    st = STORE_TYPE[out_dtype]
    tail = []
    if st == "i8":
        tail.append(f"  %outv = trunc i32 {value} to i8")
        value = "%outv"
    tail += [f"  %optr = getelementptr inbounds {st}, ptr %pout, i64 %gid",
             f"  store {st} {value}, ptr %optr",
             "  %next = add nuw nsw i64 %gid, 1",
             "  %done = icmp eq i64 %next, %end",
             "  br i1 %done, label %exit, label %loop",
             "exit:", "  ret void", "}"]
    return "\n".join(em.globals + head + loop + tail + sorted(em.declares)) + "\n"


def elementwise_ir(k: Kernel) -> str:
    em = IREmitter()
    idx = unflatten(em, "%gid", k.shape)
    value = lower_expr(em, k.body, Point(idx, k.shape, "%gid"), k.inputs, range(len(k.inputs)))
    return _module(em, len(k.inputs), k.output.dtype, em.lines, value)


def _epilogue(em: IREmitter, k: Kernel, acc: str) -> str:
    if k.epilogue is None:
        return acc
    idx = unflatten(em, "%gid", k.output.shape)
    return lower_expr(em, k.epilogue, Point(idx, k.output.shape, "%gid"), k.inputs,
                      range(len(k.inputs)), acc=acc)


def reduce_ir(k: Kernel) -> str:
    em = IREmitter()
    dtype = k.body.dtype
    reg = REG_TYPE[dtype]
    outer = unflatten(em, "%gid", k.reduced_shape)
    rshape = [k.shape[a] for a in k.reduce_axes]
    ident = reduce_identity(k.reduce_op, dtype)
    init = NEG_INF if ident == -math.inf else ("0.0" if dtype == "float32" else str(ident))
    em.lines += ["  br label %rloop", "rloop:",
                 "  %r = phi i64 [ 0, %loop ], [ %rnext, %rloop ]",
                 f"  %acc = phi {reg} [ {init}, %loop ], [ %accn, %rloop ]"]
    inner = unflatten(em, "%r", rshape)
    idx = list(outer)
    for axis, i in zip(k.reduce_axes, inner, strict=True):
        idx[axis] = i
    value = lower_expr(em, k.body, Point(idx, k.shape), k.inputs, range(len(k.inputs)))
    if k.reduce_op is Op.REDUCE_SUM:
        combined = em.ins(f"{'fadd' if dtype == 'float32' else 'add'} {reg} %acc, {value}")
    elif dtype == "float32":
        combined = em.fmax(value, "%acc", "ogt")
    else:
        bigger = em.ins(f"icmp sgt i32 {value}, %acc")
        combined = em.ins(f"select i1 {bigger}, i32 {value}, i32 %acc")
    em.lines = [line.replace("%accn", combined) for line in em.lines]
    em.lines += ["  %rnext = add nuw nsw i64 %r, 1",
                 f"  %rdone = icmp eq i64 %rnext, {math.prod(rshape)}",
                 "  br i1 %rdone, label %rexit, label %rloop", "rexit:"]
    acc = em.wrap(combined, dtype) if dtype != "float32" else combined
    value = _epilogue(em, k, acc)
    return _module(em, len(k.inputs), k.output.dtype, em.lines, value, latch_from="rexit")


def gather_ir(k: Kernel, operand: int, p: GemmPlan) -> str:
    c = classify(k)
    em = IREmitter()
    layout = p.a_layout() if operand == 0 else p.b_layout()
    coords = packed_coords(em, "%gid", layout)
    key, size = ("m", p.m) if operand == 0 else ("n", p.n)
    valid = em.icmp("<", coords[key], em.iconst(size))
    idx = scatter_index(em, c, coords)
    value = lower_expr(em, k.body.srcs[operand], Point(idx, k.shape), k.inputs,
                       range(len(k.inputs)), valid=valid)
    return _module(em, len(k.inputs), k.body.dtype, em.lines, value)


def contraction_epilogue_ir(k: Kernel, p: GemmPlan) -> str:
    c = classify(k)
    em = IREmitter()
    red = unflatten(em, "%gid", k.reduced_shape)
    parts = {key: flatten(em, [red[a] for a in axes], [k.shape[a] for a in axes])
             for key, axes in (("b", c.batch_axes), ("m", c.m_axes), ("n", c.n_axes))}
    row = em.iarith("+", em.iarith("*", parts["b"], em.iconst(p.mp)), parts["m"])
    addr = em.iarith("+", em.iarith("*", row, em.iconst(p.np_)), parts["n"])
    acc = em.load(len(k.inputs), k.body.dtype, addr, None)
    value = _epilogue(em, k, acc)
    return _module(em, len(k.inputs) + 1, k.output.dtype, em.lines, value)


def _cost(k: Kernel) -> int:
    """Rough work per output element, to decide whether threads pay."""
    per = max(1, len(repr(k.body)) // 8)
    if k.reduce_axes:
        per *= math.prod(k.shape[a] for a in k.reduce_axes)
    return per


def _alloc(numel: int, dtype: str) -> np.ndarray:
    return np.empty(max(1, numel), NUMPY_DTYPES[dtype])


class ScratchPool:
    """Reuses intermediate buffers between runs: a fresh large array costs a page fault per
    4 KiB on first write, which is as much as a simple kernel's whole work."""

    def __init__(self, keep_bytes: int = 1 << 28):
        self.free: dict[tuple[int, str], list[np.ndarray]] = {}
        self.keep_bytes = keep_bytes
        self.lock = threading.Lock()

    def take(self, numel: int, dtype: str) -> np.ndarray:
        with self.lock:
            found = self.free.get((numel, dtype))
            if found:
                return found.pop()
        return _alloc(numel, dtype)

    def give(self, arrays: list[np.ndarray]) -> None:
        with self.lock:
            kept = sum(a.nbytes for bucket in self.free.values() for a in bucket)
            for array in arrays:
                if kept + array.nbytes <= self.keep_bytes:
                    self.free.setdefault((array.size, array.dtype.name), []).append(array)
                    kept += array.nbytes


SCRATCH = ScratchPool()


def run(graph: Graph, inputs: dict[str, np.ndarray], **_: Any) -> dict[str, np.ndarray]:
    """The `llvm` backend (see `compiler.backends`)."""
    values = check_inputs(graph, inputs)
    sched = schedule(graph)
    engine = jit()
    debug = debug_level() > 0
    arrays: dict[int, np.ndarray] = {}
    for name, buf in sched.inputs.items():
        arrays[id(buf)] = np.ascontiguousarray(values[name]).reshape(-1)
    for buf in sched.consts:
        arrays[id(buf)] = np.ascontiguousarray(buf.data, NUMPY_DTYPES[buf.dtype]).reshape(-1)
    scratch: list[np.ndarray] = []
    for k in sched.kernels:
        out = arrays.get(id(k.output))
        if out is None:
            if k.output.kind == "temp":
                out = SCRATCH.take(max(1, k.output.numel), k.output.dtype)
                scratch.append(out)
            else:
                out = _alloc(k.output.numel, k.output.dtype)
            arrays[id(k.output)] = out
        ptrs = [arrays[id(a.buffer)].ctypes.data for a in k.inputs]
        started = time.perf_counter()
        if k.kind == "contraction":
            sources = _contraction(k, ptrs, out, scratch)
        else:
            sources = [reduce_ir(k) if k.kind == "reduce" else elementwise_ir(k)]
            engine.run(engine.compile(sources[0]), ptrs + [out.ctypes.data], k.output.numel,
                       _cost(k))
        if debug:
            debug_kernel("llvm", k, time.perf_counter() - started, sources)
    results = {name: arrays[id(sched.outputs[name])][:math.prod(node.shape)].reshape(node.shape)
               for name, node in graph.outputs.items()}
    SCRATCH.give(scratch)
    return results


def _contraction(k: Kernel, ptrs: list[int], out: np.ndarray,
                 scratch: list[np.ndarray]) -> list[str]:
    """Gathers, GEMM, epilogue; returns the generated IR (for DOZEN_DEBUG)."""
    engine = jit()
    c = classify(k)
    p = plan(c.b, c.m, c.n, c.k)
    dtype = k.body.dtype
    a = SCRATCH.take(p.batch * p.mp * p.k, dtype)
    b = SCRATCH.take(p.batch * p.np_ * p.k, dtype)
    acc = SCRATCH.take(p.batch * p.mp * p.np_, dtype)
    scratch += [a, b, acc]
    sources = [gather_ir(k, 0, p), gather_ir(k, 1, p), gemm_ir(p, dtype),
               contraction_epilogue_ir(k, p)]
    engine.run(engine.compile(sources[0]), ptrs + [a.ctypes.data], a.size, 4)
    engine.run(engine.compile(sources[1]), ptrs + [b.ctypes.data], b.size, 4)
    engine.run(engine.compile(sources[2]), [a.ctypes.data, b.ctypes.data, acc.ctypes.data],
               p.tasks, p.mr * p.nr * p.k)
    engine.run(engine.compile(sources[3]), ptrs + [acc.ctypes.data, out.ctypes.data],
               k.output.numel, 4)
    return sources
