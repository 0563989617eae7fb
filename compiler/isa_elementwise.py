"""Elementwise and reduce kernels to ISA code, on the vector unit.

Each `emit_*` function writes one kernel's instructions and leaves the token channels for
`Emitter.barrier` to drain. Row blocks alternate between two scratchpad buffers so the
load of block b + 1 and the store of block b - 1 overlap the compute of block b.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import Op
from compiler.isa_builder import CompileError, Credits, DramBuffer, Emitter, sp
from compiler.isa_vector import (
    AccessPlan,
    ExprEmitter,
    Imm,
    Operand,
    RegionPool,
    Rows,
    VectorBlock,
    access_mode,
    collapse,
    count_temps,
    f32_bits,
    imm_bits,
    row_offsets,
    scratch_rows,
    shared_rows,
    split_lanes,
    vdtype,
)
from compiler.schedule import ACC, LOAD, Expr
from compiler.view import View
from isa.config import ChipConfig
from isa.table import Axis, BinaryFn, Fmt, ReduceFn, TernaryFn


def scalar_of(buf: DramBuffer, view: View, data: np.ndarray | None) -> Imm | None:
    """A constant read through an all-zero-stride view is one immediate."""
    if data is None or any(view.strides) or (view.mask is not None and not view.is_empty):
        return None
    value = 0 if view.is_empty else np.asarray(data).reshape(-1)[view.offset]
    return Imm(imm_bits(value, buf.dtype))


@dataclass
class Leaf:
    """An expression leaf's source: a DRAM buffer seen through a View (or an immediate)."""

    buf: DramBuffer | None
    view: View | None
    data: np.ndarray | None = None  # constant contents, when known at compile time
    imm: Imm | None = None


def requant_view(expr: Expr, shape: tuple[int, ...]) -> View:
    """A View of the channel index for REQUANT params over `shape` (stride 1 on the axis)."""
    arg = expr.arg
    strides = [0] * len(shape)
    if arg.multiplier.size > 1 and shape:
        strides[arg.axis] = 1
    return View(tuple(shape), tuple(strides), 0, None)


def requants_of(expr: Expr) -> list[Expr]:
    out = [expr] if expr.op is Op.REQUANT else []
    for s in expr.srcs:
        out += requants_of(s)
    return out


def emit_elementwise(em: Emitter, shape: tuple[int, ...], leaves: list[Leaf], body: Expr,
                     out: DramBuffer, acc_leaf: Leaf | None = None,
                     rq_views: dict[int, View] | None = None) -> None:
    """out (contiguous over `shape`) = body evaluated lane by lane.

    `rq_views` gives, per REQUANT node, the View of its channel index over `shape` (when
    the node's channel axis is not an axis of `shape`). A row too long for the scratchpad
    (a long gathered or masked last axis on a small chip) is processed in column windows
    of whole lane chunks, one pass each, so every graph compiles on every chip.
    """
    n = em.cfg.n
    all_leaves = list(leaves) + ([acc_leaf] if acc_leaf is not None else [])
    for leaf in all_leaves:
        if leaf.imm is None and leaf.buf is not None and leaf.view is not None:
            leaf.imm = scalar_of(leaf.buf, leaf.view, leaf.data)
    loaded = [lf for lf in all_leaves if lf.imm is None]
    rqs = requants_of(body)
    rq_views = rq_views or {}
    views = [lf.view for lf in loaded] + [rq_views.get(id(r)) or requant_view(r, shape)
                                          for r in rqs] \
        + [View.contiguous(shape)]
    cshape, cviews = collapse(tuple(shape), views)
    cshape, cviews = split_lanes(cshape, cviews, n)
    if len(cshape) == 1:
        cshape = (1,) + cshape
        cviews = [View((1,) + v.shape, (0,) + v.strides, v.offset,
                       None if v.mask is None else ((0, 1),) + v.mask) for v in cviews]
    d = cshape[-1]
    chunks = -(-d // n)
    passes = 1
    while True:
        width = -(-chunks // passes) * n  # columns per pass, whole lane chunks
        try:
            plans = [_ColumnPass.plan(em.cfg, *column_window(cshape, cviews, c0, width),
                                      loaded, rqs, body, out.dtype)
                     for c0 in range(0, d, width)]
            break
        except _TooWide as exc:
            if width == n:
                raise CompileError(str(exc)) from None
            # rows scale with the chunks of a pass: jump close to the count that fits
            passes = max(passes + 1, -(-passes * exc.need // max(exc.budget, 1)))
            passes = min(passes, chunks)
    for i, cp in enumerate(plans):
        if i:
            em.barrier()  # the next pass reuses the scratchpad buffers and resident rows
        cp.emit(em, all_leaves, body, out, d)


def column_window(shape: tuple[int, ...], views: list[View], c0: int, width: int
                  ) -> tuple[tuple[int, ...], list[View]]:
    """The iteration space and views restricted to columns c0 .. c0+width-1."""
    width = min(width, shape[-1] - c0)
    if c0 == 0 and width == shape[-1]:
        return shape, views
    bounds = [(0, s) for s in shape[:-1]] + [(c0, c0 + width)]
    return shape[:-1] + (width,), [v.shrink(bounds) for v in views]


class _TooWide(CompileError):
    """A pass needs more scratchpad rows than the chip has (planning only: nothing emitted)."""

    def __init__(self, message: str, need: int, budget: int) -> None:
        super().__init__(message)
        self.need, self.budget = need, budget


@dataclass
class _ColumnPass:
    """One pass of an elementwise kernel over a window of columns: its access plans, its
    resident rows and its block size, fixed before anything is emitted."""

    shape: tuple[int, ...]
    views: list[View]
    plans: list[AccessPlan]
    fold: list[bool]  # a constant gathered on the host into a contiguous buffer
    rq_views: list[View]
    pb: int
    per_row: int
    shared: int
    copy: bool  # a bare copy: stored straight from the rows it was loaded into

    @staticmethod
    def plan(cfg: ChipConfig, cshape: tuple[int, ...], cviews: list[View], loaded: list[Leaf],
             rqs: list[Expr], body: Expr, out_dtype: str) -> _ColumnPass:
        n = cfg.n
        d = cshape[-1]
        chunks = -(-d // n)
        p_total = math.prod(cshape[:-1])
        plans: list[AccessPlan] = []
        fold: list[bool] = []
        for lf, view in zip(loaded, cviews, strict=False):
            assert lf.buf is not None
            mode = access_mode(view)
            folded = mode == "gather" and lf.data is not None
            if folded:
                mode = "direct"
            fold.append(folded)
            plans.append(AccessPlan(lf.buf, view, mode, scratch_rows(mode, view, chunks, n)))
        rq_views = cviews[len(loaded):len(loaded) + len(rqs)]
        masks: set[tuple[int, int]] = set()
        for p, f in zip(plans, fold, strict=True):
            if p.view.mask is not None and not p.view.is_empty and not f:
                lo, hi = p.view.mask[-1]
                for c in range(chunks):
                    a, b = max(lo - c * n, 0), min(hi - c * n, n)
                    if not (a <= 0 and b >= min(n, d - c * n)):
                        masks |= {(a, max(a, b)), (0, 0)}
        lane_rq = sum(1 for v in rq_views if _lane_params(v))
        res_count = len(masks) + 2 * chunks * lane_rq
        n_tables = len(rq_views) - lane_rq
        temps = count_temps(body) + 1
        budget = cfg.sp_rows - res_count
        copy = body.op == LOAD and not rqs and len(loaded) == 1 \
            and loaded[0].buf is not None and loaded[0].buf.dtype == body.dtype == out_dtype \
            and all(p.mode == "direct" for p in plans)
        while True:
            shared = shared_rows([(p.mode, p.view) for p in plans], chunks)
            per_row = sum(chunks + p.scratch_per_row for p in plans) \
                + (0 if copy else (1 + temps) * chunks) + 2 * chunks * n_tables + shared
            pb = min(p_total, max(0, budget // (2 * per_row)), 4096)
            if pb < 1:
                raise _TooWide(f"an elementwise kernel over {list(cshape)} needs "
                               f"{per_row * 2} scratchpad rows per block row; the chip has "
                               f"{budget}", per_row * 2, budget)
            if any(p.mode == "gather" for p in plans):
                pb = min(pb, 64)
            if not any(p.mode == "strided" for p in plans):
                break
            pb = (pb // n) * n if pb >= n else n  # whole n-row blocks get transposed
            if 2 * per_row * pb <= budget:
                break
            for p in plans:  # too big for the transposes: fall back to element gathers
                if p.mode == "strided":
                    p.mode, p.scratch_per_row = "gather", scratch_rows("gather", p.view, chunks, n)
        return _ColumnPass(cshape, cviews, plans, fold, rq_views, pb, per_row, shared, copy)

    def emit(self, em: Emitter, all_leaves: list[Leaf], body: Expr, out: DramBuffer,
             out_row: int) -> None:
        """Emit the pass; `out_row` is the element stride between outer rows of `out`."""
        n = em.cfg.n
        cshape, pb, per_row, shared = self.shape, self.pb, self.per_row, self.shared
        loaded = [lf for lf in all_leaves if lf.imm is None]
        rqs = requants_of(body)
        out_view = self.views[-1]
        d = cshape[-1]
        p_total = math.prod(cshape[:-1])
        chunks = -(-d // n)
        plans = self.plans
        for i, (lf, folded) in enumerate(zip(loaded, self.fold, strict=True)):
            if folded:  # fold a constant's layout on the host
                assert lf.buf is not None and lf.data is not None
                arr = plans[i].view.gather(np.asarray(lf.data).reshape(-1)).astype(
                    lf.data.dtype)
                buf = em.constant(f"{lf.buf.name}.relayout", arr)
                plans[i] = AccessPlan(buf, View.contiguous(cshape), "direct", 0)
        # Resident rows: lane masks and per-lane REQUANT params.
        resident: list[np.ndarray] = []
        mask_index: dict[tuple[int, int], int] = {}

        def mask_row(a: int, b: int) -> int:
            if (a, b) not in mask_index:
                row = np.zeros(n, np.int32)
                row[a:b] = f32_bits(1.0)
                mask_index[(a, b)] = len(resident)
                resident.append(row)
            return mask_index[(a, b)]

        for plan in plans:  # masks are known up front: reserve them now
            if plan.view.mask is not None and not plan.view.is_empty:
                lo, hi = plan.view.mask[-1]
                for c in range(chunks):
                    a, b = max(lo - c * n, 0), min(hi - c * n, n)
                    if not (a <= 0 and b >= min(n, d - c * n)):
                        mask_row(a, max(a, b))
                        mask_row(0, 0)
        rq_rows: dict[int, tuple[str, int]] = {}  # id(expr) -> (kind, first resident row)
        rq_tables: list[tuple[Expr, np.ndarray]] = []
        for r, v in zip(rqs, self.rq_views, strict=True):
            mult = np.asarray(r.arg.multiplier, np.int64)
            shift = np.asarray(r.arg.shift, np.int64)
            if _lane_params(v):
                rq_rows[id(r)] = ("lane", len(resident))
                for c in range(chunks):
                    lane = np.arange(c * n, c * n + n)
                    idx = np.clip(v.offset + lane * v.strides[-1], 0, mult.size - 1)
                    resident.append(mult[idx].astype(np.int64).astype(np.int32))
                    resident.append(shift[idx].astype(np.int32))
            else:  # per-row params: a host-built table of (multiplier, shift) row pairs
                idx, _ = View(v.shape, v.strides, v.offset, None).indices()
                table = np.stack([mult[idx], shift[idx]], axis=-2)  # (..., 2, d)
                table = table.reshape(p_total, 2, d)
                padded = np.zeros((p_total, chunks, 2, n), np.int64)
                for c in range(chunks):
                    w = min(n, d - c * n)
                    padded[:, c, :, :w] = table[:, :, c * n:c * n + w]
                rq_rows[id(r)] = ("row", len(rq_tables))
                rq_tables.append((r, padded.astype(np.int32)))
        res_base = 0
        res_count = len(resident)
        buf_rows = per_row * pb
        if resident:
            table = np.stack(resident).astype(np.int32)
            cbuf = em.constant("vector.params", table)
            em.emit("load", sram=sp(res_base), dram=cbuf.addr, stride=n * 4,
                    rows=len(resident), cols=n, fmt=int(Fmt.X32))
        rq_dram = [em.constant("requant.rows", t.reshape(-1, n)) for _, t in rq_tables]
        # A bare copy is stored from the rows it was loaded into (after any in-place lane
        # masks), sparing the compute unit a MOVE per row; a buffer is then held until its
        # store is done, so the load of block b + 1 waits for the store of block b - 1.
        copy = self.copy
        data_free, out_free = Credits(1 if copy else 2), Credits(1 if copy else 2)
        blocks = list(range(0, p_total, pb))
        for bi, p0 in enumerate(blocks):
            count = min(pb, p_total - p0)
            base = res_count + (bi % 2) * buf_rows
            block = VectorBlock(em, d, pb)
            block.shared = base + (per_row - shared) * pb
            # Load unit.
            start = len(em.code)
            owe = data_free.need(bi)
            region = base
            leaf_rows: dict[int, int] = {}
            for lf, plan in zip(loaded, plans, strict=True):
                scratch = region + pb * chunks
                block.emit_access(plan, p0, count, region, scratch,
                                  lambda a, b: res_base + mask_row(a, b))
                leaf_rows[id(lf)] = region
                region = scratch + pb * plan.scratch_per_row
            rq_base = region
            for ti in range(len(rq_tables)):
                em.emit("load", sram=sp(rq_base + ti * 2 * chunks * pb),
                        dram=rq_dram[ti].addr + p0 * chunks * 2 * n * 4, stride=n * 4,
                        rows=count * chunks * 2, cols=n, fmt=int(Fmt.X32))
            region = rq_base + len(rq_tables) * 2 * chunks * pb
            dst_row = leaf_rows[id(loaded[0])] if copy else region
            temp_base = dst_row + chunks * pb
            if len(em.code) == start:
                em.sync("load")
            em.flag(len(em.code) - 1, "push_next")
            em.pops(start, "load", "pop_next", owe)
            # Compute unit.
            start = len(em.code)
            for fix in block.fixups:
                fix()
            temps = count_temps(body) + 1
            for c in range(chunks):
                pool = RegionPool(temp_base + c * pb, chunks * pb, temps)
                leaf_of = _leaf_resolver(all_leaves, leaf_rows, c, pb)

                def rq_row(e: Expr, c: int = c, rq_start: int = rq_base
                           ) -> int | tuple[int, int]:
                    kind, idx = rq_rows[id(e)]
                    if kind == "lane":
                        return res_base + idx + 2 * c
                    # per-row params: row pairs (multiplier, shift) for each outer row
                    return rq_start + idx * 2 * chunks * pb + c * 2, 2 * chunks

                ExprEmitter(em, count, leaf_of, pool, rq_row).emit(body, sp(dst_row + c * pb))
            if len(em.code) == start:
                em.sync("compute")
            em.flag(len(em.code) - 1, "push_prev", "push_next")
            em.flag(start, "pop_prev")
            em.pops(start, "compute", "pop_next", out_free.need(bi))
            # Store unit.
            start = len(em.code)
            off, _ = row_offsets(out_view, p0, count)
            for c in range(chunks):
                cols = min(n, d - c * n)
                em.emit("store", sram=sp(dst_row + c * pb), dram=out.addr + (int(off[0]) + c * n)
                        * out.esize, stride=out_row * out.esize, rows=count, cols=cols,
                        fmt=int(out.fmt))
            em.flag(start, "pop_prev")
            em.flag(len(em.code) - 1, "push_prev")


def _lane_params(v: View) -> bool:
    """REQUANT params that change only along the lanes: resident rows, one pair per chunk."""
    return not any(st for st, sz in zip(v.strides[:-1], v.shape[:-1], strict=True) if sz > 1)


def _leaf_resolver(leaves: list[Leaf], rows: dict[int, int], c: int, pb: int
                   ) -> Callable[[Expr], Operand]:
    def resolve(e: Expr) -> Operand:
        lf = leaves[-1] if e.op == ACC else leaves[e.arg]
        if lf.imm is not None:
            return lf.imm
        return Rows(sp(rows[id(lf)] + c * pb))
    return resolve


# Reductions ------------------------------------------------------------------------------

def emit_reduce_rows(em: Emitter, src: DramBuffer, p_total: int, q: int, fn: Op,
                     epilogue: Expr | None, epi_leaves: list[Leaf], out: DramBuffer,
                     out_shape: tuple[int, ...]) -> None:
    """out[p] = epilogue(reduce over q of src[p, :]) with src contiguous (p_total, q).

    A row longer than the scratchpad holds is reduced in column windows first, into a
    (p_total, windows) partial buffer, which is then reduced in turn (with the epilogue).
    """
    try:
        _reduce_pass(em, src, View((p_total, q), (q, 1), 0, None), fn, epilogue, epi_leaves,
                     out.addr, 1, out, out_shape)
        return
    except _TooWide:
        pass
    # a pass without an epilogue keeps `chunks` rows and one result row per outer row in
    # each of its two buffers, next to 2 resident rows and 8 spare ones
    width = ((em.cfg.sp_rows - 2 - 8) // 2 - 1) * em.cfg.n
    windows = -(-q // width)
    part = em.alloc(f"{src.name}.windows", (p_total, windows), src.dtype)
    for w in range(windows):
        if w:
            em.barrier()
        cols = min(width, q - w * width)
        _reduce_pass(em, src, View((p_total, cols), (q, 1), w * width, None), fn, None, [],
                     part.addr + w * part.esize, windows, part, (p_total,))
    em.barrier()
    emit_reduce_rows(em, part, p_total, windows, fn, epilogue, epi_leaves, out, out_shape)


def _reduce_pass(em: Emitter, src: DramBuffer, src_view: View, fn: Op, epilogue: Expr | None,
                 epi_leaves: list[Leaf], out_addr: int, out_stride: int, out: DramBuffer,
                 out_shape: tuple[int, ...]) -> None:
    """out[p * out_stride] = epilogue(reduce of row p of src_view), src_view (p_total, q)
    with unit stride along q."""
    cfg, n = em.cfg, em.cfg.n
    p_total, q = src_view.shape
    chunks = -(-q // n)
    is_float = src.dtype == "float32"
    rfn = ReduceFn.SUM if fn is Op.REDUCE_SUM else ReduceFn.MAX
    bfn = BinaryFn.ADD if fn is Op.REDUCE_SUM else BinaryFn.MAX
    ident = 0.0 if fn is Op.REDUCE_SUM else (-np.inf if is_float else -(1 << 31))
    res = 2  # resident rows: the tail's lane mask and the identity
    leaves = [Leaf(lf.buf, lf.view, lf.data, lf.imm) for lf in epi_leaves]
    for lf in leaves:
        if lf.imm is None and lf.buf is not None and lf.view is not None:
            lf.imm = scalar_of(lf.buf, lf.view, lf.data)
    loaded = [lf for lf in leaves if lf.imm is None]
    if epilogue is not None and requants_of(epilogue):
        rq = requants_of(epilogue)
        if any(r.arg.multiplier.size > 1 for r in rq):
            raise CompileError("per-channel REQUANT after a reduction is not supported on "
                               "the chip")
    temps = (count_temps(epilogue) + 1) if epilogue is not None else 0
    per_row = chunks + len(loaded) + temps + 1
    pb = min(p_total, (cfg.sp_rows - res - 8) // (2 * per_row), 4096)
    if pb < 1:
        raise _TooWide(f"a reduction over {q} elements does not fit the scratchpad",
                       2 * per_row, cfg.sp_rows - res - 8)
    buf_rows = per_row * pb
    tail = q - (chunks - 1) * n
    mask = np.zeros(n, np.int32)
    mask[:tail] = f32_bits(1.0)
    ident_row = np.full(n, imm_bits(ident, src.dtype), np.uint32).view(np.int32)
    cbuf = em.constant("reduce.params", np.stack([mask, ident_row]))
    em.emit("load", sram=sp(0), dram=cbuf.addr, stride=n * 4, rows=res, cols=n,
            fmt=int(Fmt.X32))
    rq_param_rows: dict[int, int] = {}
    if epilogue is not None:
        for r in requants_of(epilogue):
            row = np.stack([np.full(n, int(r.arg.multiplier.reshape(-1)[0]), np.int64),
                            np.full(n, int(r.arg.shift.reshape(-1)[0]), np.int64)])
            b = em.constant("reduce.requant", row.astype(np.int32))
            rq_param_rows[id(r)] = cfg.sp_rows - 2 * (len(rq_param_rows) + 1)
            em.emit("load", sram=sp(rq_param_rows[id(r)]), dram=b.addr, stride=n * 4, rows=2,
                    cols=n, fmt=int(Fmt.X32))
    data_free, out_free = Credits(2), Credits(2)
    for bi, p0 in enumerate(range(0, p_total, pb)):
        count = min(pb, p_total - p0)
        base = res + (bi % 2) * buf_rows
        block = VectorBlock(em, q, pb)
        start = len(em.code)
        owe = data_free.need(bi)
        block.emit_access(AccessPlan(src, src_view, "direct", 0), p0, count, base, base,
                          lambda a, b: 0)
        rows_of: dict[int, int] = {}
        region = base + chunks * pb
        for lf in loaded:
            assert lf.view is not None and lf.buf is not None
            view = lf.view.reshape(tuple(out_shape) + (1,)) if out_shape else \
                View((1, 1), (0, 0), lf.view.offset, None)
            if view is None:
                raise CompileError("reduce epilogue input view cannot be laid out")
            eblock = VectorBlock(em, 1, pb)
            eblock.emit_access(AccessPlan(lf.buf, view, "direct", 0), p0, count, region, region,
                               lambda a, b: 0)
            block.fixups += eblock.fixups
            rows_of[id(lf)] = region
            region += pb
        dst = region
        temp_base = dst + pb
        em.flag(len(em.code) - 1, "push_next")
        em.pops(start, "load", "pop_next", owe)
        start = len(em.code)
        for fix in block.fixups:
            fix()
        dt = vdtype(src.dtype)
        last = base + (chunks - 1) * pb
        if tail < n:
            em.emit("ternary", dst=sp(last), src1=sp(0), src2=sp(last), src3=sp(1), count=count,
                    fn=int(TernaryFn.WHERE), dtype=dt, step1=0, step2=1, step3=0)
        if pb == 1 and chunks > 1:  # chunk rows are adjacent: one rows-reduction
            em.emit("reduce", dst=sp(base), src1=sp(base), count=chunks, fn=int(rfn),
                    axis=int(Axis.ROWS), dtype=dt)
        else:
            for c in range(1, chunks):
                em.emit("binary", dst=sp(base), src1=sp(base), src2=sp(base + c * pb),
                        count=count, fn=int(bfn), dtype=dt, step1=1, step2=1)
        # The result goes to its own region: the next load into this buffer may start
        # as soon as compute is done, while the store may still be reading the result.
        em.emit("reduce", dst=sp(dst), src1=sp(base), count=count, fn=int(rfn),
                axis=int(Axis.LANES), dtype=dt)
        result = sp(dst)
        if epilogue is not None:
            def leaf_of(e: Expr, rows_of: dict[int, int] = rows_of, red: int = dst
                        ) -> Operand:
                if e.op == ACC:
                    return Rows(sp(red))
                lf = leaves[e.arg]
                return lf.imm if lf.imm is not None else Rows(sp(rows_of[id(lf)]))
            pool = RegionPool(temp_base, pb, temps)
            final = pool.take()
            ExprEmitter(em, count, leaf_of, pool, lambda e: rq_param_rows[id(e)]).emit(
                epilogue, sp(final))
            result = sp(final)
        em.flag(len(em.code) - 1, "push_prev", "push_next")
        em.flag(start, "pop_prev")
        em.pops(start, "compute", "pop_next", out_free.need(bi))
        em.emit("store", ("pop_prev", "push_prev"), sram=result,
                dram=out_addr + p0 * out_stride * out.esize, stride=out_stride * out.esize,
                rows=count, cols=1, fmt=int(out.fmt))
