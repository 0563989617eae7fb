"""Contraction kernels to ISA code: matmuls and convolutions on the matrix unit
(`compiler.isa_gemm`), with their elementwise epilogues fused.

Convolutions read shifted copies of the image rather than an im2col matrix; the epilogue
(bias, requantisation, activation, residual adds) runs on each output tile in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import Op
from compiler.isa_builder import CompileError, DramBuffer, Emitter, acc, sp
from compiler.isa_conv_pixels import PixelConv, emit_pixel_conv, plan_rows
from compiler.isa_conv_stream import PadSource
from compiler.isa_conv_strided import StridedConv, emit_strided_conv, plan_strided
from compiler.isa_elementwise import Leaf, emit_elementwise, requant_view, requants_of, scalar_of
from compiler.isa_gather import GatherJob, emit_lane_gather, gather_fits
from compiler.isa_gemm import Mat, Tile, WindowB, emit_gemm
from compiler.isa_vector import (
    ExprEmitter,
    Imm,
    Operand,
    RegionPool,
    Rows,
    count_temps,
)
from compiler.schedule import ACC, LOAD, Expr
from compiler.view import View, contiguous_strides
from isa.table import Fmt, MatType


@dataclass
class GemmAxes:
    """The kernel-space axes of a contraction, by role."""

    batch: list[int]
    m: list[int]
    n: list[int]
    k: list[int]


def classify(shape: tuple[int, ...], reduce_axes: tuple[int, ...], va: View, vb: View
             ) -> GemmAxes:
    g = GemmAxes([], [], [], [])
    for i, s in enumerate(shape):
        if s == 1:
            continue
        if i in reduce_axes:
            g.k.append(i)
            continue
        sa, sb = va.strides[i], vb.strides[i]
        if sa != 0 and sb == 0:
            g.m.append(i)
        elif sa == 0 and sb != 0:
            g.n.append(i)
        else:
            g.batch.append(i)
    return g


def merged(view: View, axes: list[int]) -> tuple[int, int] | None:
    """(size, stride) when `axes` of `view` read as one strided, unmasked axis."""
    if not axes:
        return 1, 0
    for a in axes:
        if view.mask is not None and view.mask[a] != (0, view.shape[a]):
            return None
    for a, b in zip(axes, axes[1:], strict=False):
        if view.strides[a] != view.strides[b] * view.shape[b]:
            return None
    return math.prod(view.shape[a] for a in axes), view.strides[axes[-1]]


class GemmEpilogue:
    """A kernel epilogue run on each accumulator tile (the `TileEpilogue` of isa_gemm).

    Leaves constant along the tile's rows become resident rows, one per n-column tile;
    leaves that vary along rows are loaded with each tile; REQUANT params are per column.
    """

    def __init__(self, em: Emitter, expr: Expr, leaves: list[Leaf], g: GemmAxes,
                 batches: list[tuple[int, ...]], nn: int,
                 rq_views: dict[int, View | None], m: int = 0) -> None:
        self.em, self.g, self.batches = em, g, batches
        self.acc_init = False
        self.init_rows: np.ndarray | None = None  # per-row start values, by M index
        self.init_tables: dict[int, DramBuffer] = {}  # per M block start
        leaves = list(leaves)
        original = expr
        expr, bias = _row_bias(expr, leaves, g)
        if bias is not None:
            rq_views = {id(new): rq_views.get(id(old)) for old, new in
                        zip(requants_of(original), requants_of(expr), strict=True)}
            lf = leaves[bias]
            assert lf.view is not None and lf.data is not None
            ms = (merged(lf.view, g.m) or (1, 0))[1]
            self.m_size = math.prod(lf.view.shape[i] for i in g.m)
            m_idx = np.arange(self.m_size)
            self.init_rows = np.asarray(lf.data).reshape(-1)[lf.view.offset + m_idx * ms]
            self.acc_init = True
            leaves[bias] = Leaf(None, None, imm=Imm(0))  # no longer read by the epilogue
        self.expr, self.leaves = expr, leaves
        self.rq_views = rq_views  # per REQUANT: its channel index over the reduced shape
        self.n = em.cfg.n
        self.nn = nn
        self.tiles_n = -(-nn // self.n)
        self.kind: dict[int, str] = {}
        self.tile_leaves: list[Leaf] = []
        self.lane_leaves: list[Leaf] = []
        self.row_leaves: list[Leaf] = []  # vary along rows only: loaded per M block
        for lf in leaves:
            if lf.imm is not None:
                continue
            assert lf.view is not None
            row_varies = any(lf.view.strides[i] for i in g.m + g.batch)
            lane_varies = any(lf.view.strides[i] for i in g.n)
            kind = "tile" if row_varies and lane_varies else "row" if row_varies else "lane"
            {"tile": self.tile_leaves, "row": self.row_leaves,
             "lane": self.lane_leaves}[kind].append(lf)
            self.kind[id(lf)] = kind
        all_rq = requants_of(expr)
        self.rowrequants_of = [r for r in all_rq if r.arg.multiplier.size > 1
                             and self._channel_on_rows(r)]
        self.requants = [r for r in all_rq if r not in self.rowrequants_of]
        self.block_index: dict[int, int] = {}
        self.tile_regions = len(self.tile_leaves)
        self.n_acc = sum(1 for leaf in expr.leaves() if leaf.op == ACC)
        self.temp_regions = count_temps(expr) + int(self.n_acc > 1)
        self._size_block()
        self.row_of: dict[int, int] = {}
        self.mb = 0  # set by emit_gemm

    def _size_block(self) -> None:
        # A per-row REQUANT reads a table of two broadcast rows (multiplier, shift) per
        # row, one pair after another: one REQUANT with step2 covers the whole block (a
        # cycle a row), where transposing n-row blocks into lanes and back costs two
        # transposes of at least n + 1 cycles per block.
        self.block_regions = len(self.row_leaves) + 2 * len(self.rowrequants_of)

    def accepts(self, mb: int) -> bool:
        """Whether M blocks of `mb` rows suit the scratchpad layout (any row count does)."""
        return True

    def widen(self) -> None:
        """Nothing to widen: the per-row tables serve tiles of any row count."""

    def emit_acc_init(self, em: Emitter, tile: Tile, acc_addr: int) -> None:
        """Load the tile's per-row start values (the bias) into its accumulator rows,
        each broadcast over the n lanes; int8 bytes when they fit, to spare DMA time."""
        assert self.init_rows is not None
        buf = self.init_tables.get(tile.m0)
        if buf is None:
            vals = self.init_rows[tile.m0:tile.m0 + self.mb].astype(np.int64)
            narrow = bool(vals.size) and -128 <= int(vals.min()) and int(vals.max()) <= 127
            table = np.repeat(vals[:, None], self.n, axis=1)
            buf = em.constant("epilogue.accinit",
                              table.astype(np.int8 if narrow else np.int32))
            self.init_tables[tile.m0] = buf
        em.emit("load", sram=acc_addr, dram=buf.addr, stride=self.n * buf.esize,
                rows=tile.rows, cols=self.n, fmt=int(buf.fmt))

    def _channel_on_rows(self, r: Expr) -> bool:
        v = self.rq_views.get(id(r))
        return v is not None and any(v.strides[i] for i in self.g.m)

    @staticmethod
    def fits(expr: Expr, leaves: list[Leaf], g: GemmAxes, out_shape: tuple[int, ...],
             red_shape: tuple[int, ...]) -> list[Leaf] | None:
        """Leaves re-viewed over the reduced shape, or None when the epilogue cannot tile."""
        out: list[Leaf] = []
        for lf in leaves:
            if lf.imm is not None:
                out.append(lf)
                continue
            v = lf.view.reshape(red_shape) if lf.view is not None else None
            if v is None or v.mask is not None or any(st < 0 for st in v.strides):
                return None
            nm, mm = merged(v, g.n), merged(v, g.m)
            if nm is None or mm is None or (nm[1] not in (0, 1) and nm[0] > 1):
                return None
            if (nm[1] == 0 or nm[0] == 1) and any(v.strides[i] for i in g.m + g.batch) and \
                    (lf.data is None or any(v.strides[i] for i in g.batch)):
                return None  # per-row values: only constants, the same for every batch entry
            out.append(Leaf(lf.buf, v, lf.data))
        for r in requants_of(expr):
            if r.arg.multiplier.size > 1:
                rv = requant_view(r, out_shape).reshape(red_shape)
                if rv is None or any(rv.strides[i] for i in g.batch):
                    return None
                on_rows = any(rv.strides[i] for i in g.m)
                on_lanes = any(rv.strides[i] for i in g.n)
                if on_rows and on_lanes:
                    return None
                if on_lanes and (merged(rv, g.n) or (0, 0))[1] != 1:
                    return None
                if on_rows and merged(rv, g.m) is None:
                    return None
        return out

    def resident_rows(self) -> int:
        return (len(self.lane_leaves) + 2 * len(self.requants)) * self.tiles_n

    def emit_resident(self, em: Emitter, base: int) -> None:
        n, tn, row = self.n, self.tiles_n, base
        cols = np.minimum(np.arange(tn * n), self.nn - 1)
        for lf in self.lane_leaves:
            assert lf.buf is not None and lf.view is not None
            self.row_of[id(lf)] = row
            ns = (merged(lf.view, self.g.n) or (1, 0))[1]
            if lf.data is not None:
                flat = np.asarray(lf.data).reshape(-1)
                vals = flat[lf.view.offset + cols * ns]
                b = em.constant("epilogue.lane", vals.reshape(tn, n))
                em.emit("load", sram=sp(row), dram=b.addr, stride=n * b.esize, rows=tn, cols=n,
                        fmt=int(b.fmt))
            elif ns == 1:
                for t in range(tn):
                    em.emit("load", sram=sp(row + t), dram=lf.buf.addr + (lf.view.offset + t * n)
                            * lf.buf.esize, stride=0, rows=1, cols=min(n, self.nn - t * n),
                            fmt=int(lf.buf.fmt))
            else:
                for t in range(tn):
                    em.emit("load", sram=sp(row + t), dram=lf.buf.addr + lf.view.offset
                            * lf.buf.esize, stride=0, rows=1, cols=1, fmt=int(lf.buf.fmt))
                    em.emit("move", dst=sp(row + t), src1=sp(row + t), count=1, fn=2,
                            dstride=1, sstride=1, imm=0)
            row += tn
        for r in self.requants:
            mult = np.asarray(r.arg.multiplier, np.int64).reshape(-1)
            shift = np.asarray(r.arg.shift, np.int64).reshape(-1)
            table = np.zeros((tn, 2, n), np.int64)
            idx = cols if mult.size > 1 else np.zeros_like(cols)
            table[:, 0, :] = mult[idx].reshape(tn, n)
            table[:, 1, :] = shift[idx].reshape(tn, n)
            b = em.constant("epilogue.requant", table.reshape(tn * 2, n).astype(np.int32))
            self.row_of[id(r)] = row
            em.emit("load", sram=sp(row), dram=b.addr, stride=n * 4, rows=2 * tn, cols=n,
                    fmt=int(Fmt.X32))
            row += 2 * tn

    def emit_block_loads(self, em: Emitter, tile: Tile, base: int) -> None:
        """Per-row values of this M block, each row broadcast over its n lanes (host-built
        tables: the per-row leaves are constants, or loaded and broadcast)."""
        n, rows, region = self.n, tile.rows, 0
        m_idx = np.arange(tile.m0, tile.m0 + rows)
        for lf in self.row_leaves:
            assert lf.view is not None and lf.buf is not None
            ms = (merged(lf.view, self.g.m) or (1, 0))[1]
            self.block_index[id(lf)] = region
            if lf.data is not None:
                vals = np.asarray(lf.data).reshape(-1)[lf.view.offset + m_idx * ms]
                table = np.repeat(vals[:, None], n, axis=1)
                b = em.constant("epilogue.rows", table)
                em.emit("load", sram=sp(base + region * self.mb), dram=b.addr,
                        stride=n * b.esize, rows=rows, cols=n, fmt=int(b.fmt))
            else:
                raise CompileError("per-row epilogue input that is not a constant")
            region += 1
        for r in self.rowrequants_of:
            v = self.rq_views[id(r)]
            ms = (merged(v, self.g.m) or (1, 0))[1]
            ch = v.offset + m_idx * ms
            mult = np.asarray(r.arg.multiplier, np.int64).reshape(-1)[ch]
            shift = np.asarray(r.arg.shift, np.int64).reshape(-1)[ch]
            self.block_index[id(r)] = region
            table = np.stack([np.repeat(mult[:, None], n, 1), np.repeat(shift[:, None], n, 1)],
                             axis=1).reshape(2 * rows, n).astype(np.int32)
            b = em.constant("epilogue.rowrequant", table)
            em.emit("load", sram=sp(base + region * self.mb), dram=b.addr, stride=n * 4,
                    rows=2 * rows, cols=n, fmt=int(Fmt.X32))
            region += 2

    def emit_tile_loads(self, em: Emitter, tile: Tile, base: int) -> None:
        bidx = self.batches[tile.batch]
        for i, lf in enumerate(self.tile_leaves):
            assert lf.buf is not None and lf.view is not None
            v = lf.view
            ms = (merged(v, self.g.m) or (1, 0))[1]
            ns = (merged(v, self.g.n) or (1, 0))[1]
            off = v.offset + sum(j * v.strides[a] for j, a in zip(bidx, self.g.batch,
                                                                    strict=True))
            off += tile.m0 * ms + tile.n0 * ns
            cols = tile.cols if ns == 1 else 1
            em.emit("load", sram=sp(base + i * self.mb), dram=lf.buf.addr + off * lf.buf.esize,
                    stride=ms * lf.buf.esize, rows=tile.rows, cols=cols, fmt=int(lf.buf.fmt))

    def emit_tile_compute(self, em: Emitter, tile: Tile, acc_addr: int, inputs: int,
                          temps: int, block: int) -> int:
        t = tile.n0 // self.n

        def leaf_of(e: Expr) -> Operand:
            if e.op == ACC:
                return Rows(acc_addr)
            lf = self.leaves[e.arg]
            if lf.imm is not None:
                return lf.imm
            if self.kind[id(lf)] == "lane":
                return Rows(sp(self.row_of[id(lf)] + t), 0)
            if self.kind[id(lf)] == "row":
                return Rows(sp(block + self.block_index[id(lf)] * self.mb))
            return Rows(sp(inputs + self.tile_leaves.index(lf) * self.mb))

        def params(e: Expr) -> int | tuple[int, int] | tuple[int, int, int]:
            if e in self.rowrequants_of:
                return block + self.block_index[id(e)] * self.mb, 2
            return self.row_of[id(e)] + 2 * t

        pool = RegionPool(temps, self.mb, self.temp_regions)
        source = acc_addr
        if self.n_acc > 1:  # read a copy, so writing the result in place clobbers nothing
            source = sp(pool.take())
            em.emit("move", dst=source, src1=acc_addr, count=tile.rows, fn=0, dstride=1,
                    sstride=1)

        def leaf_or_copy(e: Expr) -> Operand:
            return Rows(source) if e.op == ACC else leaf_of(e)

        # The result stays in the accumulator half, which the store unit owns until it
        # frees it: a scratchpad result could be overwritten by the next tile's epilogue.
        ExprEmitter(em, tile.rows, leaf_or_copy, pool, params).emit(self.expr, acc_addr)
        return acc_addr


def _row_bias(expr: Expr, leaves: list[Leaf], g: GemmAxes) -> tuple[Expr, int | None]:
    """`expr` with its int32 `ACC + c` replaced by ACC, where c is a constant that varies
    along the tile's rows only (a conv's bias), and c's leaf index; (expr, None) when there
    is none. The accumulator then starts from c (a DMA on the otherwise idle load unit)
    instead of a vector pass per tile. int32 sums wrap, so the order does not matter."""
    accs = [e for e in expr.leaves() if e.op == ACC]
    if len(accs) != 1 or accs[0].dtype != "int32":
        return expr, None
    uses = [e.arg for e in expr.leaves() if e.op == LOAD]

    def candidate(e: Expr) -> int | None:
        if e.op is not Op.ADD or e.dtype != "int32" or len(e.srcs) != 2:
            return None
        ops = [s.op for s in e.srcs]
        if ACC not in ops or LOAD not in ops:
            return None
        i = e.srcs[ops.index(LOAD)].arg
        lf = leaves[i]
        if lf.imm is not None or lf.data is None or lf.view is None or uses.count(i) != 1 \
                or lf.view.mask is not None or np.asarray(lf.data).dtype != np.int32:
            return None
        v = lf.view
        if any(v.strides[a] for a in g.n + g.batch) or not any(v.strides[a] for a in g.m) \
                or merged(v, g.m) is None or (merged(v, g.m) or (0, -1))[1] < 0:
            return None
        return i

    found: list[tuple[Expr, int]] = []

    def walk(e: Expr) -> None:
        i = candidate(e)
        if i is not None:
            found.append((e, i))
            return
        for s in e.srcs:
            walk(s)

    walk(expr)
    if len(found) != 1:
        return expr, None
    target, index = found[0]

    def rewrite(e: Expr) -> Expr:
        if e is target:
            return Expr(ACC, (), None, "int32")
        if not e.srcs:
            return e
        return Expr(e.op, tuple(rewrite(s) for s in e.srcs), e.arg, e.dtype)

    return rewrite(expr), index


Materialise = Callable[[Leaf, list[int], tuple[int, ...]], tuple[DramBuffer, View]]


def emit_contraction(em: Emitter, shape: tuple[int, ...], reduce_axes: tuple[int, ...],
                     a: Leaf, b: Leaf, epilogue: Expr | None, epi_leaves: list[Leaf],
                     out: DramBuffer, out_shape: tuple[int, ...], materialise: Materialise,
                     pads: dict[int, tuple[PadSource, Callable[[], None]]] | None = None
                     ) -> None:
    """out = epilogue(sum over reduce_axes of a * b) on the matrix unit.

    `pads` holds operands whose zero-padding copy was held back (by DRAM buffer id): the
    padded source and a callback that emits the copy. Each is emitted before anything
    else unless a path reads the unpadded image itself.

    The operands are brought to (batch, M, K) and (batch, K, N) matrices with unit-stride
    rows (through a copy kernel when their Views do not allow it); the output tile's lanes
    run along N. Of the two orientations, the one that writes the output in place wins.
    """
    assert a.view is not None and b.view is not None
    red_shape = tuple(1 if i in reduce_axes else s for i, s in enumerate(shape))
    ostr = contiguous_strides(red_shape)
    ov = View(red_shape, ostr, 0, None)

    def score(g: GemmAxes) -> int:
        """2: the output tile stores in place; 1: its lanes are at least contiguous in the
        output (a copy kernel with long rows finishes the job); 0: neither."""
        o_m, o_n = merged(ov, g.m), merged(ov, g.n)
        if o_m is not None and o_n is not None and (o_n[1] == 1 or o_n[0] == 1):
            return 2
        return int(not g.n or ov.strides[g.n[-1]] == 1)

    first, second = (b, a) if (a.data is not None and b.data is None) else (a, b)
    g = classify(shape, reduce_axes, first.view, second.view)
    g2 = classify(shape, reduce_axes, second.view, first.view)

    def cost(g: GemmAxes) -> int:
        """Estimated MATMUL cycles plus a charge per instruction (tiles of few rows or
        lanes are slow to issue and to simulate)."""
        n, mb_max = em.cfg.n, em.cfg.acc_rows // 2
        mm, nn_, kk = (int(np.prod([shape[i] for i in ax], dtype=np.int64))
                       for ax in (g.m, g.n, g.k))
        count = -(-nn_ // n) * -(-kk // n) * -(-mm // mb_max)
        return -(-nn_ // n) * -(-kk // n) * mm + count * (n + 2) + 20 * count

    if (score(g2), -cost(g2)) > (score(g), -cost(g)):
        first, second, g = second, first, g2
    a, b = first, second
    assert a.view is not None and b.view is not None and a.buf is not None and b.buf is not None
    sizes = [math.prod(shape[i] for i in ax) for ax in (g.batch, g.m, g.n, g.k)]
    bt, m, nn, k = sizes
    dtype = MatType.I8 if a.buf.dtype == "int8" else MatType.F32

    def operand(leaf: Leaf, rows: list[int], cols: list[int]) -> tuple[DramBuffer, View]:
        assert leaf.view is not None and leaf.buf is not None
        v = leaf.view
        mr, mc = merged(v, rows), merged(v, cols)
        ok = mr is not None and mc is not None and (mc[1] == 1 or mc[0] == 1) \
            and mr[1] >= 0 and v.mask is None and all(v.strides[x] >= 0 for x in g.batch)
        if ok:
            return leaf.buf, v
        return materialise(leaf, g.batch + rows + cols, shape)

    pads = dict(pads or {})
    pad_b = pads.pop(id(b.buf), None) if b.buf is not None else None
    for _, flush in pads.values():
        flush()
    if _pixel_conv(em, shape, g, a, b, epilogue, epi_leaves, out, out_shape, red_shape, ostr,
                   pad_b[0] if pad_b else None):
        return
    if pad_b is not None:
        pad_b[1]()
    o_m, o_n = merged(ov, g.m), merged(ov, g.n)
    is_direct = o_m is not None and o_n is not None and (o_n[1] == 1 or nn == 1)
    window: tuple[WindowB, list[int]] | None = None
    shifted: tuple[DramBuffer, WindowB, list[int], bool] | None = None
    bm = merged(b.view, g.k), merged(b.view, g.n)
    b_plain = bm[0] is not None and bm[1] is not None and (bm[1][1] == 1 or bm[1][0] == 1) \
        and b.view.mask is None
    # Output lanes contiguous and rows one stride: N tiles can be stored in place even when
    # the N axes do not merge (each window tile knows its own output offset).
    lanes_out = bool(g.n) and ov.strides[g.n[-1]] == 1 and o_m is not None
    if (is_direct or lanes_out) and not g.batch and a.data is not None and b.data is None \
            and not b_plain:
        shifted = shifted_window(em, b, g, shape, ostr)
        window = shifted[1:3] if shifted is not None else \
            window_operand(b.view, g, shape, em.cfg.n, ostr)
    if window is not None:
        _, order = window  # (the B plan, the K order A must follow)
        flat_k = shifted is not None and shifted[3]
        a_host = _fold_for_window(a, g, shape, order, em.cfg.n, flat_k)
        abuf = em.constant(f"{a.buf.name}.windowed", a_host)
        k = abuf.shape[1]
        av = View((m, k), (k, 1), 0, None)
        bbuf, bv = b.buf, b.view
        if shifted is not None:  # B tiles address the copy: its plan holds every offset
            bbuf, bv = shifted[0], View(tuple(shape), (0,) * len(shape), 0, None)
    else:
        abuf, av = operand(a, g.m, g.k)
        bbuf, bv = operand(b, g.k, g.n)
    batches = list(np.ndindex(*[shape[i] for i in g.batch])) if g.batch else [()]
    epi = None
    epi_fit = None
    direct_out = is_direct or window is not None
    if direct_out and epilogue is not None:
        for lf in epi_leaves:
            if lf.imm is None and lf.buf is not None and lf.view is not None:
                lf.imm = scalar_of(lf.buf, lf.view, lf.data)
        epi_fit = GemmEpilogue.fits(epilogue, epi_leaves, g, out_shape, red_shape)
        if epi_fit is not None:
            rq_views = {id(r): requant_view(r, out_shape).reshape(red_shape)
                        for r in requants_of(epilogue)}
            epi = GemmEpilogue(em, epilogue, epi_fit, g, batches, nn, rq_views, m)
            epi.temp_regions = _temps_needed(em, epi)
            if not is_direct and (epi.tile_leaves or epi.lane_leaves):
                epi = None  # those address tiles by their flat column index
    if not is_direct and window is not None and epilogue is not None and epi is None:
        window = None  # the epilogue needs the separate pass: use the plain matrix path
        abuf, av = operand(a, g.m, g.k)
        bbuf, bv = operand(b, g.k, g.n)
    direct_out = is_direct or window is not None
    fused = direct_out and (epilogue is None or epi is not None)
    acc_dtype = "int32" if dtype == MatType.I8 else "float32"
    target = out if fused else em.alloc(f"{out.name}.acc", (bt, m, nn), acc_dtype)
    a_m = (merged(av, g.m) or (1, 0)) if window is None else (m, k)
    b_k = (merged(bv, g.k) or (1, 0)) if window is None else (k, 0)
    out_ld = ((o_m or (1, 0))[1] if m > 1 else nn) if fused else nn
    problems = []
    for bi, bidx in enumerate(batches):
        a_off = av.offset + sum(i * av.strides[x] for i, x in zip(bidx, g.batch, strict=True))
        b_off = bv.offset + sum(i * bv.strides[x] for i, x in zip(bidx, g.batch, strict=True))
        o_off = sum(i * ostr[x] for i, x in zip(bidx, g.batch, strict=True)) if fused \
            else bi * m * nn
        host = None
        if window is None and abuf is a.buf and a.data is not None and a_m[1] >= 0:
            k_st = (merged(av, g.k) or (1, 1))[1]  # a constant read in place: its host copy
            host = np.asarray(a.data).reshape(-1)[
                a_off + np.arange(m)[:, None] * a_m[1] + np.arange(k)[None, :] * k_st]
        problems.append((
            Mat(abuf.addr + a_off * abuf.esize, m, k, max(a_m[1], 0) * abuf.esize, abuf.fmt,
                host),
            Mat(bbuf.addr + b_off * bbuf.esize, k, nn, max(b_k[1], 0) * bbuf.esize, bbuf.fmt),
            Mat(target.addr + o_off * target.esize, m, nn, max(out_ld, 1) * target.esize,
                target.fmt)))
    if window is not None:
        problems = [(Mat(abuf.addr, m, k, k * abuf.esize, abuf.fmt, a_host),
                     Mat(bbuf.addr, k, nn, 0, bbuf.fmt), problems[0][2])]
    emit_gemm(em, problems, dtype, epi, window[0] if window is not None else None)
    if fused:
        return
    em.barrier()
    # The epilogue (and the layout change) as an elementwise kernel over the output shape.
    strides = [0] * len(shape)
    cs = contiguous_strides((bt, m, nn))
    for axes, st in ((g.batch, cs[0]), (g.m, cs[1]), (g.n, cs[2])):
        sub = 1
        for ax in reversed(axes):
            strides[ax] = st * sub if shape[ax] > 1 else 0
            sub *= shape[ax]
    red_view = View(red_shape, tuple(0 if i in reduce_axes else strides[i]
                                     for i in range(len(shape))), 0, None)
    body = epilogue if epilogue is not None else Expr(ACC, (), None, acc_dtype)
    acc_view = red_view.reshape(out_shape)
    if acc_view is not None:
        emit_elementwise(em, out_shape, epi_leaves, body, out, Leaf(target, acc_view))
        return
    # Same flat order: run the epilogue over the reduced shape instead.
    leaves = []
    for lf in epi_leaves:
        v = lf.view.reshape(red_shape) if lf.view is not None and lf.imm is None else lf.view
        if lf.imm is None and v is None:
            raise CompileError("cannot lay out a contraction result for its epilogue")
        leaves.append(Leaf(lf.buf, v, lf.data, lf.imm))
    rq_views = {}
    for r in requants_of(body):
        rv = requant_view(r, out_shape).reshape(red_shape)
        if rv is None:
            raise CompileError("cannot lay out per-channel REQUANT params for the epilogue")
        rq_views[id(r)] = rv
    emit_elementwise(em, red_shape, leaves, body, out, Leaf(target, red_view), rq_views)


def _pixel_conv(em: Emitter, shape: tuple[int, ...], g: GemmAxes, a: Leaf, b: Leaf,
                epilogue: Expr | None, epi_leaves: list[Leaf], out: DramBuffer,
                out_shape: tuple[int, ...], red_shape: tuple[int, ...],
                ostr: tuple[int, ...], pad: PadSource | None = None) -> bool:
    """Emit a stride-1 K x K int8 convolution with its pixels streamed
    (`compiler.isa_conv_pixels`) when it suits: wide enough output rows, whole n-channel
    chunks, an epilogue with per-output-channel values only. False: nothing emitted."""
    n, v = em.cfg.n, b.view
    bias = None
    if g.batch or len(g.m) != 1 or len(g.n) != 2 or len(g.k) != 3 or a.data is None \
            or b.data is not None or v is None or b.buf is None or a.buf is None \
            or v.mask is not None or b.buf.dtype != "int8" or a.buf.dtype != "int8":
        return False
    oh, ow = g.n
    (co,) = g.m
    stride = v.strides[ow]
    if stride not in (1, 2) or ostr[ow] != 1 or any(st < 0 for st in v.strides) \
            or v.strides[oh] % stride:
        return False
    kws = [ax for ax in g.k if v.strides[ax] == 1]
    khs = [ax for ax in g.k if v.strides[ax] == v.strides[oh] // stride and ax not in kws]
    cins = [ax for ax in g.k if ax not in kws + khs]
    if len(kws) != 1 or len(khs) != 1 or len(cins) != 1:
        return False
    kh, kw, cin = khs[0], kws[0], cins[0]
    k = shape[kh]
    conv = PixelConv(b.buf, v.offset, v.strides[cin], shape[cin], shape[co], k, shape[oh],
                     shape[ow], (ostr[co], ostr[oh], ostr[ow]))
    if shape[kw] != k or k % 2 == 0 or k < 3 or conv.cin % n or conv.cout % n \
            or ostr[oh] != conv.ow:
        return False
    if stride == 1 and (v.strides[oh] != conv.wt or conv.ch_stride < conv.ht * conv.wt
                        or conv.ow < 20):
        return False
    wt = v.strides[oh] // 2
    ht = b.buf.shape[-2] if len(b.buf.shape) >= 2 else 0
    sconv = StridedConv(b.buf, v.strides[cin], ht, wt, conv.cin, conv.cout, k, conv.oh,
                        conv.ow, conv.out_strides, pad)
    if stride == 2 and (conv.ow < 12 or v.offset or tuple(b.buf.shape[-2:]) != (ht, wt)
                        or conv.ch_stride != ht * wt or 2 * sconv.hh < ht
                        or 2 * sconv.q < wt - (k - 1) // 2 - 1):
        return False
    if stride == 2 and pad is not None and (
            (pad.y_lo, pad.y_hi, pad.x_lo, pad.x_hi) != ((k - 1) // 2, ht - (k - 1) // 2,
                                                         (k - 1) // 2, wt - (k - 1) // 2)
            or pad.x_lo >= n):
        return False
    epi = None
    if epilogue is not None:
        for lf in epi_leaves:
            if lf.imm is None and lf.buf is not None and lf.view is not None:
                lf.imm = scalar_of(lf.buf, lf.view, lf.data)
        gp = GemmAxes([], [oh, ow], [co], list(g.k))
        fit = GemmEpilogue.fits(epilogue, epi_leaves, gp, out_shape, red_shape)
        if fit is None:
            return False
        rq_views = {id(r): requant_view(r, out_shape).reshape(red_shape)
                    for r in requants_of(epilogue)}
        expr, bi = _row_bias(epilogue, fit, g)  # per output channel: the accumulator's start
        if bi is not None:
            rq_views = {id(new): rq_views.get(id(old)) for old, new in
                        zip(requants_of(epilogue), requants_of(expr), strict=True)}
            lf = fit[bi]
            assert lf.view is not None and lf.data is not None
            ms = (merged(lf.view, [co]) or (1, 0))[1]
            bias = np.asarray(lf.data).reshape(-1)[lf.view.offset + np.arange(conv.cout) * ms]
            fit = list(fit)
            fit[bi] = Leaf(None, None, imm=Imm(0))
        epi = GemmEpilogue(em, expr, fit, gp, [()], conv.cout, rq_views, 0)
        if epi.acc_init or epi.tile_regions or epi.block_regions:
            return False
        epi.temp_regions = _temps_needed(em, epi)
    if stride == 2:
        splan = plan_strided(em.cfg, sconv, epi.resident_rows() if epi else 0,
                             epi.temp_regions if epi else 0)
        if splan is None:
            return False
        weights = _fold_for_window(a, g, shape, [kh, kw, cin], n)
        emit_strided_conv(em, sconv, weights, epi, out, *splan, bias)
        return True
    plan = plan_rows(em.cfg, conv, epi.resident_rows() if epi else 0,
                     epi.temp_regions if epi else 0)
    if plan is None:
        return False
    if pad is not None and not pad.serves(conv, v, b.buf):
        return False
    weights = _fold_for_window(a, g, shape, [kh, kw, cin], n)
    emit_pixel_conv(em, conv, weights, epi, out, *plan, bias, pad)
    return True


def _temps_needed(em: Emitter, epi: GemmEpilogue) -> int:
    """The fewest temporary regions the epilogue really takes (a trial emission), so the
    scratchpad they would reserve goes to longer pixel blocks instead."""
    planned = epi.temp_regions
    for temps in range(planned):
        trial = Emitter(em.cfg)
        epi.temp_regions, epi.mb = temps, 1
        tile = Tile(0, 0, 1, 0, em.cfg.n, 0)
        try:
            epi.emit_resident(trial, 0)
            if epi.block_regions:
                epi.emit_block_loads(trial, tile, 0)
            epi.emit_tile_compute(trial, tile, acc(0), 0, 0, 0)
        except CompileError:
            continue
        return temps
    return planned


def shifted_window(em: Emitter, b: Leaf, g: GemmAxes, shape: tuple[int, ...],
                   out_strides: tuple[int, ...]
                   ) -> tuple[DramBuffer, WindowB, list[int], bool] | None:
    """A convolution's image as column-shifted, row-phase-split copies
    Y[kw, ph, c, i, ow] = image[c, s*i + ph, s*ow + kw] (stride s, rows as wide as the
    output), and the window plan over them. Every (c, kh, kw) window position then reads
    the output pixels as one contiguous run of Y (at kw, ph = kh % s, offset (kh // s)*OW),
    so N tiles span output rows and fill all n lanes, and a strided convolution needs no
    im2col matrix (KH*KW times the image): the copy is min(s, KH)*KW/s^2 times the image.
    With fewer input channels than lanes (a stem), K chunks of channels would leave the
    array's rows idle: the (kh, c, kw) rows of an im2col matrix are then copied from Y's
    contiguous runs (cheap copies with unit lane stride) and chunked flat, K in that order
    (the last flag). None when the view is not such a convolution, or (stride 1) its rows
    already fill whole tiles and the image can be read in place."""
    v, n = b.view, em.cfg.n
    if v is None or b.buf is None or v.mask is not None or len(g.n) != 2 \
            or not 1 <= len(g.k) <= 3 or any(st < 0 for st in v.strides):
        return None
    oh, ow = g.n
    stride = v.strides[ow]
    if stride < 1 or v.strides[oh] % stride or out_strides[ow] != 1 \
            or out_strides[oh] != shape[ow]:
        return None
    s_row = v.strides[oh] // stride
    kws = [ax for ax in g.k if v.strides[ax] == 1]
    khs = [ax for ax in g.k if v.strides[ax] == s_row and ax not in kws]
    cins = [ax for ax in g.k if ax not in kws + khs]
    if len(kws) > 1 or len(khs) > 1 or len(cins) != 1 or v.strides[cins[0]] <= 0:
        return None
    cin = cins[0]
    if stride == 1 and (shape[ow] % n == 0 or s_row == shape[ow] or not khs):
        return None  # the image itself can be read in place
    kw_size = shape[kws[0]] if kws else 1
    gather = stride > 1 and b.buf.dtype == "int8" and \
        gather_fits(em.cfg, list(range(kw_size)), stride, shape[ow])
    if stride > 1 and not khs and not gather:
        return None  # a plain subsample: the matrix path is as cheap
    flat = shape[cin] < n and bool(kws) and stride > 1
    kh_size = shape[khs[0]] if khs else 1
    phases = min(stride, kh_size)
    rows = shape[oh] + (kh_size - 1) // stride
    width = shape[ow]
    # phases outside channels: a channel's rows of one phase follow the previous channel's
    # at the image's own row stride (when the image holds exactly `rows` rows per phase),
    # so the strided copy reads long runs with few DMAs
    yshape = (kw_size, phases, shape[cin], rows, width)
    ys = contiguous_strides(yshape)
    chunks = []
    outer = [ax for ax in g.k if ax != cin]
    for idx in np.ndindex(*[shape[ax] for ax in outer]):
        at = dict(zip(outer, idx, strict=True))
        kw_i = at.get(kws[0], 0) if kws else 0
        kh_i = at.get(khs[0], 0) if khs else 0
        base = kw_i * ys[0] + (kh_i % stride) * ys[1] + (kh_i // stride) * width
        for c0 in range(0, shape[cin], n):
            chunks.append((base + c0 * ys[2], min(n, shape[cin] - c0), ys[2]))
    total = shape[oh] * width
    tiles = [(c0, min(n, total - c0), c0) for c0 in range(0, total, n)]
    if len(chunks) * len(tiles) > 200_000:
        return None
    src = View(yshape, (1, s_row, v.strides[cin], stride * s_row, stride), v.offset, None)
    if flat and gather:  # the gathered rows go straight to their im2col rows
        kh, kw, c_n, kw_n = khs[0], kws[0], shape[cin], shape[kws[0]]
        k_total = shape[kh] * c_n * kw_n
        mat = em.alloc(f"{b.buf.name}.im2col", (k_total, total), b.buf.dtype)
        em.alloc(f"{b.buf.name}.im2col.tail", (n,), b.buf.dtype)  # the last tile reads past
        _, s_ph, s_c, s_r, _ = src.strides
        jobs = [GatherJob(src.offset + ph * s_ph + c * s_c, 0, rows, tuple(
            ((k * c_n + c) * kw_n * total, k // stride, k // stride + shape[oh])
            for k in range(shape[kh]) if k % stride == ph))
            for ph in range(phases) for c in range(c_n)]
        emit_lane_gather(em, b.buf, mat, jobs, s_r, [(k, k * total) for k in range(kw_n)],
                         stride, width)
        em.barrier()
        flat_chunks = tuple((j * total, min(n, k_total - j), total)
                            for j in range(0, k_total, n))
        return mat, WindowB(flat_chunks, tuple(tiles)), [kh, cin, kw], True
    ybuf = em.alloc(f"{b.buf.name}.shifted", yshape, b.buf.dtype)
    em.alloc(f"{b.buf.name}.shifted.tail", (n,), b.buf.dtype)  # the last tile reads past Y
    if gather:  # every stride-th column: selection MATMULs, not transposes
        _gather_shifted(em, b.buf, ybuf, src)
    else:
        emit_elementwise(em, yshape, [Leaf(b.buf, src)], Expr(LOAD, (), 0, b.buf.dtype), ybuf)
    em.barrier()
    if not flat:
        return ybuf, WindowB(tuple(chunks), tuple(tiles)), outer + [cin], False
    kh, kw, c_n, kw_n = khs[0], kws[0], shape[cin], shape[kws[0]]
    k_total = shape[kh] * c_n * kw_n
    mat = em.alloc(f"{b.buf.name}.im2col", (k_total, total), b.buf.dtype)
    em.alloc(f"{b.buf.name}.im2col.tail", (n,), b.buf.dtype)  # the last tile reads past it
    for kh_i in range(shape[kh]):  # rows (kh_i, c, kw): runs of Y, one copy per kh
        part = DramBuffer(f"{mat.name}.{kh_i}", mat.addr + kh_i * c_n * kw_n * total * mat.esize,
                          (c_n, kw_n, total), mat.dtype)
        run = View((c_n, kw_n, total), (ys[2], ys[0], 1),
                   (kh_i % stride) * ys[1] + (kh_i // stride) * width, None)
        emit_elementwise(em, part.shape, [Leaf(ybuf, run)], Expr(LOAD, (), 0, mat.dtype), part)
        em.barrier()
    flat_chunks = tuple((j * total, min(n, k_total - j), total) for j in range(0, k_total, n))
    return mat, WindowB(flat_chunks, tuple(tiles)), [kh, cin, kw], True


def _gather_shifted(em: Emitter, image: DramBuffer, ybuf: DramBuffer, src: View) -> None:
    """Y = image through `src` (axes kw, phase, channel, row, column; column stride > 1)
    by lane gathers: one job per phase when the channels' rows continue each other at one
    stride (the image holds exactly `rows` rows of the phase per channel), else per channel."""
    kws, phases, chans, rows, width = src.shape
    _, s_ph, s_c, s_row, stride = src.strides
    ys = contiguous_strides(src.shape)
    jobs = []
    for ph in range(phases):
        if s_c == rows * s_row:
            jobs.append(GatherJob(src.offset + ph * s_ph, ph * ys[1], chans * rows))
        else:
            jobs += [GatherJob(src.offset + ph * s_ph + c * s_c, ph * ys[1] + c * ys[2], rows)
                     for c in range(chans)]
    emit_lane_gather(em, image, ybuf, jobs, s_row, [(kw, kw * ys[0]) for kw in range(kws)],
                     stride, width)


def window_operand(view: View, g: GemmAxes, shape: tuple[int, ...], n: int,
                   out_strides: tuple[int, ...]) -> tuple[WindowB, list[int]] | None:
    """Address B (K x N) straight in its image when every N tile is a contiguous run of
    the innermost N axis and every K chunk a strided run of one K axis (stride-1
    convolutions over an already padded image). Returns the plan and the K axis order
    (outer axes, then the chunked one) A must follow."""
    if view.mask is not None or not g.n or not g.k or any(st < 0 for st in view.strides):
        return None
    inner_n = g.n[-1]
    if view.strides[inner_n] != 1:
        return None
    inner_k = max(g.k, key=lambda ax: (shape[ax], -g.k.index(ax)))
    outer_k = [ax for ax in g.k if ax != inner_k]
    chunks = []
    for idx in np.ndindex(*[shape[ax] for ax in outer_k]):
        base = view.offset + sum(i * view.strides[ax] for i, ax in zip(idx, outer_k, strict=True))
        for c0 in range(0, shape[inner_k], n):
            chunks.append((base + c0 * view.strides[inner_k], min(n, shape[inner_k] - c0),
                           view.strides[inner_k]))
    tiles = []  # (output element offset, columns, image element offset) per N tile
    flat = all(view.strides[a] == view.strides[b] * shape[b]
               and out_strides[a] == out_strides[b] * shape[b]
               for a, b in zip(g.n, g.n[1:], strict=False))
    if flat:  # the N axes read and write as one run: tiles may span them
        total = math.prod(shape[ax] for ax in g.n)
        tiles = [(c0, min(n, total - c0), c0) for c0 in range(0, total, n)]
    else:
        outer_n = g.n[:-1]
        for idx in np.ndindex(*[shape[ax] for ax in outer_n]):
            n_base = sum(i * out_strides[ax] for i, ax in zip(idx, outer_n, strict=True))
            off = sum(i * view.strides[ax] for i, ax in zip(idx, outer_n, strict=True))
            for c0 in range(0, shape[inner_n], n):
                tiles.append((n_base + c0, min(n, shape[inner_n] - c0), off + c0))
    if len(chunks) * len(tiles) > 200_000:
        return None
    return WindowB(tuple(chunks), tuple(tiles)), outer_k + [inner_k]


def _fold_for_window(a: Leaf, g: GemmAxes, shape: tuple[int, ...], k_order: list[int],
                     n: int, flat: bool = False) -> np.ndarray:
    """The constant A as (M, chunks * n): K in `k_order`, the innermost K axis (with
    `flat`, all of K) padded to whole n-wide chunks with zeros (they meet stale B rows,
    so they must be zero)."""
    assert a.view is not None and a.data is not None
    bounds = [(0, s) if (i in g.m or i in g.k) else (0, 1) for i, s in enumerate(shape)]
    rest = [i for i in range(len(shape)) if i not in g.m and i not in k_order]
    v = a.view.shrink(bounds).permute(g.m + k_order + rest)
    full = tuple(shape[i] for i in g.m + k_order)
    arr = v.gather(np.asarray(a.data).reshape(-1)).reshape(full)
    m = int(np.prod([shape[i] for i in g.m], dtype=np.int64))
    inner = int(np.prod([shape[i] for i in k_order], dtype=np.int64)) if flat \
        else shape[k_order[-1]]
    padded = -(-inner // n) * n
    arr = arr.reshape(m, -1, inner)
    out = np.zeros((m, arr.shape[1], padded), dtype=arr.dtype)
    out[:, :, :inner] = arr
    return out.reshape(m, -1)
