"""Vector-unit lowering: Views into scratchpad rows, expression trees lane by lane.

Layout. A kernel's iteration space is brought to `outer x D` (D = the innermost axis,
mapped onto lanes). A block of `pb` outer rows occupies `chunks * pb` scratchpad rows,
chunk-major: lanes `c*n .. c*n+n-1` of outer row p live in row `c*pb + p`. Every operand
of an expression shares that layout, so each op is one instruction over the block.

Loading a View (`emit_access`): the DMA reads `cols` consecutive elements per row, rows
any stride apart, so the innermost axis must have stride 1 ("direct"), 0 ("broadcast":
load lane 0, then MOVE bcast) or anything else ("gather": element by element into lane 0
of scratch rows, then MOVE transpose into lanes). Outer rows are grouped into runs of
equal DRAM stride, one DMA per run and chunk. Masked (padded) rows are filled with zeros;
a mask across lanes is applied with WHERE and a 0/1 lane-mask row.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import Op
from compiler.isa_builder import CompileError, DramBuffer, Emitter, sp
from compiler.schedule import ACC, LOAD, Expr
from compiler.view import View
from isa.table import BinaryFn, DType, Fmt, MoveFn, TernaryFn, UnaryFn


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def imm_bits(value: float | int, dtype: str) -> int:
    if dtype == "float32":
        return f32_bits(float(value))
    return int(np.int64(value)) & 0xFFFFFFFF


@dataclass(frozen=True)
class Rows:
    """`count` rows starting at local address `addr`; step 0 repeats one row."""

    addr: int
    step: int = 1


@dataclass(frozen=True)
class Imm:
    """A scalar in every lane (32-bit pattern)."""

    bits: int


Operand = Rows | Imm


class RegionPool:
    """Scratchpad regions of a fixed size for temporaries (a free list)."""

    def __init__(self, base: int, size: int, count: int) -> None:
        self.free = [base + i * size for i in range(count)][::-1]
        self.size = size

    def take(self) -> int:
        if not self.free:
            raise CompileError("expression needs more temporaries than planned")
        return self.free.pop()

    def give(self, row: int) -> None:
        self.free.append(row)


def count_temps(expr: Expr) -> int:
    """Temporaries `emit_expr` needs for `expr` (the spine is computed in place)."""
    if expr.op in (LOAD, ACC):
        return 1  # a leaf root is copied; an imm operand may need one filled row
    kids = [c for c in expr.srcs if c.op not in (LOAD, ACC)]
    need = [count_temps(c) for c in kids]
    spine = _spine(expr)
    total, held = 0, 0
    for i, c in enumerate(expr.srcs):
        if c.op in (LOAD, ACC):
            continue
        k = need[kids.index(c)]
        total = max(total, held + k + (0 if i == spine else 1))
        if i != spine:
            held += 1
    return max(total, held) + 2  # + filled rows for immediates


def _spine(expr: Expr) -> int | None:
    best = None
    for i, c in enumerate(expr.srcs):
        if c.op in (LOAD, ACC):
            continue
        if any(leaf.op == ACC for leaf in c.leaves()):
            return i
        if best is None:
            best = i
    return best


def vdtype(dtype: str) -> int:
    return int(DType.F32 if dtype == "float32" else DType.I32)


_UNARY = {Op.NEG: UnaryFn.NEG, Op.RELU: UnaryFn.RELU, Op.EXP2: UnaryFn.EXP2,
          Op.LOG2: UnaryFn.LOG2, Op.SIN: UnaryFn.SIN, Op.SQRT: UnaryFn.SQRT,
          Op.RECIP: UnaryFn.RECIP}
_BINARY = {Op.ADD: BinaryFn.ADD, Op.SUB: BinaryFn.SUB, Op.MUL: BinaryFn.MUL, Op.DIV: BinaryFn.DIV,
           Op.MAX: BinaryFn.MAX, Op.MIN: BinaryFn.MIN, Op.CMPLT: BinaryFn.CMPLT,
           Op.CMPEQ: BinaryFn.CMPEQ}
_COMMUTES = {Op.ADD, Op.MUL, Op.MAX, Op.MIN, Op.CMPEQ}
_WRAPS_INT8 = {Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.NEG, Op.MULACC}


class ExprEmitter:
    """Emits one expression tree over `count` rows on the compute unit."""

    def __init__(self, em: Emitter, count: int, leaf: Callable[[Expr], Operand],
                 temps: RegionPool,
                 requant_rows: Callable[[Expr], int | tuple[int, ...]]) -> None:
        self.em, self.count, self.leaf, self.temps = em, count, leaf, temps
        self.requant_rows = requant_rows

    def emit(self, expr: Expr, dst: int) -> None:
        """Compute `expr` into the rows at local address `dst`."""
        em, count = self.em, self.count
        if expr.op in (LOAD, ACC):
            opnd = self.leaf(expr)
            if isinstance(opnd, Imm):
                em.emit("move", dst=dst, count=count, fn=int(MoveFn.FILL), dstride=1,
                        imm=opnd.bits)
            elif opnd.addr != dst or opnd.step != 1:
                em.emit("move", dst=dst, src1=opnd.addr, count=count, fn=int(MoveFn.COPY),
                        dstride=1, sstride=opnd.step)
            return
        spine = _spine(expr)
        operands: list[Operand] = []
        held: list[int] = []
        for i, c in enumerate(expr.srcs):
            if c.op in (LOAD, ACC):
                operands.append(self.leaf(c))
            elif i == spine:
                self.emit(c, dst)
                operands.append(Rows(dst))
            else:
                t = self.temps.take()
                held.append(t)
                self.emit(c, sp(t))
                operands.append(Rows(sp(t)))
        self.op(expr, operands, dst, held)
        for t in held:
            self.temps.give(t)

    def row_of(self, opnd: Operand, held: list[int]) -> Rows:
        """An immediate as one filled row (step 0), for ops that need rows."""
        if isinstance(opnd, Rows):
            return opnd
        t = self.temps.take()
        held.append(t)
        self.em.emit("move", dst=sp(t), count=1, fn=int(MoveFn.FILL), dstride=1, imm=opnd.bits)
        return Rows(sp(t), 0)

    def wrap8(self, dst: int) -> None:
        for fn in (BinaryFn.SHL, BinaryFn.SHR):
            self.em.emit("binary", dst=dst, src1=dst, count=self.count, fn=int(fn),
                         dtype=int(DType.I32), step1=1, imm_mode=1, imm=24)

    def op(self, expr: Expr, ops: list[Operand], dst: int, held: list[int]) -> None:
        em, count, o = self.em, self.count, expr.op
        src_dtype = expr.srcs[0].dtype
        if o is Op.CAST:
            self.cast(src_dtype, expr.dtype, ops[0], dst, held)
            return
        if o in _UNARY:
            a = self.row_of(ops[0], held)
            em.emit("unary", dst=dst, src1=a.addr, count=count, fn=int(_UNARY[o]),
                    dtype=vdtype(src_dtype), step1=a.step)
        elif o in _BINARY:
            a, b = ops
            if isinstance(a, Imm) and o in _COMMUTES:
                a, b = b, a
            a = self.row_of(a, held)
            if isinstance(b, Imm):
                em.emit("binary", dst=dst, src1=a.addr, count=count, fn=int(_BINARY[o]),
                        dtype=vdtype(src_dtype), step1=a.step, imm_mode=1, imm=b.bits)
            else:
                em.emit("binary", dst=dst, src1=a.addr, src2=b.addr, count=count,
                        fn=int(_BINARY[o]), dtype=vdtype(src_dtype), step1=a.step, step2=b.step)
        elif o in (Op.WHERE, Op.MULACC):
            a, b, c = (self.row_of(x, held) for x in ops)
            fn = TernaryFn.WHERE if o is Op.WHERE else TernaryFn.MULACC
            em.emit("ternary", dst=dst, src1=a.addr, src2=b.addr, src3=c.addr, count=count,
                    fn=int(fn), dtype=vdtype(expr.dtype), step1=a.step, step2=b.step,
                    step3=c.step)
        elif o is Op.REQUANT:
            a = self.row_of(ops[0], held)
            arg = expr.arg
            params = self.requant_rows(expr)
            n = em.cfg.n
            if isinstance(params, tuple) and len(params) == 3 and count % n == 0 \
                    and a.step == 1:
                # params change from row to row: transpose n-row blocks so rows become
                # lanes, requantise each block with one lane-wise param pair, transpose back
                blocks = count // n
                em.emit("move", dst=dst, src1=a.addr, count=blocks, fn=int(MoveFn.TRANSPOSE),
                        dstride=n, sstride=n)
                em.emit("loop", count=blocks, body=1, d_dst=n, d_src1=n, d_src2=2)
                em.emit("requant", dst=dst, src1=dst, src2=sp(params[2]), count=n, zp=arg.zp,
                        lo=arg.lo, hi=arg.hi, step1=1)
                em.emit("move", dst=dst, src1=dst, count=blocks, fn=int(MoveFn.TRANSPOSE),
                        dstride=n, sstride=n)
            elif isinstance(params, tuple) and params[1] == 2:  # row r's pair at row + 2r
                em.emit("requant", dst=dst, src1=a.addr, src2=sp(params[0]), count=count,
                        zp=arg.zp, lo=arg.lo, hi=arg.hi, step1=a.step, step2=1)
            elif isinstance(params, tuple):  # pairs further apart: one REQUANT per row
                row, stride = params[0], params[1]
                em.emit("loop", count=count, body=1, d_dst=1, d_src1=a.step, d_src2=stride)
                em.emit("requant", dst=dst, src1=a.addr, src2=sp(row), count=1, zp=arg.zp,
                        lo=arg.lo, hi=arg.hi, step1=a.step)
                em.sync("compute")  # token flags never sit on a loop body
            else:
                em.emit("requant", dst=dst, src1=a.addr, src2=sp(params), count=count,
                        zp=arg.zp, lo=arg.lo, hi=arg.hi, step1=a.step)
            if expr.dtype == "int8" and (arg.lo < -128 or arg.hi > 127):
                self.wrap8(dst)
            return
        else:
            raise CompileError(f"the chip's vector unit cannot run {o.name}")
        if expr.dtype == "int8" and o in _WRAPS_INT8:
            self.wrap8(dst)

    def cast(self, src: str, dst_dtype: str, opnd: Operand, dst: int, held: list[int]) -> None:
        em, count = self.em, self.count
        a = self.row_of(opnd, held)
        if dst_dtype == "float32" and src != "float32":
            em.emit("unary", dst=dst, src1=a.addr, count=count, fn=int(UnaryFn.ITOF),
                    dtype=int(DType.I32), step1=a.step)
            return
        if src == "float32" and dst_dtype != "float32":
            em.emit("unary", dst=dst, src1=a.addr, count=count, fn=int(UnaryFn.FTOI),
                    dtype=int(DType.F32), step1=a.step)
            a = Rows(dst)
        elif a.addr != dst or a.step != 1:
            em.emit("move", dst=dst, src1=a.addr, count=count, fn=int(MoveFn.COPY), dstride=1,
                    sstride=a.step)
        if dst_dtype == "int8" and src != "int8":
            self.wrap8(dst)


# Loading views ---------------------------------------------------------------------------

def row_offsets(view: View, p0: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Element offsets and validity of outer rows p0..p0+count-1 (all axes but the last)."""
    outer = view.shape[:-1]
    p = np.arange(p0, p0 + count, dtype=np.int64)
    off = np.full(count, view.offset, dtype=np.int64)
    valid = np.ones(count, dtype=bool)
    rest = p.copy()
    for axis in range(len(outer) - 1, -1, -1):
        idx = rest % outer[axis]
        rest //= outer[axis]
        off += idx * view.strides[axis]
        if view.mask is not None:
            lo, hi = view.mask[axis]
            valid &= (idx >= lo) & (idx < hi)
    return off, valid


def runs(off: np.ndarray, valid: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split valid rows into (first row, length, first offset, stride) with one stride each."""
    out: list[tuple[int, int, int, int]] = []
    i, n = 0, len(off)
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i + 1
        stride = 0
        if j < n and valid[j]:
            stride = int(off[j] - off[i])
            if stride < 0:
                stride = None  # type: ignore[assignment]
            else:
                while j < n and valid[j] and off[j] - off[j - 1] == stride:
                    j += 1
        if stride is None:
            j, stride = i + 1, 0
        out.append((i, j - i, int(off[i]), int(stride)))
        i = j
    return out


@dataclass
class AccessPlan:
    """How one input View is brought into the block layout; see `emit_access`."""

    buf: DramBuffer
    view: View
    mode: str  # "direct" | "bcast" | "gather"
    scratch_per_row: int  # extra scratch rows per outer row (gather)


def access_mode(view: View) -> str:
    last = view.strides[-1]
    if view.shape[-1] == 1 or last == 1:
        return "direct"
    if last == 0:
        return "bcast"
    if 2 <= last <= MAX_LANE_STRIDE:
        return "strided"
    return "gather"


MAX_LANE_STRIDE = 4  # lane strides up to this load a superset and compact it by transposes


def scratch_rows(mode: str, view: View, chunks: int, n: int) -> int:
    """Scratch rows per outer row an access needs besides its own chunk rows."""
    if mode == "gather":
        return n * chunks
    if mode == "strided":  # the superset; the transposes use the block's shared area
        return view.strides[-1] * chunks
    return 0


def shared_rows(modes_views: list[tuple[str, View]], chunks: int) -> int:
    """Rows per outer row of the transpose area all strided accesses of a block share."""
    return max([(v.strides[-1] + 1) * chunks for m, v in modes_views if m == "strided"],
               default=0)


class VectorBlock:
    """Loads (load unit) and fix-ups (compute unit) of the inputs of one row block."""

    def __init__(self, em: Emitter, d: int, pb: int) -> None:
        self.em, self.d, self.pb = em, d, pb
        self.n = em.cfg.n
        self.chunks = -(-d // self.n)
        self.fixups: list[Callable[[], None]] = []  # compute-unit work after the loads
        self.shared = 0  # first row of the block's transpose area (strided accesses)
        self.mask_rows: dict[tuple[int, int], int] = {}

    def lane_range(self, view: View, c: int) -> tuple[int, int] | None:
        """Valid lanes of chunk c when the last axis is masked, or None when all are."""
        if view.mask is None:
            return None
        lo, hi = view.mask[-1]
        a, b = max(lo - c * self.n, 0), min(hi - c * self.n, self.n)
        width = min(self.n, self.d - c * self.n)
        if a <= 0 and b >= width:
            return None
        return (a, max(a, b))

    def emit_access(self, plan: AccessPlan, p0: int, count: int, dst: int, scratch: int,
                    mask_row: Callable[[int, int], int]) -> None:
        """Emit the loads for rows p0..p0+count-1 into the block at SP row `dst`."""
        em, n, view, buf = self.em, self.n, plan.view, plan.buf
        esz, fmt = buf.esize, int(buf.fmt)
        off, valid = row_offsets(view, p0, count)
        if view.is_empty:
            valid[:] = False
        rr = runs(off, valid)
        last = view.strides[-1]
        fills: list[Callable[[], None]] = []
        if not valid.all():
            inval = np.flatnonzero(~valid)
            breaks = np.flatnonzero(np.diff(inval) != 1) + 1
            spans = [(int(g[0]), len(g)) for g in np.split(inval, breaks)]
            for c in range(self.chunks):
                for first, ln in spans:
                    fills.append(lambda r=dst + c * self.pb + first, k=ln: em.emit(
                        "move", dst=sp(r), count=k, fn=int(MoveFn.FILL), dstride=1, imm=0))
        if plan.mode == "strided":
            self._strided(plan, rr, count, dst, scratch)
        self.fixups += fills  # after anything that writes whole blocks
        for c in range(self.chunks):
            lanes = min(n, self.d - c * n)
            base_row = dst + c * self.pb
            for s, ln, o, stride in rr:
                if plan.mode == "strided":
                    continue  # loaded by _strided
                if plan.mode == "direct":
                    addr = buf.addr + (o + c * n) * esz
                    self._load(base_row + s, addr, stride * esz, ln, lanes, fmt)
                elif plan.mode == "bcast":
                    if c == 0:
                        self._load(base_row + s, buf.addr + o * esz, stride * esz, ln, 1, fmt)
                else:  # gather: each row's lanes into lane 0 of n scratch rows
                    for r in range(ln):
                        srow = scratch + (c * self.pb + s + r) * n
                        addr = buf.addr + (o + r * stride + c * n * last) * esz
                        if last < 0:
                            for j in range(lanes):
                                self._load(srow + j, addr + j * last * esz, 0, 1, 1, fmt)
                        else:
                            self._load(srow, addr, last * esz, lanes, 1, fmt)
            if plan.mode == "bcast" and c == 0:
                # every chunk broadcasts lane 0 of chunk 0, so chunk 0 goes last and before
                # any lane mask touches it
                for cc in range(self.chunks - 1, -1, -1):
                    self.fixups.append(lambda cc=cc: em.emit(
                        "move", dst=sp(dst + cc * self.pb), src1=sp(dst), count=count,
                        fn=int(MoveFn.BCAST), dstride=1, sstride=1, imm=0))
            if plan.mode == "gather":
                for s, ln, _, _ in rr:
                    for r in range(ln):
                        row = c * self.pb + s + r
                        self.fixups.append(lambda row=row: self._gather_fix(
                            sp(scratch + row * n), sp(dst + row)))
            rng = self.lane_range(view, c)
            if rng is not None:
                mrow = mask_row(*rng)
                zero = mask_row(0, 0)
                dt = vdtype(buf.dtype)
                self.fixups.append(lambda r=base_row, m=mrow, z=zero, dt=dt: em.emit(
                    "ternary", dst=sp(r), src1=sp(m), src2=sp(r), src3=sp(z), count=count,
                    fn=int(TernaryFn.WHERE), dtype=dt, step1=0, step2=1, step3=0))

    def _strided(self, plan: AccessPlan, rr: list[tuple[int, int, int, int]], count: int,
                 dst: int, scratch: int) -> None:
        """Lane stride s: load s*n contiguous elements per row (s row blocks), transpose
        them so elements become rows, keep every s-th row, transpose back."""
        em, n, buf = self.em, self.n, plan.buf
        s = plan.view.strides[-1]
        esz, fmt = buf.esize, int(buf.fmt)
        blocks = -(-count // n)
        for c in range(self.chunks):
            area = scratch + c * s * self.pb
            sub = [area + q * self.pb for q in range(s)]
            # transposes run one access after another on the compute unit: the area in
            # which they work is shared by every strided access of the block
            tr = self.shared + c * (s + 1) * self.pb
            t2 = tr + s * self.pb
            for first, ln, o, stride in rr:
                for q in range(s):
                    addr = buf.addr + (o + c * n * s + q * n) * esz
                    self._load(sub[q] + first, addr, stride * esz, ln, n, fmt)

            def fix(c: int = c, sub: list[int] = sub, tr: int = tr, t2: int = t2) -> None:
                for q in range(s):
                    em.emit("move", dst=sp(tr + q * n), src1=sp(sub[q]), count=blocks,
                            fn=int(MoveFn.TRANSPOSE), dstride=s * n, sstride=n)
                em.emit("move", dst=sp(t2), src1=sp(tr), count=blocks * n, fn=int(MoveFn.COPY),
                        dstride=1, sstride=s)
                em.emit("move", dst=sp(dst + c * self.pb), src1=sp(t2), count=blocks,
                        fn=int(MoveFn.TRANSPOSE), dstride=n, sstride=n)
            self.fixups.append(fix)

    def _gather_fix(self, scratch: int, dst: int) -> None:
        """Lane 0 of n scratch rows -> the lanes of one row: transpose in place, copy row 0."""
        self.em.emit("move", dst=scratch, src1=scratch, count=1, fn=int(MoveFn.TRANSPOSE),
                     dstride=1, sstride=self.n)
        self.em.emit("move", dst=dst, src1=scratch, count=1, fn=int(MoveFn.COPY), dstride=1,
                     sstride=1)

    def _load(self, row: int, addr: int, stride: int, rows: int, cols: int, fmt: int) -> None:
        cfg = self.em.cfg
        last = addr + ((rows - 1) * stride + cols) * (4 if fmt == Fmt.X32 else 1)
        if addr < 0 or last > cfg.dram_bytes:
            raise CompileError("a padded view reads outside DRAM; the DRAM guard is too small")
        while rows > 0:  # the DMA's rows field is 16 bits
            k = min(rows, 65535)
            self.em.emit("load", sram=sp(row), dram=addr, stride=stride, rows=k, cols=cols,
                         fmt=fmt)
            rows, row, addr = rows - k, row + k, addr + k * stride


def collapse(shape: tuple[int, ...], views: list[View]) -> tuple[tuple[int, ...], list[View]]:
    """Drop size-1 axes and merge neighbours that every view reads as one strided axis."""
    keep = [i for i, s in enumerate(shape) if s != 1]
    if not keep:
        return (1,), [View((1,), (0,), v.offset if not v.is_empty else 0,
                           None if not v.is_empty else ((0, 0),)) for v in views]
    axes: list[list[int]] = [[keep[0]]]
    for i in keep[1:]:
        prev = axes[-1][-1]
        if all(_mergeable(v, prev, i) for v in views):
            axes[-1].append(i)
        else:
            axes.append([i])
    new_shape = tuple(math.prod(shape[i] for i in group) for group in axes)
    out = []
    for v in views:
        strides = tuple(v.strides[g[-1]] for g in axes)
        mask = None
        if v.mask is not None:
            if v.is_empty:
                mask = tuple((0, 0) for _ in axes)
            else:
                mask = tuple(v.mask[g[0]] if len(g) == 1 else (0, new_shape[k])
                             for k, g in enumerate(axes))
                if all(m == (0, s) for m, s in zip(mask, new_shape, strict=True)):
                    mask = None
        out.append(View(new_shape, strides, v.offset, mask))
    return new_shape, out


def _mergeable(v: View, a: int, b: int) -> bool:
    if v.strides[a] != v.strides[b] * v.shape[b]:
        return False
    if v.mask is None or v.is_empty:
        return True
    return v.mask[a] == (0, v.shape[a]) and v.mask[b] == (0, v.shape[b])


def split_lanes(shape: tuple[int, ...], views: list[View], n: int
                ) -> tuple[tuple[int, ...], list[View]]:
    """Split a long unit-stride last axis into (D/f, f) so outer rows carry full lanes.

    f = n when it divides D, else the largest divisor of D up to 4n (a long axis kept
    whole would need D/n scratchpad rows per outer row).
    """
    d = shape[-1]
    if d <= n:
        return shape, views
    for v in views:  # any stride splits exactly; a mask across lanes would not stay a box
        if v.mask is not None and not v.is_empty and v.mask[-1] != (0, d):
            return shape, views
    if d % n == 0:
        f = n
    else:
        f = max(x for x in range(1, 4 * n + 1) if d % x == 0)
        if f == d or (f <= n // 2 and d <= 16 * n):
            return shape, views
    new_shape = shape[:-1] + (d // f, f)
    out = []
    for v in views:
        if v.mask is None:
            mask = None
        elif v.is_empty:
            mask = tuple((0, 0) for _ in new_shape)
        else:
            mask = v.mask[:-1] + ((0, d // f), (0, f))
        out.append(View(new_shape, v.strides[:-1] + (v.strides[-1] * f, v.strides[-1]),
                        v.offset, mask))
    return new_shape, out
