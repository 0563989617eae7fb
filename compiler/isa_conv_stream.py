"""What the pixel-streamed convolutions share: stride 1 (`compiler.isa_conv_pixels`) and
stride 2 from phase planes (`compiler.isa_conv_strided`).

Both copy the image once into a pixel-major Xt (one row per padded pixel, n channels per
row), then stream output pixels as MATMUL rows past stationary n x n weight blocks. They
differ only in how Xt is laid out and which of its rows each kernel position reads; given
that as a `PixelStream`, this module plans the row blocks and steps, emits the
double-buffered A/B loads with the bias preloaded into each accumulator half, the
epilogue, the transpose back to channel rows and the stores, and does the transposing
pass that builds Xt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compiler.isa_builder import Credits, DramBuffer, Emitter, acc, sp
from compiler.isa_gemm import FreeTokens, Tile
from isa.table import Fmt, MatType, MoveFn

if TYPE_CHECKING:
    from compiler.isa_conv_pixels import PixelConv
    from compiler.isa_conv_strided import StridedConv


@dataclass(frozen=True)
class PadSource:
    """A zero-padded image not yet written: padded element (..., y, x) is `buf` element
    offset + outer . (...) + y*row_stride + x where y_lo <= y < y_hi and x_lo <= x < x_hi,
    and zero elsewhere."""

    buf: DramBuffer
    offset: int
    row_stride: int
    y_lo: int
    y_hi: int
    x_lo: int
    x_hi: int
    outer: tuple[int, ...]  # strides of the leading axes (batch, channel)

    def serves(self, conv: PixelConv, view, padded: DramBuffer) -> bool:
        """Whether `conv` reads the whole padded image of this source, symmetrically
        padded (the pixel-major copy then takes its rows straight from `buf`)."""
        p = conv.pad
        return view.offset == 0 and conv.offset == 0 and padded.shape[-2:] == (conv.ht, conv.wt) \
            and conv.ch_stride == conv.ht * conv.wt and len(self.outer) >= 1 \
            and (self.y_lo, self.y_hi, self.x_lo, self.x_hi) == (p, conv.ht - p, p, conv.wt - p)


@dataclass(frozen=True)
class StreamUnit:
    """One K unit: the A source whose rows it reads and, per kernel position (one weight
    block each, in this order), the A-row offset it reads at and its first row of the
    (K*K*cin, cout) weights."""

    source: int
    reads: tuple[tuple[int, int], ...]  # (A-row offset, weight row)


@dataclass(frozen=True)
class PixelStream:
    """A convolution as pixel-major A blocks times stationary weight blocks.

    Output pixel o = oy*pitch + ox of an A block reads A row o + offset, and A row r of
    source i for the output-row block from oy0 on is Xt row
    sources[i] + (oy0*pitch + r)*spread."""

    name: str  # the constants' name prefix
    oh: int
    ow: int
    cout: int
    out_strides: tuple[int, int, int]  # output elements between channels, rows, columns
    pitch: int  # accumulator rows per output row: OW pixels and junk after them
    halo: int  # A rows a block reads past its pitch * rows
    spread: int  # Xt rows between consecutive A rows
    sources: tuple[int, ...]
    units: tuple[StreamUnit, ...]
    # True: an output-row block's sources are all loaded on its first step and kept while
    # its N tiles run; False: each step loads its own units' sources, double-buffered
    a_resident: bool
    group_sizes: tuple[int, ...]  # the units per step tried

    @property
    def most_reads(self) -> int:
        return max(len(u.reads) for u in self.units)

    def a_slots(self, group: int) -> int:
        """A blocks the scratchpad holds at once."""
        return len(self.sources) if self.a_resident else 2 * group

    def plan(self, cfg, resident_rows: int, temps: int) -> tuple[int, int] | None:
        """(output rows per block, units per step) that fit the scratchpad and an
        accumulator half, or None: the most rows (the longest MATMULs), then the largest
        step."""
        n, pitch = cfg.n, self.pitch
        nxo = -(-self.ow // n)
        best = None
        for group in sorted({min(len(self.units), g) for g in self.group_sizes}, reverse=True):
            rb = 0
            while rb < self.oh:
                mb = (rb + 1) * pitch
                need = resident_rows + self.a_slots(group) * (mb + self.halo) \
                    + 2 * group * self.most_reads * n + 2 * (rb + 1) * nxo * n + temps * mb
                if rb * pitch + nxo * n > cfg.acc_rows // 2 or need > cfg.sp_rows:
                    break
                rb += 1
            if rb and (best is None or rb > best[0]):
                best = (rb, group)
        return best


def emit_stream(em: Emitter, stream: PixelStream, xt: DramBuffer, weights: np.ndarray,
                epilogue, out: DramBuffer, rb: int, group: int,
                bias: np.ndarray | None) -> None:
    """out = epilogue(conv + bias) from the pixel-major copy `xt`; `weights` is
    (cout, K*K*cin) with K in (kh, kw, cin) order; `bias` (per output channel, or None) is
    DMAed into each accumulator tile as its start value. Accumulator halves alternate
    between tiles, so one tile's bias loads while the other's epilogue runs."""
    n = em.cfg.n
    nt, pitch, units = stream.cout // n, stream.pitch, stream.units
    # B blocks [N tile][unit][position][n rows][n lanes]: a step's blocks are one DMA
    wt = weights.T
    bbuf = em.constant(f"{stream.name}.weights", np.stack(
        [wt[r0:r0 + n, t * n:(t + 1) * n] for t in range(nt) for u in units
         for _, r0 in u.reads]).astype(np.int8))
    unit_at = np.cumsum([0] + [len(u.reads) for u in units])  # first block of each unit
    per_t = int(unit_at[-1])
    res = epilogue.resident_rows() if epilogue is not None else 0
    temps = epilogue.temp_regions if epilogue is not None else 0
    mb = rb * pitch
    a_pitch = mb + stream.halo
    a_base = res
    b_base = a_base + stream.a_slots(group) * a_pitch
    b_step = group * stream.most_reads * n
    st_base = b_base + 2 * b_step
    nxo = -(-stream.ow // n)
    st_size = rb * nxo * n
    t_base = st_base + 2 * st_size
    assert t_base + temps * mb <= em.cfg.sp_rows
    if epilogue is not None:
        epilogue.mb = mb
        if res:
            epilogue.emit_resident(em, 0)
    count = -(-len(units) // group)
    bounds = [len(units) * i // count for i in range(count + 1)]
    groups = list(zip(bounds[:-1], bounds[1:], strict=True))
    steps = [(oy0, t, gi) for oy0 in range(0, stream.oh, rb) for t in range(nt)
             for gi in range(len(groups))]
    free = FreeTokens()  # compute -> load: steps done, accumulator halves read out
    stage_free = Credits(2)
    half_rows = em.cfg.acc_rows // 2
    bbias = None
    if bias is not None:
        narrow = -128 <= int(bias.min()) and int(bias.max()) <= 127
        bbias = em.constant(f"{stream.name}.bias", bias.reshape(nt, n).astype(
            np.int8 if narrow else np.int32))
    tiles_before = [0] * len(steps)  # tiles started before each step
    for i in range(1, len(steps)):
        tiles_before[i] = tiles_before[i - 1] + int(steps[i - 1][2] == len(groups) - 1)

    def a_slot(s: int, u: int, g0: int) -> int:
        """First scratchpad row of the A block unit u reads in step s."""
        if stream.a_resident:
            return a_base + units[u].source * a_pitch
        return a_base + ((s % 2) * group + u - g0) * a_pitch

    def emit_loads(s: int) -> None:
        oy0, t, gi = steps[s]
        g0, g1 = groups[gi]
        start = len(em.code)
        load_a = not stream.a_resident or (t == 0 and gi == 0)
        # A kept for a whole row block is single-buffered (its loads wait for the previous
        # step), B and per-step A double-buffered
        owe = free.need(("step", s - 1 if stream.a_resident and load_a else s - 2))
        if load_a:
            rows = min(rb, stream.oh - oy0) * pitch + stream.halo
            if stream.a_resident:
                blocks = [(a_base + i * a_pitch, i) for i in range(len(stream.sources))]
            else:
                blocks = [(a_slot(s, u, g0), units[u].source) for u in range(g0, g1)]
            for slot, i in blocks:
                dram = xt.addr + (stream.sources[i] + oy0 * pitch * stream.spread) * n
                em.emit("load", sram=sp(slot), dram=dram, stride=stream.spread * n, rows=rows,
                        cols=n, fmt=int(Fmt.I8))
        em.emit("load", sram=sp(b_base + (s % 2) * b_step),
                dram=bbuf.addr + (t * per_t + int(unit_at[g0])) * n * n, stride=n,
                rows=int(unit_at[g1] - unit_at[g0]) * n, cols=n, fmt=int(Fmt.I8))
        if bbias is not None and gi == 0:
            tile = tiles_before[s]
            at = len(em.code)
            em.emit("load", sram=acc((tile % 2) * half_rows), dram=bbias.addr + t * n
                    * bbias.esize, stride=0, rows=min(rb, stream.oh - oy0) * pitch, cols=n,
                    fmt=int(bbias.fmt))
            em.pops(at, "load", "pop_next", free.need(("half", tile - 2)))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", owe)

    # A tile's stores are spread over the next tile's steps: a burst of them would fill the
    # store queue and hold the dispatcher (and with it the compute unit) until they drain.
    pending: list[dict] = []
    per_step = 0

    def flush(count: int) -> None:
        for _ in range(min(count, len(pending))):
            spec = pending.pop(0)
            em.emit("store", spec.pop("flags", ()), **spec)

    emit_loads(0)
    tile_no = 0
    for s, (oy0, t, gi) in enumerate(steps):
        g0, g1 = groups[gi]
        nrows = min(rb, stream.oh - oy0)
        m_rows = nrows * pitch
        start = len(em.code)
        half = (tile_no % 2) * half_rows
        blk = 0
        for u in range(g0, g1):
            for offset, _ in units[u].reads:
                em.emit("matmul", dst=half, inp=a_slot(s, u, g0) + offset,
                        wgt=b_base + (s % 2) * b_step + blk * n, rows=m_rows,
                        acc=int(u > 0 or blk > 0 or bbias is not None), dtype=int(MatType.I8))
                blk += 1
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")  # this step's A and B rows are free
        free.push(("step", s))
        if s + 1 < len(steps):
            emit_loads(s + 1)
        flush(per_step)
        if gi < len(groups) - 1:
            continue
        if epilogue is not None:
            epilogue.emit_tile_compute(em, Tile(0, 0, m_rows, t * n, n, tile_no), acc(half),
                                       0, t_base, 0)
        stage = st_base + (tile_no % 2) * st_size
        first = len(em.code)
        for r in range(nrows):
            em.emit("move", dst=sp(stage + r * nxo * n), src1=acc(half + r * pitch), count=nxo,
                    fn=int(MoveFn.TRANSPOSE), dstride=n, sstride=n)
        em.flag(len(em.code) - 1, "push_next", *(("push_prev",) if bbias is not None else ()))
        if bbias is not None:
            free.push(("half", tile_no))
        em.pops(first, "compute", "pop_next", stage_free.need(tile_no))
        ostr = stream.out_strides
        tile_stores = [dict(sram=sp(stage + (r * nxo + x) * n),
                            dram=out.addr + (t * n * ostr[0] + (oy0 + r) * ostr[1] + x * n)
                            * out.esize, stride=ostr[0] * out.esize, rows=n,
                            cols=min(n, stream.ow - x * n), fmt=int(out.fmt))
                       for r in range(nrows) for x in range(nxo)]
        tile_stores[0]["flags"] = ("pop_prev",)
        tile_stores[-1]["flags"] = tile_stores[-1].get("flags", ()) + ("push_prev",)
        flush(len(pending))  # the previous tile's last stores
        pending.extend(tile_stores)
        per_step = -(-len(tile_stores) // len(groups))
        tile_no += 1
    flush(len(pending))


def transpose_in(em: Emitter, conv: PixelConv | StridedConv, pad: PadSource | None,
                 xt: DramBuffer, rows_x: int, count: int, width: int,
                 row_of: Callable[[int], int], skip_left: int = 0, clear_left: int = 0) -> None:
    """Xt[chunk][row_of(y) + x] = padded image[chunk channels, y, x] for padded rows
    y < count and x < width (zero outside the image), a row at a time: load, transpose on
    the matrix unit, store, double-buffered. The padded image is `conv.image` element
    offset + channel*ch_stride + y*wt + x, or with `pad` the unpadded image: its padding
    rows are zero-filled, and the left padding of the others (what precedes the row in
    DRAM) is left unstored (`skip_left` columns) or zero-filled (`clear_left`)."""
    n = em.cfg.n
    nc = conv.cin // n
    nxw = -(-width // n)
    in_size, tr_size = nxw * conv.cin, nc * nxw * n
    base = [0, in_size + tr_size]
    x_hi = pad.x_hi if pad is not None else conv.wt
    live = min(nxw, -(-x_hi // n))  # blocks wholly right of the image are zero-filled
    data_free, out_free = Credits(2), Credits(2)

    def blank(y: int) -> bool:
        if pad is not None:
            return not pad.y_lo <= y < pad.y_hi
        return y >= conv.ht

    def emit_loads(y: int) -> None:
        start = len(em.code)
        b = base[y % 2]
        if blank(y):
            em.sync("load")
        for x in range(0 if blank(y) else live):
            if pad is None:
                addr = conv.image.addr + conv.offset + y * conv.wt + x * n
                stride, cols = conv.ch_stride, min(n, conv.wt - x * n)
            else:
                addr = pad.buf.addr + pad.offset + y * pad.row_stride + x * n
                stride, cols = pad.outer[-1], min(n, x_hi - x * n)
            em.emit("load", sram=sp(b + x * conv.cin), dram=addr, stride=stride,
                    rows=conv.cin, cols=cols, fmt=int(Fmt.I8))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", data_free.need(y))

    emit_loads(0)
    for y in range(count):
        b = base[y % 2]
        tr = b + in_size
        start = len(em.code)
        if blank(y):
            em.emit("move", dst=sp(tr), count=tr_size, fn=int(MoveFn.FILL), dstride=1, imm=0)
        else:
            if live < nxw:
                em.emit("move", dst=sp(b + live * conv.cin), count=(nxw - live) * conv.cin,
                        fn=int(MoveFn.FILL), dstride=1, imm=0)
            for ci in range(nc):
                em.emit("move", dst=sp(tr + ci * nxw * n), src1=sp(b + ci * n), count=nxw,
                        fn=int(MoveFn.TRANSPOSE), dstride=n, sstride=conv.cin)
            for x in range(clear_left):
                em.emit("move", dst=sp(tr + x), count=nc, fn=int(MoveFn.FILL),
                        dstride=nxw * n, imm=0)
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev", "push_next")
        em.pops(start, "compute", "pop_next", out_free.need(y))
        if y + 1 < count:
            emit_loads(y + 1)
        first = len(em.code)
        x0 = 0 if blank(y) else skip_left
        for ci in range(nc):
            em.emit("store", sram=sp(tr + ci * nxw * n + x0),
                    dram=xt.addr + (ci * rows_x + row_of(y) + x0) * n, stride=n,
                    rows=width - x0, cols=n, fmt=int(Fmt.I8))
        em.flag(first, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")
