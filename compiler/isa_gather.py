"""Lane-strided gathers of int8 rows on the matrix unit.

A strided convolution reads its image at every `stride`-th column. The vector unit can only
move whole rows, and DMA reads contiguous lanes, so an elementwise copy gathers such columns
through transposes (several passes over each row block). The matrix array gathers them in
one: a MATMUL whose weights are a 0/1 selection matrix W[k][j] = (stride*j + shift == k + 16d)
writes, for every streamed row, lane j = lane `stride*j + shift - 16d` of that row. An output
chunk of n lanes reads at most ceil((stride*(n-1) + shift + 1) / n) source chunks, so it
costs two or three MATMULs per streamed row block (int8 values times one, summed in int32:
exact), and the store unit writes the accumulator rows back as int8.

    dst[job.dst + shift_dst + r*width + j] = src[job.src + shift + r*rstride + stride*j]

for every job, shift and row r < job.rows, j < width (a job may instead send row ranges
to several destinations: a convolution's im2col rows for several kernel rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.isa_builder import CompileError, Credits, DramBuffer, Emitter, acc, sp
from isa.config import ChipConfig
from isa.table import Fmt, MatType


@dataclass(frozen=True)
class GatherJob:
    """`rows` source rows `rstride` elements apart from element `src`; their gathered rows
    go `width` elements apart from element `dst` of the destination, or with `targets`
    (dst, lo, hi), rows lo..hi-1 go to each target's dst on (a row may go to several)."""

    src: int
    dst: int
    rows: int
    targets: tuple[tuple[int, int, int], ...] = ()

    def stores(self) -> tuple[tuple[int, int, int], ...]:
        return self.targets or ((self.dst, 0, self.rows),)


def gather_fits(cfg: ChipConfig, shifts: list[int], stride: int, width: int) -> bool:
    """Whether `emit_lane_gather` has scratchpad room for these shifts: the selection
    matrices plus two buffers of at least one row of source chunks."""
    n = cfg.n
    if stride < 1 or width < 1 or not shifts or min(shifts) < 0:
        return False
    nx = -(-(max(shifts) + stride * (width - 1) + 1) // n)
    return _weights(n, shifts, stride, width)[0].shape[0] + 2 * nx <= cfg.sp_rows


def _weights(n: int, shifts: list[int], stride: int, width: int
             ) -> tuple[np.ndarray, dict[tuple[int, int, int], int]]:
    """The selection matrices, stacked, and the first row of each by (shift, out chunk, d)."""
    mats: list[np.ndarray] = []
    index: dict[tuple[int, int, int], int] = {}
    seen: dict[bytes, int] = {}
    for si, shift in enumerate(shifts):
        for q in range(-(-width // n)):
            lanes = min(n, width - q * n)
            for d in range(n):
                w = np.zeros((n, n), np.int8)
                for j in range(lanes):
                    k = stride * j + shift - n * d
                    if 0 <= k < n:
                        w[k, j] = 1
                if not w.any():
                    if stride * (lanes - 1) + shift < n * d:
                        break
                    continue
                key = w.tobytes()
                if key not in seen:
                    seen[key] = len(mats) * n
                    mats.append(w)
                index[(si, q, d)] = seen[key]
    return np.concatenate(mats), index


def emit_lane_gather(em: Emitter, src: DramBuffer, dst: DramBuffer, jobs: list[GatherJob],
                     rstride: int, shifts: list[tuple[int, int]], stride: int,
                     width: int) -> None:
    """Gather `shifts` = [(source shift, destination offset)] of every job's rows (see the
    module docstring). Loads, MATMULs and stores are double-buffered against each other."""
    cfg, n = em.cfg, em.cfg.n
    lane_shifts = [s for s, _ in shifts]
    table, wrow = _weights(n, lane_shifts, stride, width)
    nx = -(-(max(lane_shifts) + stride * (width - 1) + 1) // n)  # source chunks per row
    res = table.shape[0]
    block = min(cfg.acc_rows // 2, (cfg.sp_rows - res) // (2 * nx), 4096)
    if block < 1:
        raise CompileError("lane gather does not fit the scratchpad")
    wbuf = em.constant("gather.select", table)
    em.emit("load", sram=sp(0), dram=wbuf.addr, stride=n, rows=res, cols=n, fmt=int(Fmt.I8))
    need = max(lane_shifts) + stride * (width - 1) + 1  # source elements read per row
    blocks = [(job, r0, min(block, job.rows - r0)) for job in jobs
              for r0 in range(0, job.rows, block)]
    data_free, acc_free = Credits(2), Credits(2)
    qs = -(-width // n)

    def emit_loads(b: int) -> None:
        job, r0, rows = blocks[b]
        base = res + (b % 2) * nx * block
        start = len(em.code)
        for xc in range(nx):
            em.emit("load", sram=sp(base + xc * block),
                    dram=src.addr + job.src + r0 * rstride + xc * n, stride=rstride,
                    rows=rows, cols=min(n, need - xc * n), fmt=int(Fmt.I8))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", data_free.need(b))

    emit_loads(0)
    item = 0
    for b, (job, r0, rows) in enumerate(blocks):
        base = res + (b % 2) * nx * block
        for si, (_, dst_off) in enumerate(shifts):
            for q in range(qs):
                region = (item % 2) * block
                first = len(em.code)
                acc_flag = 0
                for d in range(n):
                    xc = stride * q + d
                    if (si, q, d) not in wrow or xc >= nx:
                        continue
                    em.emit("matmul", dst=region, inp=base + xc * block, wgt=wrow[(si, q, d)],
                            rows=rows, acc=acc_flag, dtype=int(MatType.I8))
                    acc_flag = 1
                if not acc_flag:
                    raise CompileError("internal: lane gather chunk reads nothing")
                last_item = si == len(shifts) - 1 and q == qs - 1
                em.flag(len(em.code) - 1, "push_next", *(("push_prev",) if last_item else ()))
                if si == 0 and q == 0:
                    em.flag(first, "pop_prev")
                em.pops(first, "compute", "pop_next", acc_free.need(item))
                if si == 0 and q == 0 and b + 1 < len(blocks):
                    emit_loads(b + 1)
                at = len(em.code)
                for tdst, lo, hi in job.stores():
                    a, b_ = max(lo, r0), min(hi, r0 + rows)
                    if a < b_:
                        em.emit("store", sram=acc(region + a - r0),
                                dram=dst.addr + tdst + dst_off + (a - lo) * width + q * n,
                                stride=width, rows=b_ - a, cols=min(n, width - q * n),
                                fmt=int(Fmt.I8))
                if len(em.code) == at:
                    em.sync("store")
                em.flag(at, "pop_prev")
                em.flag(len(em.code) - 1, "push_prev")
                item += 1
