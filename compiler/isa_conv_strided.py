"""Stride-2 convolutions with output pixels streamed through the matrix array.

The stride-1 kernel (`compiler.isa_conv_pixels`) streams output pixels past stationary
weights from a pixel-major copy of the image. With stride 2, consecutive output pixels
read every other image pixel, so the copy is split into phase planes: plane (a, b) holds
padded pixel (2i + a, 2j + b) at row i*Q + j, and kernel position (kh, kw) reads plane
(kh % 2, kw % 2) at row offset (kh // 2)*Q + kw // 2 (Q = OW + (K-1)/2, the output row
pitch with its junk columns). The planes are the image's own rows split by parity, each
row padded to 2Q pixels, so the copy is one transposing pass; plane (a, b) is then every
other row of its row parity, loaded with a 2-row DMA stride. Each step loads the plane
rows of a few channel chunks for its output-row block and N tile (too many to keep all
resident) and runs every kernel position of those planes on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.isa_builder import Credits, DramBuffer, Emitter, acc, sp
from compiler.isa_conv_pixels import PadSource
from compiler.isa_gemm import FreeTokens, Tile
from isa.table import Fmt, MatType, MoveFn


@dataclass(frozen=True)
class StridedConv:
    """A stride-2 K x K convolution over an int8 image, channel-major in DRAM, read either
    padded (`image`, ht x wt per channel) or through `pad` (unpadded)."""

    image: DramBuffer
    ch_stride: int
    ht: int
    wt: int
    cin: int
    cout: int
    k: int
    oh: int
    ow: int
    out_strides: tuple[int, int, int]
    pad: PadSource | None

    @property
    def q(self) -> int:  # output row pitch (plane row length)
        return self.ow + (self.k - 1) // 2

    @property
    def hh(self) -> int:  # plane rows
        return self.oh + (self.k - 1) // 2

    @property
    def most(self) -> int:  # kernel positions of the fullest plane
        return ((self.k + 1) // 2) ** 2

    @property
    def halo(self) -> int:
        r = (self.k - 1) // 2
        return r * self.q + r


def plan_strided(cfg, conv: StridedConv, resident: int, temps: int) -> tuple[int, int] | None:
    """(output rows per block, plane-chunk units per step) fitting scratchpad and an
    accumulator half: the most rows, then the largest step."""
    n, q = cfg.n, conv.q
    nxo = -(-conv.ow // n)
    nxw = -(-2 * q // n)
    if 4 * nxw * conv.cin + 1 > cfg.sp_rows:
        return None
    units = 4 * (conv.cin // n)
    best = None
    for group in sorted({min(units, g) for g in (8, 4, 2, 1)}, reverse=True):
        rb = 0
        while rb < conv.oh:
            mb = (rb + 1) * q
            need = resident + 2 * group * (mb + conv.halo) + 2 * group * conv.most * n \
                + 2 * (rb + 1) * nxo * n + temps * mb
            if rb * q + nxo * n > cfg.acc_rows // 2 or need > cfg.sp_rows:
                break
            rb += 1
        if rb and (best is None or rb > best[0]):
            best = (rb, group)
    return best


def emit_strided_conv(em: Emitter, conv: StridedConv, weights: np.ndarray, epilogue,
                      out: DramBuffer, rb: int, group: int, bias: np.ndarray | None) -> None:
    """out = epilogue(conv + bias); `weights` is (cout, K*K*cin), K in (kh, kw, cin) order."""
    n = em.cfg.n
    nc, nt, k, q = conv.cin // n, conv.cout // n, conv.k, conv.q
    plane_rows = conv.hh * 2 * q
    rows_x = 2 * plane_rows + conv.halo + 2 * n  # per chunk: both row parities, then slack
    xt = em.alloc(f"{conv.image.name}.phases", (nc, rows_x, n), "int8")
    _transpose_in(em, conv, xt, rows_x)
    em.barrier()
    units = [(a, b, ci, [(kh, kw) for kh in range(a, k, 2) for kw in range(b, k, 2)])
             for a in range(2) for b in range(2) for ci in range(nc)]
    # B blocks [N tile][unit][position][n rows][n lanes]: a step's units are one DMA
    wt = weights.T  # (K*K*cin, cout)
    blocks = []
    for t in range(nt):
        for _, _, ci, pos in units:
            for kh, kw in pos:
                r0 = (kh * k + kw) * conv.cin + ci * n
                blocks.append(wt[r0:r0 + n, t * n:(t + 1) * n])
    bbuf = em.constant("conv.phases.weights", np.stack(blocks).astype(np.int8))
    unit_at = np.cumsum([0] + [len(u[3]) for u in units])  # first block of each unit
    per_t = int(unit_at[-1])
    res = epilogue.resident_rows() if epilogue is not None else 0
    temps = epilogue.temp_regions if epilogue is not None else 0
    mb = rb * q
    a_pitch = mb + conv.halo
    a_base = res
    b_base = a_base + 2 * group * a_pitch
    st_base = b_base + 2 * group * conv.most * n
    nxo = -(-conv.ow // n)
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
    steps = [(oy0, t, gi) for oy0 in range(0, conv.oh, rb) for t in range(nt)
             for gi in range(len(groups))]
    free = FreeTokens()
    stage_free = Credits(2)
    half_rows = em.cfg.acc_rows // 2
    bbias = None
    if bias is not None:
        narrow = -128 <= int(bias.min()) and int(bias.max()) <= 127
        bbias = em.constant("conv.phases.bias", bias.reshape(nt, n).astype(
            np.int8 if narrow else np.int32))
    tiles_before = [0] * len(steps)
    for i in range(1, len(steps)):
        tiles_before[i] = tiles_before[i - 1] + int(steps[i - 1][2] == len(groups) - 1)

    def emit_loads(s: int) -> None:
        oy0, t, gi = steps[s]
        g0, g1 = groups[gi]
        start = len(em.code)
        owe = free.need(("step", s - 2))
        rows = min(rb, conv.oh - oy0) * q + conv.halo
        abuf = a_base + (s % 2) * group * a_pitch
        for u in range(g0, g1):
            a, b, ci, _ = units[u]
            em.emit("load", sram=sp(abuf + (u - g0) * a_pitch),
                    dram=xt.addr + (ci * rows_x + a * plane_rows + oy0 * 2 * q + b) * n,
                    stride=2 * n, rows=rows, cols=n, fmt=int(Fmt.I8))
        nb = int(unit_at[g1] - unit_at[g0])
        em.emit("load", sram=sp(b_base + (s % 2) * group * conv.most * n),
                dram=bbuf.addr + (t * per_t + int(unit_at[g0])) * n * n, stride=n,
                rows=nb * n, cols=n, fmt=int(Fmt.I8))
        if bbias is not None and gi == 0:
            tile = tiles_before[s]
            at = len(em.code)
            em.emit("load", sram=acc((tile % 2) * half_rows), dram=bbias.addr + t * n
                    * bbias.esize, stride=0, rows=min(rb, conv.oh - oy0) * q, cols=n,
                    fmt=int(bbias.fmt))
            em.pops(at, "load", "pop_next", free.need(("half", tile - 2)))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", owe)

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
        m_rows = nrows * q
        start = len(em.code)
        half = (tile_no % 2) * half_rows
        abuf = a_base + (s % 2) * group * a_pitch
        bb = b_base + (s % 2) * group * conv.most * n
        blk = 0
        for u in range(g0, g1):
            for kh, kw in units[u][3]:
                em.emit("matmul", dst=half,
                        inp=abuf + (u - g0) * a_pitch + (kh // 2) * q + kw // 2,
                        wgt=bb + blk * n, rows=m_rows,
                        acc=int(u > 0 or blk > 0 or bbias is not None), dtype=int(MatType.I8))
                blk += 1
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")
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
            em.emit("move", dst=sp(stage + r * nxo * n), src1=acc(half + r * q), count=nxo,
                    fn=int(MoveFn.TRANSPOSE), dstride=n, sstride=n)
        em.flag(len(em.code) - 1, "push_next", *(("push_prev",) if bbias is not None else ()))
        if bbias is not None:
            free.push(("half", tile_no))
        em.pops(first, "compute", "pop_next", stage_free.need(tile_no))
        tile_stores = [dict(sram=sp(stage + (r * nxo + x) * n),
                            dram=out.addr + (t * n * conv.out_strides[0] + (oy0 + r)
                                             * conv.out_strides[1] + x * n) * out.esize,
                            stride=conv.out_strides[0] * out.esize, rows=n,
                            cols=min(n, conv.ow - x * n), fmt=int(out.fmt))
                       for r in range(nrows) for x in range(nxo)]
        tile_stores[0]["flags"] = ("pop_prev",)
        tile_stores[-1]["flags"] = tile_stores[-1].get("flags", ()) + ("push_prev",)
        flush(len(pending))
        pending.extend(tile_stores)
        per_step = -(-len(tile_stores) // len(groups))
        tile_no += 1
    flush(len(pending))


def _transpose_in(em: Emitter, conv: StridedConv, xt: DramBuffer, rows_x: int) -> None:
    """Xt[chunk][(y % 2)*plane_rows + (y // 2)*2Q + x] = padded image[chunk, y, x] for
    y < 2*hh, x < 2Q (zero outside the image). With `conv.pad` the rows come from the
    unpadded image and the left padding rows of the transposed block (the row's
    neighbours in DRAM) are zero-filled."""
    n = em.cfg.n
    nc, q, pad = conv.cin // n, conv.q, conv.pad
    width = 2 * q
    nxw = -(-width // n)
    in_size, tr_size = nxw * conv.cin, nc * nxw * n
    base = [0, in_size + tr_size]
    x_lo = pad.x_lo if pad is not None else 0
    x_hi = pad.x_hi if pad is not None else conv.wt
    live = min(nxw, -(-x_hi // n))
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
                addr = conv.image.addr + y * conv.wt + x * n
                stride, cols = conv.ch_stride, min(n, conv.wt - x * n)
            else:
                addr = pad.buf.addr + pad.offset + y * pad.row_stride + x * n
                stride, cols = pad.outer[-1], min(n, x_hi - x * n)
            em.emit("load", sram=sp(b + x * conv.cin), dram=addr, stride=stride,
                    rows=conv.cin, cols=cols, fmt=int(Fmt.I8))
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", data_free.need(y))

    emit_loads(0)
    for y in range(2 * conv.hh):
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
            for x in range(x_lo):  # the left padding: what precedes the row in DRAM
                em.emit("move", dst=sp(tr + x), count=nc, fn=int(MoveFn.FILL),
                        dstride=nxw * n, imm=0)
        em.flag(start, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev", "push_next")
        em.pops(start, "compute", "pop_next", out_free.need(y))
        if y + 1 < 2 * conv.hh:
            emit_loads(y + 1)
        first = len(em.code)
        row = (y % 2) * conv.hh * width + (y // 2) * width
        for ci in range(nc):
            em.emit("store", sram=sp(tr + ci * nxw * n), dram=xt.addr + (ci * rows_x + row) * n,
                    stride=n, rows=width, cols=n, fmt=int(Fmt.I8))
        em.flag(first, "pop_prev")
        em.flag(len(em.code) - 1, "push_prev")
