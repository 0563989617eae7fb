"""Zero-padding copies of channel-major images with channels as the DMA rows.

An elementwise copy walks the padded image row by row, so each DMA moves one channel's
image rows (a few hundred bytes for a 7x7 or 14x14 image) and pays the full DRAM latency.
Walked the other way, each DMA moves one n-column chunk of one image row for every channel
at once: the copy takes (padded rows x chunks) loads and stores, whatever the channel count.
Padding rows are stored from a zeroed block; the left padding lanes of a row's first chunk
(neighbouring pixels in DRAM) are cleared with one AND per chunk.
"""

from __future__ import annotations

import numpy as np

from compiler.isa_builder import Credits, DramBuffer, Emitter, sp
from compiler.isa_conv_stream import PadSource
from isa.table import BinaryFn, DType, Fmt, MoveFn


def pad_copy_fits(em: Emitter, pad: PadSource, shape: tuple[int, ...], dst: DramBuffer) -> bool:
    """Whether `emit_pad_copy` suits `shape` (..., C, Ht, Wt): int8, one image (leading axes
    of size 1), and more channels than padded rows (else the elementwise copy does fewer
    DMAs)."""
    if len(shape) < 3 or any(s != 1 for s in shape[:-3]) or dst.dtype != "int8" \
            or pad.buf.dtype != "int8" or pad.x_lo >= em.cfg.n:
        return False
    chans, ht = shape[-3], shape[-2]
    return chans >= ht and 3 * chans + 1 <= em.cfg.sp_rows


def emit_pad_copy(em: Emitter, pad: PadSource, shape: tuple[int, ...], dst: DramBuffer) -> None:
    """dst (contiguous `shape`) = the padded image `pad` describes."""
    n = em.cfg.n
    chans, ht, wt = shape[-3:]
    cs = pad.outer[-1]
    mask = np.full(n, -1, np.int32)
    mask[:pad.x_lo] = 0
    mbuf = em.constant("pad.mask", mask.reshape(1, n))
    mask_row, zero, bufs = 0, 1, (1 + chans, 1 + 2 * chans)
    em.emit("load", sram=sp(mask_row), dram=mbuf.addr, stride=n * 4, rows=1, cols=n,
            fmt=int(Fmt.X32))
    items = [(y, x0) for y in range(ht) for x0 in range(0, wt, n)]

    def live(y: int, x0: int) -> bool:
        return pad.y_lo <= y < pad.y_hi and x0 < pad.x_hi

    data_free, out_free = Credits(1), Credits(1)

    def emit_load(i: int) -> None:
        y, x0 = items[i]
        start = len(em.code)
        if live(y, x0):
            em.emit("load", sram=sp(bufs[i % 2]), dram=pad.buf.addr + pad.offset
                    + y * pad.row_stride + x0, stride=cs, rows=chans,
                    cols=min(n, pad.x_hi - x0), fmt=int(Fmt.I8))
        else:
            em.sync("load")
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", data_free.need(i))

    em.emit("move", dst=sp(zero), count=chans, fn=int(MoveFn.FILL), dstride=1, imm=0)
    emit_load(0)
    for i, (y, x0) in enumerate(items):
        start = len(em.code)
        if live(y, x0) and x0 < pad.x_lo:
            em.emit("binary", dst=sp(bufs[i % 2]), src1=sp(bufs[i % 2]), src2=sp(mask_row),
                    count=chans, fn=int(BinaryFn.AND), dtype=int(DType.I32), step1=1, step2=0)
        else:
            em.sync("compute")
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev", "push_next")
        em.pops(start, "compute", "pop_next", out_free.need(i))
        if i + 1 < len(items):
            emit_load(i + 1)
        em.emit("store", ("pop_prev", "push_prev"),
                sram=sp(bufs[i % 2] if live(y, x0) else zero),
                dram=dst.addr + y * wt + x0, stride=ht * wt, rows=chans,
                cols=min(n, wt - x0), fmt=int(Fmt.I8))
