"""Stride-1 convolutions with output pixels streamed through the matrix array.

With channels on rows (the GEMM of `compiler.isa_gemm`), a MATMUL streams at most `cout`
rows past each n x n image block, so every MATMUL of a 64-channel layer pays its n + 2
fill cycles for 64 rows. Here the weights are the stationary block and the image's pixels
stream: up to a whole accumulator of rows per MATMUL, whatever `cout` is.

The image (already padded, pitch Wt) is first transposed once into a pixel-major copy Xt,
one row per padded pixel and n channels per row, chunk by chunk. Its rows keep a pitch
P = Wt - p (the p columns of left padding double as the previous row's right padding), so
output pixel o = oy*P + ox reads Xt row o + kh*P + kw for every kernel position: one
resident block of Xt rows per output-row block serves all K*K positions as row offsets.
Output rows come out with P - OW junk pixels each (never stored); the epilogue runs on the
accumulator, then each output row's n-pixel blocks are transposed back to channel rows and
stored in the output's own (channel-major) layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.isa_builder import Credits, DramBuffer, Emitter, acc, sp
from compiler.isa_gemm import FreeTokens, Tile
from isa.table import Fmt, MatType, MoveFn


@dataclass(frozen=True)
class PixelConv:
    """A stride-1 K x K convolution over a padded int8 image, channel-major in DRAM."""

    image: DramBuffer
    offset: int  # image element of channel 0, padded row 0, column 0
    ch_stride: int  # image elements between channels
    cin: int
    cout: int
    k: int
    oh: int
    ow: int
    out_strides: tuple[int, int, int]  # output elements between channels, rows, columns

    @property
    def pad(self) -> int:
        return (self.k - 1) // 2

    @property
    def wt(self) -> int:  # padded image pitch
        return self.ow + self.k - 1

    @property
    def ht(self) -> int:
        return self.oh + self.k - 1

    @property
    def pitch(self) -> int:  # Xt rows per output row
        return self.wt - self.pad


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


def plan_rows(cfg, conv: PixelConv, resident: int, temps: int) -> tuple[int, int] | None:
    """(output rows per block, K chunks per step) that fit the scratchpad and an accumulator
    half, or None: the most rows (the longest MATMULs), then the largest step."""
    n, p_ = cfg.n, conv.pitch
    nc = conv.cin // n
    kc = conv.k * conv.k * nc
    nxo = -(-conv.ow // n)
    best = None
    for group in sorted({min(kc, g) for g in (16, 8, 4, 2, 1)}, reverse=True):
        rb = 0
        while rb < conv.oh:
            mb = (rb + 1) * p_
            sp_need = resident + nc * (mb + (conv.k - 1) * (p_ + 1)) + 2 * group * n \
                + 2 * (rb + 1) * nxo * n + temps * mb
            if rb * p_ + nxo * n > cfg.acc_rows // 2 or sp_need > cfg.sp_rows:
                break
            rb += 1
        if rb and (best is None or rb > best[0]):
            best = (rb, group)
    return best


def emit_pixel_conv(em: Emitter, conv: PixelConv, weights: np.ndarray, epilogue,
                    out: DramBuffer, rb: int, group: int, bias: np.ndarray | None,
                    pad: PadSource | None = None) -> None:
    """out = epilogue(conv + bias); `weights` is (cout, K*K*cin) with K in (kh, kw, cin)
    order; `bias` (per output channel, or None) is DMAed into each accumulator tile as its
    start value. Accumulator halves alternate between tiles, so one tile's bias loads while
    the other's epilogue runs."""
    n = em.cfg.n
    nc, nt = conv.cin // n, conv.cout // n
    p_, k = conv.pitch, conv.k
    rows_x = conv.ht * p_ + n  # the last block's reads run a few rows past the image
    xt = em.alloc(f"{conv.image.name}.pixels", (nc, rows_x, n), "int8")
    _transpose_in(em, conv, xt, rows_x, pad)
    em.barrier()
    kc = k * k * nc
    # B blocks [N tile][K chunk][n rows][n lanes]: a step's chunks are one DMA
    bmat = weights.T.reshape(kc, n, nt, n).transpose(2, 0, 1, 3)
    bbuf = em.constant("conv.pixels.weights", np.ascontiguousarray(bmat).astype(np.int8))
    res = epilogue.resident_rows() if epilogue is not None else 0
    temps = epilogue.temp_regions if epilogue is not None else 0
    mb = rb * p_
    halo = (k - 1) * (p_ + 1)
    a_pitch = mb + halo
    a_base = res
    b_base = a_base + nc * a_pitch
    st_base = b_base + 2 * group * n
    nxo = -(-conv.ow // n)
    st_size = rb * nxo * n
    t_base = st_base + 2 * st_size
    assert t_base + temps * mb <= em.cfg.sp_rows
    if epilogue is not None:
        epilogue.mb = mb
        if res:
            epilogue.emit_resident(em, 0)
    count = -(-kc // group)
    bounds = [kc * i // count for i in range(count + 1)]
    groups = list(zip(bounds[:-1], bounds[1:], strict=True))
    steps = [(oy0, t, gi) for oy0 in range(0, conv.oh, rb) for t in range(nt)
             for gi in range(len(groups))]
    free = FreeTokens()  # compute -> load: steps done, accumulator halves read out
    stage_free = Credits(2)
    half_rows = em.cfg.acc_rows // 2
    bbias = None
    if bias is not None:
        narrow = -128 <= int(bias.min()) and int(bias.max()) <= 127
        bbias = em.constant("conv.pixels.bias", bias.reshape(nt, n).astype(
            np.int8 if narrow else np.int32))
    tiles_before = [0] * len(steps)  # tiles started before each step
    for i in range(1, len(steps)):
        tiles_before[i] = tiles_before[i - 1] + int(steps[i - 1][2] == len(groups) - 1)

    def emit_loads(s: int) -> None:
        oy0, t, gi = steps[s]
        g0, g1 = groups[gi]
        start = len(em.code)
        first = t == 0 and gi == 0
        # A is single-buffered (the whole previous step), B double-buffered
        owe = free.need(("step", s - 1 if first else s - 2))
        if first:
            rows = min(rb, conv.oh - oy0) * p_ + halo
            for ci in range(nc):
                em.emit("load", sram=sp(a_base + ci * a_pitch),
                        dram=xt.addr + (ci * rows_x + oy0 * p_) * n, stride=n, rows=rows,
                        cols=n, fmt=int(Fmt.I8))
        em.emit("load", sram=sp(b_base + (s % 2) * group * n),
                dram=bbuf.addr + (t * kc + g0) * n * n, stride=n, rows=(g1 - g0) * n, cols=n,
                fmt=int(Fmt.I8))
        if bbias is not None and gi == 0:
            tile = tiles_before[s]
            at = len(em.code)
            em.emit("load", sram=acc((tile % 2) * half_rows), dram=bbias.addr + t * n
                    * bbias.esize, stride=0, rows=min(rb, conv.oh - oy0) * p_, cols=n,
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
        nrows = min(rb, conv.oh - oy0)
        m_rows = nrows * p_
        start = len(em.code)
        half = (tile_no % 2) * half_rows
        for j in range(g0, g1):
            pos, ci = divmod(j, nc)
            kh, kw = divmod(pos, k)
            em.emit("matmul", dst=half, inp=a_base + ci * a_pitch + kh * p_ + kw,
                    wgt=b_base + (s % 2) * group * n + (j - g0) * n, rows=m_rows,
                    acc=int(j > 0 or bbias is not None), dtype=int(MatType.I8))
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")  # this step's A and B rows are free
        free.push(("step", s))
        if s + 1 < len(steps):
            emit_loads(s + 1)
        flush(per_step)
        if gi < len(groups) - 1:
            continue
        if epilogue is not None:
            tile = Tile(0, 0, m_rows, t * n, n, tile_no)
            epilogue.emit_tile_compute(em, tile, acc(half), 0, t_base, 0)
        stage = st_base + (tile_no % 2) * st_size
        first = len(em.code)
        for r in range(nrows):
            em.emit("move", dst=sp(stage + r * nxo * n), src1=acc(half + r * p_), count=nxo,
                    fn=int(MoveFn.TRANSPOSE), dstride=n, sstride=n)
        em.flag(len(em.code) - 1, "push_next", *(("push_prev",) if bbias is not None else ()))
        if bbias is not None:
            free.push(("half", tile_no))
        em.pops(first, "compute", "pop_next", stage_free.need(tile_no))
        tile_stores = [dict(sram=sp(stage + (r * nxo + q) * n),
                            dram=out.addr + (t * n * conv.out_strides[0] + (oy0 + r)
                                             * conv.out_strides[1] + q * n) * out.esize,
                            stride=conv.out_strides[0] * out.esize, rows=n,
                            cols=min(n, conv.ow - q * n), fmt=int(out.fmt))
                       for r in range(nrows) for q in range(nxo)]
        tile_stores[0]["flags"] = ("pop_prev",)
        tile_stores[-1]["flags"] = tile_stores[-1].get("flags", ()) + ("push_prev",)
        flush(len(pending))  # the previous tile's last stores
        pending.extend(tile_stores)
        per_step = -(-len(tile_stores) // len(groups))
        tile_no += 1
    flush(len(pending))


def _transpose_in(em: Emitter, conv: PixelConv, xt: DramBuffer, rows_x: int,
                  pad: PadSource | None) -> None:
    """Xt[chunk][y*P + x] = image[chunk channels, y, x] for every padded row y and x < Wt
    (the last p columns land on the next row's left padding: zeros either way). With
    `pad`, rows come from the unpadded image: padding rows are zero-filled, and each row
    stores from column p on (the columns before it hold what precedes the row in DRAM;
    the previous row's right padding covers them)."""
    n = em.cfg.n
    nc, wt, p_ = conv.cin // n, conv.wt, conv.pitch
    nxw = -(-wt // n)
    in_size, tr_size = nxw * conv.cin, nc * nxw * n
    base = [0, in_size + tr_size]
    data_free, out_free = Credits(2), Credits(2)
    p = conv.pad

    # with `pad`, blocks wholly right of the image are not loaded but zero-filled
    live = nxw if pad is None else min(nxw, -(-pad.x_hi // n))

    def blank(y: int) -> bool:
        return pad is not None and not pad.y_lo <= y < pad.y_hi

    def emit_loads(y: int) -> None:
        start = len(em.code)
        b = base[y % 2]
        if blank(y):
            em.sync("load")
        for q in range(0 if blank(y) else live):
            if pad is None:
                dram, cols, stride = conv.offset + y * wt + q * n, min(n, wt - q * n), \
                    conv.ch_stride
            else:
                dram = pad.offset + y * pad.row_stride + q * n
                cols, stride = min(n, pad.x_hi - q * n), pad.outer[-1]
            em.emit("load", sram=sp(b + q * conv.cin),
                    dram=(pad.buf if pad else conv.image).addr + dram, stride=stride,
                    rows=conv.cin, cols=cols, fmt=int(Fmt.I8))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", data_free.need(y))

    emit_loads(0)
    for y in range(conv.ht):
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
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev", "push_next")
        em.pops(start, "compute", "pop_next", out_free.need(y))
        if y + 1 < conv.ht:
            emit_loads(y + 1)
        first = len(em.code)
        x0 = p if pad is not None and not blank(y) else 0
        for ci in range(nc):
            em.emit("store", sram=sp(tr + ci * nxw * n + x0),
                    dram=xt.addr + (ci * rows_x + y * p_ + x0) * n, stride=n, rows=wt - x0,
                    cols=n, fmt=int(Fmt.I8))
        em.flag(first, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")
