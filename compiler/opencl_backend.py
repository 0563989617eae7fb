"""The `opencl` backend: runs a Graph's scheduled Kernels as OpenCL C on any OpenCL 1.2 device.

Every Kernel of `compiler.schedule.schedule(graph)` becomes one OpenCL kernel, except a
contraction (matmul, conv), which becomes three: two gathers that write the operands as
zero-padded (batch, M, K) and (batch, K, N) matrices (an implicit im2col through the
operands' Views), the tiled GEMM of `compiler.opencl_gemm`, and an epilogue kernel that
applies the fused bias/activation/requantisation. Programs are cached by source in the
device's Runtime, so a graph pays its compile once per process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.ir import NUMPY_DTYPES, Graph, Op
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
from compiler.opencl_c import REG_TYPE, STORE_TYPE, CEmitter, params, wrap
from compiler.opencl_gemm import Gemm, padded
from compiler.opencl_runtime import Runtime, runtime
from compiler.reference import check_inputs
from compiler.schedule import Kernel, schedule

INT_INDEX_LIMIT = 2**31 - 1


def index_type(k: Kernel, *sizes: int) -> str:
    """"int" when every index and address the kernel forms fits in 31 bits, else "long"."""
    bound = max([math.prod(k.shape), k.output.numel, *sizes])
    for access in k.inputs:
        view = access.view
        reach = abs(view.offset) + sum(abs(st) * (n - 1) for st, n in
                                       zip(view.strides, view.shape, strict=True))
        bound = max(bound, reach, access.buffer.numel, *(abs(st) for st in view.strides))
    return "int" if bound < INT_INDEX_LIMIT // 2 else "long"


def _assemble(em: CEmitter, name: str, signature: str, body: list[str]) -> str:
    head = "\n".join(em.globals)
    return (f"{head}\n__kernel void {name}({signature}) {{\n"
            f"  const {em.index_type} gid = get_global_id(0);\n  if (gid >= n) return;\n"
            + "\n".join(body) + "\n}\n")


def _store(out_dtype: str, value: str) -> str:
    return f"  out[gid] = ({STORE_TYPE[out_dtype]}){value};"


def elementwise_source(k: Kernel) -> str:
    em = CEmitter(index_type(k))
    idx = unflatten(em, "gid", k.shape)
    value = lower_expr(em, k.body, Point(idx, k.shape, "gid"), k.inputs, range(len(k.inputs)))
    slots = [STORE_TYPE[a.buffer.dtype] for a in k.inputs]
    return _assemble(em, "kern", params(slots, k.output.dtype), em.lines + [
        _store(k.output.dtype, value)])


def _combine(op: Op, dtype: str, acc: str, value: str) -> str:
    if op is Op.REDUCE_SUM:
        return f"{acc} += (uint){value};" if dtype != "float32" else f"{acc} += {value};"
    if dtype == "float32":
        return f"{acc} = ({value} > {acc} || isnan({value})) ? {value} : {acc};"
    return f"{acc} = max({acc}, {value});"


def reduce_source(k: Kernel) -> str:
    em = CEmitter(index_type(k))
    dtype = k.body.dtype
    outer = unflatten(em, "gid", k.reduced_shape)
    rshape = [k.shape[a] for a in k.reduce_axes]
    ident = reduce_identity(k.reduce_op, dtype)
    acc_type = "uint" if (k.reduce_op is Op.REDUCE_SUM and dtype != "float32") else REG_TYPE[dtype]
    init = "-INFINITY" if ident == -math.inf else (f"{ident}" if dtype != "float32" else "0.0f")
    em.lines.append(f"  {acc_type} acc = {init};")
    em.lines.append(f"  for ({em.index_type} r = 0; r < {em.iconst(math.prod(rshape))}; r++) {{")
    inner = unflatten(em, "r", rshape)
    idx = list(outer)
    for axis, i in zip(k.reduce_axes, inner, strict=True):
        idx[axis] = i
    value = lower_expr(em, k.body, Point(idx, k.shape), k.inputs, range(len(k.inputs)))
    em.lines.append("  " + _combine(k.reduce_op, dtype, "acc", value))
    em.lines.append("  }")
    acc = wrap("as_int(acc)", dtype) if acc_type == "uint" else "acc"
    acc_value = em.stmt(REG_TYPE[dtype], acc)
    value = _epilogue(em, k, acc_value)
    slots = [STORE_TYPE[a.buffer.dtype] for a in k.inputs]
    return _assemble(em, "kern", params(slots, k.output.dtype), em.lines + [
        _store(k.output.dtype, value)])


def _epilogue(em: CEmitter, k: Kernel, acc: str) -> str:
    if k.epilogue is None:
        return acc
    idx = unflatten(em, "gid", k.output.shape)
    return lower_expr(em, k.epilogue, Point(idx, k.output.shape, "gid"), k.inputs,
                      range(len(k.inputs)), acc=acc)


@dataclass(frozen=True)
class GemmShape:
    b: int
    m: int
    n: int
    k: int
    mp: int
    np_: int
    kp: int


def gather_source(k: Kernel, operand: int, gs: GemmShape) -> str:
    """Operand 0 (a) as padded (b, M, K) or operand 1 (b) as (b, K, N), in the GEMM's dtype."""
    c = classify(k)
    em = CEmitter(index_type(k, gs.b * gs.mp * gs.kp, gs.b * gs.kp * gs.np_))
    if operand == 0:
        layout = [("b", gs.b, 1), ("m", gs.mp, 1), ("k", gs.kp, 1)]
        bounds = (("m", gs.m), ("k", gs.k))
    else:
        layout = [("b", gs.b, 1), ("k", gs.kp, 1), ("n", gs.np_, 1)]
        bounds = (("k", gs.k), ("n", gs.n))
    coords = packed_coords(em, "gid", layout)
    valid = None
    for name, size in bounds:
        cond = em.icmp("<", coords[name], em.iconst(size))
        valid = cond if valid is None else em.band(valid, cond)
    idx = scatter_index(em, c, coords)
    value = lower_expr(em, k.body.srcs[operand], Point(idx, k.shape), k.inputs,
                       range(len(k.inputs)), valid=valid)
    out = k.body.dtype
    slots = [STORE_TYPE[a.buffer.dtype] for a in k.inputs]
    return _assemble(em, "kern", params(slots, out), em.lines + [_store(out, value)])


def contraction_epilogue_source(k: Kernel, gs: GemmShape) -> str:
    """Reads the GEMM result (last parameter slot) and applies the kernel's epilogue."""
    c = classify(k)
    em = CEmitter(index_type(k, gs.b * gs.mp * gs.np_))
    red = unflatten(em, "gid", k.reduced_shape)
    parts = {}
    for key, axes in (("b", c.batch_axes), ("m", c.m_axes), ("n", c.n_axes)):
        parts[key] = flatten(em, [red[a] for a in axes], [k.shape[a] for a in axes])
    addr = em.iarith("+", em.iarith("*", em.iarith("+", em.iarith(
        "*", parts["b"], em.iconst(gs.mp)), parts["m"]), em.iconst(gs.np_)), parts["n"])
    slot = len(k.inputs)
    acc = em.load(slot, k.body.dtype, addr, None)
    value = _epilogue(em, k, acc)
    slots = [STORE_TYPE[a.buffer.dtype] for a in k.inputs] + [STORE_TYPE[k.body.dtype]]
    return _assemble(em, "kern", params(slots, k.output.dtype), em.lines + [
        _store(k.output.dtype, value)])


def gemm_shape(k: Kernel, gemm: Gemm) -> GemmShape:
    c = classify(k)
    t = gemm.tiling
    return GemmShape(c.b, c.m, c.n, c.k, padded(c.m, t.bm), padded(c.n, t.bn), padded(c.k, t.bk))


class OpenCLExecutor:
    """Runs graphs on one OpenCL device; keeps built programs for the process."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.cl = rt.cl
        self.gemms: dict[str, Gemm] = {}
        self.group_size = min(64, int(rt.device.max_work_group_size))

    def gemm(self, dtype: str) -> Gemm:
        if dtype not in self.gemms:
            self.gemms[dtype] = Gemm(self.rt, dtype)
        return self.gemms[dtype]

    def upload(self, array: np.ndarray) -> Any:
        mf = self.cl.mem_flags
        data = np.ascontiguousarray(array)
        return self.cl.Buffer(self.rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=data)

    def alloc(self, numel: int, dtype: str) -> Any:
        size = max(1, numel) * np.dtype(NUMPY_DTYPES[dtype]).itemsize
        return self.cl.Buffer(self.rt.context, self.cl.mem_flags.READ_WRITE, size)

    def launch(self, program: str, name: str, args: list[Any], n: int) -> None:
        """One work-item per element, in work-groups of a fixed size (the kernels guard
        gid < n): a fixed size lets PoCL reuse one compiled work-group function."""
        kernel = self.rt.kernel(program, name)
        kernel.set_args(*args, np.int64(n))
        local = self.group_size
        self.cl.enqueue_nd_range_kernel(self.rt.queue, kernel, (padded(n, local),), (local,))

    def sources(self, k: Kernel) -> list[str]:
        """The generated kernels of one scheduled Kernel (three for a contraction)."""
        if k.kind == "contraction":
            gs = gemm_shape(k, self.gemm(k.body.dtype))
            return [gather_source(k, 0, gs), gather_source(k, 1, gs),
                    contraction_epilogue_source(k, gs)]
        return [reduce_source(k) if k.kind == "reduce" else elementwise_source(k)]

    def run(self, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = check_inputs(graph, inputs)
        sched = schedule(graph)
        debug = debug_level() > 0
        # One program for the whole graph: one compiler invocation instead of one per kernel.
        names: list[list[str]] = []
        parts: list[str] = []
        for k in sched.kernels:
            names.append([])
            for source in self.sources(k):
                name = f"k{len(parts)}"
                names[-1].append(name)
                parts.append(source.replace("void kern(", f"void {name}(")
                             .replace("rq_m", f"{name}_rq_m").replace("rq_s", f"{name}_rq_s"))
        program = "\n".join(parts)
        bufs: dict[int, Any] = {}
        for name, buf in sched.inputs.items():
            bufs[id(buf)] = self.upload(values[name])
        for buf in sched.consts:
            bufs[id(buf)] = self.upload(np.asarray(buf.data, NUMPY_DTYPES[buf.dtype]))
        for k, kernel_names in zip(sched.kernels, names, strict=True):
            out = bufs.get(id(k.output))
            if out is None:
                out = bufs[id(k.output)] = self.alloc(k.output.numel, k.output.dtype)
            ins = [bufs[id(a.buffer)] for a in k.inputs]
            started = time.perf_counter()
            if k.kind == "contraction":
                self.contraction(k, ins, out, program, kernel_names)
            else:
                self.launch(program, kernel_names[0], ins + [out], k.output.numel)
            if debug:
                self.rt.queue.finish()
                shown = [p for p, n in zip(parts, sum(names, []), strict=True)
                         if n in kernel_names]
                if k.kind == "contraction":
                    shown.append(self.gemm(k.body.dtype).source)
                debug_kernel("opencl", k, time.perf_counter() - started, shown)
        results = {}
        for name, buf in sched.outputs.items():
            host = np.empty(buf.shape, NUMPY_DTYPES[buf.dtype])
            self.cl.enqueue_copy(self.rt.queue, host, bufs[id(buf)])
            results[name] = host
        self.rt.queue.finish()
        return {name: results[name] for name in graph.outputs}

    def contraction(self, k: Kernel, ins: list[Any], out: Any, program: str,
                    names: list[str]) -> None:
        """Gather both operands (zero-padded to the tiling), GEMM, epilogue."""
        dtype = k.body.dtype
        gemm = self.gemm(dtype)
        gs = gemm_shape(k, gemm)
        a = self.alloc(gs.b * gs.mp * gs.kp, dtype)
        b = self.alloc(gs.b * gs.kp * gs.np_, dtype)
        c = self.alloc(gs.b * gs.mp * gs.np_, dtype)
        self.launch(program, names[0], ins + [a], gs.b * gs.mp * gs.kp)
        self.launch(program, names[1], ins + [b], gs.b * gs.kp * gs.np_)
        gemm.enqueue(a, b, c, gs.mp, gs.np_, gs.kp, gs.b)
        self.launch(program, names[2], ins + [c, out], k.output.numel)


_EXECUTORS: dict[int, OpenCLExecutor] = {}


def run(graph: Graph, inputs: dict[str, np.ndarray], device: str | None = None,
        **_: Any) -> dict[str, np.ndarray]:
    """The `opencl` backend (see `compiler.backends`); `device` is a selector, else
    DOZEN_DEVICE, else the first GPU, else the first OpenCL device."""
    rt = runtime(device)
    executor = _EXECUTORS.get(id(rt))
    if executor is None:
        executor = _EXECUTORS[id(rt)] = OpenCLExecutor(rt)
    return executor.run(graph, inputs)


def device_name(device: str | None = None) -> str:
    return runtime(device).name
