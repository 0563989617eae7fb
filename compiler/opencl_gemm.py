"""A tiled OpenCL GEMM: local-memory tiles, register blocking, float4 traffic, double buffering.

C[b] = A[b] @ B[b] for row-major A (M x K), B (K x N), C (M x N), batched over the third
NDRange axis. The kernel needs M, N multiples of the block tile and K a multiple of BK;
the graph backend gathers operands into zero-padded buffers of that shape, so every
contraction (matmul, conv as implicit im2col) runs through this one kernel.

Each work-group computes a BM x BN block of C with (BM/TM) x (BN/TN) work-items; each
work-item keeps a TM x TN block of accumulators in registers. Its rows are split into
float4 groups spaced BM/(TM/4) apart (likewise columns) so that the work-items of a warp
read consecutive float4s of local memory: no bank conflicts, and coalesced float4
stores of C. The A tile is stored transposed (As[k][m]) so both operands are read as
float4 rows. Global loads of tile k+1 go to registers while tile k is multiplied, then
into the second local buffer: one barrier per K step.

The integer flavour (int32 lanes holding int8 data, as the chip keeps them) accumulates
in uint so that overflow wraps modulo 2^32 exactly as isa/model.py NUMERICS says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GemmTiling:
    """Block tile BM x BN x BK and per-work-item register tile TM x TN (multiples of 4)."""

    bm: int = 128
    bn: int = 128
    bk: int = 16
    tm: int = 8
    tn: int = 8

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    def check(self) -> None:
        if self.tm % 4 or self.tn % 4 or self.bk % 4:
            raise ValueError(f"{self}: TM, TN and BK must be multiples of 4")
        if self.bm % self.tm or self.bn % self.tn:
            raise ValueError(f"{self}: the block tile must be a multiple of the register tile")
        if (self.bm * self.bk) % (4 * self.threads) or (self.bn * self.bk) % (4 * self.threads):
            raise ValueError(f"{self}: tiles must load as whole float4s per work-item")


#: Big tiles for discrete GPUs (NVIDIA, AMD), small ones for CPUs and mobile GPUs. The GPU
#: tiling was the fastest of a sweep on an H100 (scripts/gpu_opencl_h100.py --sweep): 128
#: work-items, 24 KiB of local memory, ~166 registers; devices that cannot hold it get
#: MID_TILING or SMALL_TILING.
GPU_TILING = GemmTiling(64, 128, 16, 8, 8)
MID_TILING = GemmTiling(64, 64, 16, 4, 4)
SMALL_TILING = GemmTiling(32, 32, 16, 4, 4)
CPU_TILING = GemmTiling(64, 64, 16, 8, 8)


def tiling_for(device: Any) -> GemmTiling:
    """Parameters chosen per device: big tiles where local memory and registers allow."""
    import pyopencl as cl

    if device.type & cl.device_type.CPU:
        return CPU_TILING
    if device.type & cl.device_type.GPU:
        for tiling in (GPU_TILING, MID_TILING):
            local_bytes = 2 * 4 * tiling.bk * (tiling.bm + tiling.bn)
            if (int(device.local_mem_size) >= local_bytes
                    and device.max_work_group_size >= tiling.threads):
                return tiling
    return SMALL_TILING


def gemm_source(tiling: GemmTiling, dtype: str = "float32", warp_x: int = 8,
                column_loads: bool = False, vector_pointers: bool = True) -> str:
    """OpenCL C for the kernel `gemm(A, B, C, M, N, K, strideA, strideB, strideC)`.

    Every loop over the register tile is unrolled here, in Python, into scalar variables:
    some OpenCL compilers leave `#pragma unroll` loops rolled, and a rolled loop turns
    the register arrays into slow private memory.
    """
    tiling.check()
    t = tiling
    is_int = dtype != "float32"
    scalar, vec = ("int", "int4") if is_int else ("float", "float4")
    acc_type = "uint" if is_int else "float"
    rows_a = t.bm // t.tm * 4  # spacing of a work-item's float4 row groups
    cols_b = t.bn // t.tn * 4
    loads_a = t.bm * t.bk // (4 * t.threads)
    loads_b = t.bn * t.bk // (4 * t.threads)
    lanes = "xyzw"

    def mac(i: int, j: int) -> str:
        if is_int:
            return f"c{i}_{j} += (uint)a{i} * (uint)b{j};"
        return f"c{i}_{j} = mad(a{i}, b{j}, c{i}_{j});"

    lines: list[str] = []
    emit = lines.append

    def ld(space: str, ptr: str) -> str:
        """A 16-byte load. vload4 only promises element alignment, so some compilers split
        it into four loads; a float4 pointer tells them the address is 16-byte aligned."""
        if vector_pointers:
            return f"*((__{space} const {vec}*)({ptr}))"
        return f"vload4(0, {ptr})"

    def st(space: str, value: str, ptr: str) -> str:
        if vector_pointers:
            return f"*((__{space} {vec}*)({ptr})) = {value};"
        return f"vstore4({value}, 0, {ptr});"
    emit(f"__kernel __attribute__((reqd_work_group_size({t.bn // t.tn}, {t.bm // t.tm}, 1)))")
    emit(f"void gemm(__global const {scalar}* restrict A, __global const {scalar}* restrict B,")
    emit(f"          __global {scalar}* restrict C, const int M, const int N, const int K,")
    emit("          const long strideA, const long strideB, const long strideC) {")
    emit(f"  __local {scalar} As[2][{t.bk}][{t.bm}] __attribute__((aligned(16)));")
    emit(f"  __local {scalar} Bs[2][{t.bk}][{t.bn}] __attribute__((aligned(16)));")
    emit(f"  const int tid = get_local_id(1) * {t.bn // t.tn} + get_local_id(0);")
    grid_x, grid_y = t.bn // t.tn, t.bm // t.tm
    if (0 < warp_x <= 32 and grid_x % warp_x == 0 and grid_y % (32 // warp_x) == 0
            and t.threads % 32 == 0):  # a warp covers warp_x x (32 / warp_x) work-items
        wy, across = 32 // warp_x, t.bn // t.tn // warp_x
        emit(f"  const int tx = (tid / 32) % {across} * {warp_x} + tid % {warp_x};")
        emit(f"  const int ty = (tid / 32) / {across} * {wy} + (tid % 32) / {warp_x};")
    else:
        emit("  const int tx = get_local_id(0), ty = get_local_id(1);")
    emit("  const long batch = get_global_id(2);")
    emit(f"  A += batch * strideA + (long)get_group_id(1) * {t.bm} * K;")
    emit(f"  B += batch * strideB + (long)get_group_id(0) * {t.bn};")
    emit(f"  C += batch * strideC + (long)get_group_id(1) * {t.bm} * N"
         f" + (long)get_group_id(0) * {t.bn};")
    for l in range(loads_a):
        if column_loads:  # consecutive work-items take consecutive rows: no bank conflicts
            emit(f"  const int ar{l} = (tid + {l * t.threads}) % {t.bm};")
            emit(f"  const int ac{l} = ((tid + {l * t.threads}) / {t.bm}) * 4;")
        else:
            emit(f"  const int ar{l} = (tid + {l * t.threads}) / {t.bk // 4};")
            emit(f"  const int ac{l} = ((tid + {l * t.threads}) % {t.bk // 4}) * 4;")
        emit(f"  __global const {scalar}* pa{l} = A + (long)ar{l} * K + ac{l};")
        emit(f"  {vec} ra{l};")
    for l in range(loads_b):
        emit(f"  const int br{l} = (tid + {l * t.threads}) / {t.bn // 4};")
        emit(f"  const int bc{l} = ((tid + {l * t.threads}) % {t.bn // 4}) * 4;")
        emit(f"  __global const {scalar}* pb{l} = B + (long)br{l} * N + bc{l};")
        emit(f"  {vec} rb{l};")
    emit(f"  const long stepB = (long){t.bk} * N;")
    for i in range(t.tm):
        emit("  " + " ".join(f"{acc_type} c{i}_{j} = 0;" for j in range(t.tn)))

    def load_global() -> None:
        for l in range(loads_a):
            emit(f"    ra{l} = {ld('global', f'pa{l}')}; pa{l} += {t.bk};")
        for l in range(loads_b):
            emit(f"    rb{l} = {ld('global', f'pb{l}')}; pb{l} += stepB;")

    def store_local(buf: str) -> None:
        for l in range(loads_a):
            for c in range(4):
                emit(f"    As[{buf}][ac{l} + {c}][ar{l}] = ra{l}.{lanes[c]};")
        for l in range(loads_b):
            emit("    " + st("local", f"rb{l}", f"&Bs[{buf}][br{l}][bc{l}]"))

    emit("  {")
    load_global()
    store_local("0")
    emit("  }")
    emit("  barrier(CLK_LOCAL_MEM_FENCE);")
    emit("  int cur = 0;")
    emit(f"  for (int k0 = 0; k0 < K; k0 += {t.bk}) {{")
    emit(f"    const int more = k0 + {t.bk} < K;")
    emit("    if (more) {")
    load_global()
    emit("    }")
    emit(f"    __local const {scalar}* as = &As[cur][0][ty * 4];")
    emit(f"    __local const {scalar}* bs = &Bs[cur][0][tx * 4];")
    emit("    #pragma unroll")
    emit(f"    for (int k = 0; k < {t.bk}; k++) {{")
    for g in range(t.tm // 4):
        emit(f"      const {vec} va{g} = {ld('local', f'as + k * {t.bm} + {g * rows_a}')};")
    for g in range(t.tn // 4):
        emit(f"      const {vec} vb{g} = {ld('local', f'bs + k * {t.bn} + {g * cols_b}')};")
    for i in range(t.tm):
        emit(f"      const {scalar} a{i} = va{i // 4}.{lanes[i % 4]};")
    for j in range(t.tn):
        emit(f"      const {scalar} b{j} = vb{j // 4}.{lanes[j % 4]};")
    for i in range(t.tm):
        emit("      " + " ".join(mac(i, j) for j in range(t.tn)))
    emit("    }")
    emit("    if (more) {")
    store_local("cur ^ 1")
    emit("    }")
    emit("    barrier(CLK_LOCAL_MEM_FENCE);")
    emit("    cur ^= 1;")
    emit("  }")
    conv = "(int)" if is_int else ""
    for i in range(t.tm):
        row = f"(ty * 4 + {(i // 4) * rows_a + i % 4})"
        for g in range(t.tn // 4):
            parts = ", ".join(f"{conv}c{i}_{4 * g + c}" for c in range(4))
            emit("  " + st("global", f"({vec})({parts})",
                           f"C + (long){row} * N + tx * 4 + {g * cols_b}"))
    emit("}")
    return "\n".join(lines) + "\n"


def padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


class Gemm:
    """The GEMM kernel built for one runtime, tiling and dtype."""

    def __init__(self, rt: Any, dtype: str = "float32", tiling: GemmTiling | None = None,
                 options: str = "", **variant: Any):
        self.rt = rt
        self.dtype = dtype
        self.tiling = tiling or tiling_for(rt.device)
        self.source = gemm_source(self.tiling, dtype, **variant)
        self.kernel = rt.kernel(self.source, "gemm", options)

    def enqueue(self, a_buf: Any, b_buf: Any, c_buf: Any, m: int, n: int, k: int,
                batch: int = 1, wait_for: Any = None) -> Any:
        """Launch on device buffers already padded to the tiling; returns the event."""
        t = self.tiling
        if m % t.bm or n % t.bn or k % t.bk:
            raise ValueError(f"gemm {m}x{n}x{k} is not padded to the tiling {t}")
        i64 = np.int64
        self.kernel.set_args(a_buf, b_buf, c_buf, np.int32(m), np.int32(n), np.int32(k),
                             i64(m * k), i64(k * n), i64(m * n))
        local = (t.bn // t.tn, t.bm // t.tm, 1)
        global_ = (n // t.tn, m // t.tm, batch)
        return self.rt.cl.enqueue_nd_range_kernel(self.rt.queue, self.kernel, global_, local,
                                                  wait_for=wait_for)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Host convenience: (…, M, K) @ (…, K, N) with padding; used by tests and benchmarks."""
        cl, t = self.rt.cl, self.tiling
        np_dtype = np.float32 if self.dtype == "float32" else np.int32
        a3 = np.asarray(a, np_dtype).reshape(-1, *a.shape[-2:])
        b3 = np.asarray(b, np_dtype).reshape(-1, *b.shape[-2:])
        batch, m, k = a3.shape
        n = b3.shape[2]
        mp, np_, kp = padded(m, t.bm), padded(n, t.bn), padded(k, t.bk)
        ap = np.zeros((batch, mp, kp), np_dtype)
        ap[:, :m, :k] = a3
        bp = np.zeros((batch, kp, np_), np_dtype)
        bp[:, :k, :n] = b3
        mf = cl.mem_flags
        a_buf = cl.Buffer(self.rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=ap)
        b_buf = cl.Buffer(self.rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=bp)
        c = np.empty((batch, mp, np_), np_dtype)
        c_buf = cl.Buffer(self.rt.context, mf.WRITE_ONLY, c.nbytes)
        self.enqueue(a_buf, b_buf, c_buf, mp, np_, kp, batch)
        cl.enqueue_copy(self.rt.queue, c, c_buf)
        return c[:, :m, :n].reshape(*a.shape[:-2], m, n)


def time_gemm(gemm: Gemm, m: int, n: int, k: int, reps: int = 10, warmup: int = 3,
              seed: int = 0) -> tuple[float, float]:
    """Median kernel seconds of an (m, n, k) fp32 GEMM on device buffers, from OpenCL events;
    also returns the max relative error of one result row block against numpy."""
    cl, rt = gemm.rt.cl, gemm.rt
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    mf = cl.mem_flags
    a_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a)
    b_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=b)
    c_buf = cl.Buffer(rt.context, mf.READ_WRITE, m * n * 4)
    for _ in range(warmup):
        gemm.enqueue(a_buf, b_buf, c_buf, m, n, k)
    rt.queue.finish()
    times = []
    for _ in range(reps):
        event = gemm.enqueue(a_buf, b_buf, c_buf, m, n, k)
        event.wait()
        times.append((event.profile.end - event.profile.start) * 1e-9)
    c = np.empty((m, n), np.float32)
    cl.enqueue_copy(rt.queue, c, c_buf)
    rows = slice(0, min(m, 64))
    want = a[rows].astype(np.float64) @ b.astype(np.float64)
    err = float(np.abs(c[rows] - want).max() / max(np.abs(want).max(), 1e-30))
    return float(np.median(times)), err
