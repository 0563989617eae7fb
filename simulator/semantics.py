"""The data path: what each instruction does to DRAM and the two SRAMs, in numpy.

One vectorised numpy expression per instruction (or per tile), never a Python loop
per element, so simulation cost scales with instructions. Rules come from
`isa/table.py` (semantics, FUNCTION_DOC) and `isa/model.py` (NUMERICS).

SRAM rows are int32 arrays of shape (rows, n); fp32 lanes are the same bits viewed
as float32. DRAM is one uint8 array (np.zeros is lazy, so a 256 MiB DRAM costs
nothing until it is touched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from isa.config import ChipConfig
from isa.table import (
    Axis,
    BinaryFn,
    DType,
    Fault,
    Fmt,
    MatType,
    Mem,
    MoveFn,
    Op,
    ReduceFn,
    TernaryFn,
    UnaryFn,
    esize,
)
from simulator.errors import FaultSignal

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
_MEM_NAMES = {Mem.SP: "sp", Mem.ACC: "acc"}

Values = dict[str, int]


def _as(rows: np.ndarray, dtype: int) -> np.ndarray:
    """View int32 lanes as the vector dtype."""
    return rows.view(np.float32) if dtype == DType.F32 else rows


def _bits(result: np.ndarray) -> np.ndarray:
    """Back to 32-bit lane bits (int32), whatever the result type."""
    if result.dtype == np.float32:
        return result.view(np.int32)
    return result.astype(np.int32, copy=False)


def _last_wins(index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the last write to each index, so repeated targets behave in program order."""
    flat = index.ravel()
    if flat.size < 2:
        return flat, values
    uniq, first_from_end = np.unique(flat[::-1], return_index=True)
    if uniq.size == flat.size:
        return flat, values
    keep = flat.size - 1 - first_from_end
    return flat[keep], values[keep]


class Machine:
    """The architectural state (DRAM, scratchpad, accumulator) and the effect of each opcode."""

    def __init__(self, cfg: ChipConfig, dram: np.ndarray | None = None):
        self.cfg = cfg
        self.n = cfg.n
        self.mems = (np.zeros((cfg.sp_rows, cfg.n), np.int32),
                     np.zeros((cfg.acc_rows, cfg.n), np.int32))
        self.dram = dram if dram is not None else np.zeros(cfg.dram_bytes, np.uint8)
        self.dram_read = 0
        self.dram_written = 0
        self.macs = 0
        self._exec: dict[int, Callable[[Values], None]] = {
            Op.LOAD: self.load, Op.STORE: self.store, Op.MATMUL: self.matmul,
            Op.UNARY: self.unary, Op.BINARY: self.binary, Op.TERNARY: self.ternary,
            Op.REDUCE: self.reduce, Op.REQUANT: self.requant, Op.MOVE: self.move,
            Op.SYNC: lambda v: None,
        }

    @property
    def sp(self) -> np.ndarray:
        return self.mems[Mem.SP]

    @property
    def acc(self) -> np.ndarray:
        return self.mems[Mem.ACC]

    def execute(self, opcode: int, values: Values) -> None:
        self._exec[opcode](values)

    # Address checks ----------------------------------------------------------------
    def _rows(self, local: int, count: int, what: str, step: int = 1) -> tuple[np.ndarray, int]:
        """(memory array, first row) of a local operand spanning `count` rows (or 1 if step=0)."""
        mem, row = local >> 16, local & 0xFFFF
        return self._span(mem, row, count if step else 1, what), row

    def _span(self, mem: int, row: int, count: int, what: str) -> np.ndarray:
        array = self.mems[mem]
        limit = array.shape[0]
        if row < 0 or row + count > limit:
            raise FaultSignal(Fault.SRAM_OUT_OF_BOUNDS,
                              f"{what} rows {row}..{row + count - 1} lie outside "
                              f"{_MEM_NAMES[Mem(mem)]} (rows 0..{limit - 1})")
        return array

    def _index_span(self, mem: int, index: np.ndarray, what: str) -> np.ndarray:
        array = self.mems[mem]
        limit = array.shape[0]
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= limit:
            raise FaultSignal(Fault.SRAM_OUT_OF_BOUNDS,
                              f"{what} rows {lo}..{hi} lie outside {_MEM_NAMES[Mem(mem)]} "
                              f"(rows 0..{limit - 1})")
        return array

    def _read(self, local: int, count: int, step: int, dtype: int, what: str) -> np.ndarray:
        """`count` rows of a stepped operand, viewed as dtype; step=0 gives the one row as
        shape (1, n), which numpy broadcasts against the other operands."""
        array, row = self._rows(local, count, what, step)
        if step:
            return _as(array[row:row + count], dtype)
        return _as(array[row:row + 1], dtype)

    def _write(self, local: int, result: np.ndarray, count: int | None = None) -> None:
        """Write `count` rows (default: the result's rows); a (1, n) result fills them all."""
        count = result.shape[0] if count is None else count
        array, row = self._rows(local, count, "dst")
        array[row:row + count] = _bits(result)

    def _dram_view(self, addr: int, stride: int, rows: int, width: int, what: str) -> np.ndarray:
        end = addr + (rows - 1) * stride + width
        if addr < 0:
            raise FaultSignal(Fault.DRAM_OUT_OF_BOUNDS, f"{what} DRAM address {addr} is negative")
        if end > self.dram.size:
            raise FaultSignal(Fault.DRAM_OUT_OF_BOUNDS,
                              f"{what} touches DRAM bytes {addr:#x}..{end - 1:#x}, beyond "
                              f"dram_bytes = {self.dram.size:#x}")
        if stride >= width and addr + rows * stride <= self.dram.size:  # cheap: a plain view
            return self.dram[addr:addr + rows * stride].reshape(rows, stride)[:, :width]
        return as_strided(self.dram[addr:], shape=(rows, width), strides=(stride, 1))

    def _check_cols(self, cols: int) -> None:
        if cols > self.n:
            raise FaultSignal(Fault.SRAM_OUT_OF_BOUNDS, f"cols = {cols} exceeds the row width "
                                                        f"n = {self.n}")

    # DMA -----------------------------------------------------------------------------
    def load(self, v: Values) -> None:
        rows, cols, fmt = v["rows"], v["cols"], v["fmt"]
        self._check_cols(cols)
        array, row = self._rows(v["sram"], rows, "load sram")
        width = cols * esize(fmt)
        raw = self._dram_view(v["dram"], v["stride"], rows, width, "load")
        if fmt == Fmt.I8:
            data = raw.view(np.int8)
        elif fmt == Fmt.U8:
            data = raw
        else:
            data = np.ascontiguousarray(raw).view("<i4")
        target = array[row:row + rows]
        target[:, :cols] = data
        target[:, cols:] = 0
        self.dram_read += rows * width

    def store(self, v: Values) -> None:
        rows, cols, fmt, stride, addr = v["rows"], v["cols"], v["fmt"], v["stride"], v["dram"]
        self._check_cols(cols)
        array, row = self._rows(v["sram"], rows, "store sram")
        lanes = array[row:row + rows, :cols]
        if fmt == Fmt.X32:
            data = lanes.astype("<i4").view(np.uint8).reshape(rows, cols * 4)
        else:
            data = lanes.astype(np.uint8)
        width = data.shape[1]
        target = self._dram_view(addr, stride, rows, width, "store")
        if rows == 1 or stride >= width:
            target[...] = data
        else:  # overlapping DRAM rows: later rows win, as in program order
            index = addr + np.arange(rows)[:, None] * stride + np.arange(width)
            flat, vals = _last_wins(index, data.ravel())
            self.dram[flat] = vals
        self.dram_written += rows * width

    # Matrix array --------------------------------------------------------------------
    def matmul(self, v: Values) -> None:
        n, rows = self.n, v["rows"]
        sp, acc = self.mems[Mem.SP], self.mems[Mem.ACC]
        dst, inp, wgt = v["dst"], v["inp"], v["wgt"]
        self._span(Mem.SP, inp, rows, "matmul inp")
        self._span(Mem.SP, wgt, n, "matmul wgt")
        self._span(Mem.ACC, dst, rows, "matmul dst")
        a, w = sp[inp:inp + rows], sp[wgt:wgt + n]
        if v["dtype"] == MatType.I8:
            # Exact in float32 BLAS: every partial sum is an integer below n * 2^14 <= 2^22,
            # inside float32's 24-bit significand, whatever the summation order.
            prod = (a.astype(np.int8).astype(np.float32) @ w.astype(np.int8).astype(np.float32))
            target = acc[dst:dst + rows]
            if v["acc"]:
                target += prod.astype(np.int32)  # int32 arrays wrap modulo 2^32
            else:
                target[...] = prod
        else:
            af, wf = a.view(np.float32), w.view(np.float32)
            total = af[:, 0:1] * wf[0]
            for k in range(1, n):  # fp32, k ascending, one rounding per product and per sum
                total = total + af[:, k:k + 1] * wf[k]
            if v["acc"]:
                total = acc[dst:dst + rows].view(np.float32) + total
            acc[dst:dst + rows] = total.view(np.int32)
        self.macs += rows * n * n

    # Vector unit -----------------------------------------------------------------------
    def unary(self, v: Values) -> None:
        count, dtype, fn = v["count"], v["dtype"], v["fn"]
        x = self._read(v["src1"], count, v["step1"], dtype, "src1")
        self._write(v["dst"], _UNARY[fn](x), count)

    def binary(self, v: Values) -> None:
        count, dtype, fn = v["count"], v["dtype"], v["fn"]
        a = self._read(v["src1"], count, v["step1"], dtype, "src1")
        if v["imm_mode"]:
            b = _as(np.array([v["imm"] & 0xFFFFFFFF], np.uint32).view(np.int32), dtype)
        else:
            b = self._read(v["src2"], count, v["step2"], dtype, "src2")
        table = _BINARY_F if dtype == DType.F32 else _BINARY_I
        self._write(v["dst"], table[fn](a, b), count)

    def ternary(self, v: Values) -> None:
        count, dtype = v["count"], v["dtype"]
        a = self._read(v["src1"], count, v["step1"], dtype, "src1")
        b = self._read(v["src2"], count, v["step2"], dtype, "src2")
        c = self._read(v["src3"], count, v["step3"], dtype, "src3")
        if v["fn"] == TernaryFn.WHERE:
            result = np.where(a != 0, b, c)
        else:
            result = a * b + c  # two roundings: numpy never fuses
        self._write(v["dst"], result, count)

    def reduce(self, v: Values) -> None:
        count, dtype, fn = v["count"], v["dtype"], v["fn"]
        x = self._read(v["src1"], count, 1, dtype, "src1")
        is_float = dtype == DType.F32
        if v["axis"] == Axis.LANES:
            lanes = _reduce_lanes(x, fn, is_float)  # (count,)
            result = np.broadcast_to(lanes[:, None], (count, self.n))
            rows = count
        else:
            result = _reduce_rows(x, fn, is_float)[None, :]
            rows = 1
        if v["acc"]:
            old = self._read(v["dst"], rows, 1, dtype, "dst")
            result = _combine(old, result, fn, is_float)
        self._write(v["dst"], np.ascontiguousarray(result))

    def requant(self, v: Values) -> None:
        count = v["count"]
        x = self._read(v["src1"], count, v["step1"], DType.I32, "src1").astype(np.int64)
        pairs = count if v["step2"] else 1
        params = self._read(v["src2"], 2 * pairs, 1, DType.I32, "src2 (multipliers, shifts)")
        params = params.astype(np.int64).reshape(pairs, 2, -1)
        m, s = params[:, 0], params[:, 1] & 63
        p = x * m
        # (p + 2^(s-1)) >> s without the add's 64-bit overflow: p >> s plus the last bit
        # shifted out, which is bit s of p << 1 (0 when s = 0; the wrap of << leaves it intact).
        q = (p >> s) + (((p << 1) >> s) & 1)
        q += v["zp"]
        y = np.minimum(np.maximum(q, v["lo"]), v["hi"])
        self._write(v["dst"], y.astype(np.int32), count)

    def move(self, v: Values) -> None:
        n, count, fn = self.n, v["count"], v["fn"]
        dst_mem, dst_row = v["dst"] >> 16, v["dst"] & 0xFFFF
        src_mem, src_row = v["src1"] >> 16, v["src1"] & 0xFFFF
        if fn == MoveFn.COPY and v["dstride"] == 1 and v["sstride"] == 1:  # the common case
            source = self._span(src_mem, src_row, count, "move src1")
            target = self._span(dst_mem, dst_row, count, "move dst")
            target[dst_row:dst_row + count] = source[src_row:src_row + count].copy()
            return
        items = np.arange(count, dtype=np.int64)
        dst_rows = dst_row + items * v["dstride"]
        src_rows = src_row + items * v["sstride"]
        if fn == MoveFn.FILL:
            data = np.full((count, n), v["imm"] & 0xFFFFFFFF, np.uint32).view(np.int32)
        elif fn == MoveFn.TRANSPOSE:
            src_rows = (src_rows[:, None] + np.arange(n)).ravel()
            dst_rows = (dst_rows[:, None] + np.arange(n)).ravel()
            source = self._index_span(src_mem, src_rows, "move src1")
            data = source[src_rows].reshape(count, n, n).transpose(0, 2, 1).reshape(count * n, n)
        else:
            source = self._index_span(src_mem, src_rows, "move src1")
            if fn == MoveFn.BCAST:
                lane = v["imm"]
                if lane >= n:
                    raise FaultSignal(Fault.ILLEGAL_INSTRUCTION,
                                      f"bcast lane imm = {lane} is not below n = {n}")
                data = np.repeat(source[src_rows, lane][:, None], n, axis=1)
            else:
                data = source[src_rows]
        target = self._index_span(dst_mem, dst_rows, "move dst")
        block = n if fn == MoveFn.TRANSPOSE else 1
        if count > 1 and abs(v["dstride"]) < block:  # items overlap: keep the last write
            dst_rows, data = _last_wins(dst_rows, data)
        target[dst_rows] = data


# Function tables -------------------------------------------------------------------------

def _ftoi(x: np.ndarray) -> np.ndarray:
    r = np.rint(x.astype(np.float64))  # round half to even
    r = np.where(np.isnan(r), 0.0, np.clip(r, I32_MIN, I32_MAX))
    return r.astype(np.int64).astype(np.int32)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


_UNARY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    UnaryFn.NEG: np.negative,
    UnaryFn.ABS: np.abs,
    UnaryFn.RELU: _relu,
    UnaryFn.NOT: np.invert,
    UnaryFn.EXP2: np.exp2,
    UnaryFn.LOG2: np.log2,
    UnaryFn.SQRT: np.sqrt,
    UnaryFn.RECIP: lambda x: np.float32(1.0) / x,
    UnaryFn.SIN: np.sin,
    UnaryFn.ITOF: lambda x: x.astype(np.float32),
    UnaryFn.FTOI: _ftoi,
}


def _idiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    safe = np.where(b64 == 0, 1, b64)
    q = np.abs(a64) // np.abs(safe)
    q = np.where((a64 < 0) != (safe < 0), -q, q)
    return np.where(b64 == 0, 0, q).astype(np.int32)  # -2^31 / -1 wraps to -2^31


def _shl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.left_shift(a.astype(np.uint32), (b & 31).astype(np.uint32)).view(np.int32)


def _cmp(op: Callable[[Any, Any], np.ndarray], dtype: type) -> Callable[..., np.ndarray]:
    return lambda a, b: op(a, b).astype(dtype)


_BINARY_I: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    BinaryFn.ADD: np.add, BinaryFn.SUB: np.subtract, BinaryFn.MUL: np.multiply,
    BinaryFn.DIV: _idiv, BinaryFn.MAX: np.maximum, BinaryFn.MIN: np.minimum,
    BinaryFn.CMPLT: _cmp(np.less, np.int32), BinaryFn.CMPEQ: _cmp(np.equal, np.int32),
    BinaryFn.AND: np.bitwise_and, BinaryFn.OR: np.bitwise_or, BinaryFn.XOR: np.bitwise_xor,
    BinaryFn.SHL: _shl, BinaryFn.SHR: lambda a, b: np.right_shift(a, b & 31),
}
_BINARY_F: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    BinaryFn.ADD: np.add, BinaryFn.SUB: np.subtract, BinaryFn.MUL: np.multiply,
    BinaryFn.DIV: np.divide, BinaryFn.MAX: np.maximum, BinaryFn.MIN: np.minimum,
    BinaryFn.CMPLT: _cmp(np.less, np.float32), BinaryFn.CMPEQ: _cmp(np.equal, np.float32),
}


def _reduce_lanes(x: np.ndarray, fn: int, is_float: bool) -> np.ndarray:
    if fn == ReduceFn.MAX:
        return x.max(axis=1)
    if fn == ReduceFn.MIN:
        return x.min(axis=1)
    if not is_float:
        return x.astype(np.int64).sum(axis=1).astype(np.int32)
    tree = x
    while tree.shape[1] > 1:  # pairwise: ((l0+l1)+(l2+l3))+...
        tree = tree[:, 0::2] + tree[:, 1::2]
    return tree[:, 0]


def _reduce_rows(x: np.ndarray, fn: int, is_float: bool) -> np.ndarray:
    if fn == ReduceFn.MAX:
        return x.max(axis=0)
    if fn == ReduceFn.MIN:
        return x.min(axis=0)
    if not is_float:
        return x.astype(np.int64).sum(axis=0).astype(np.int32)
    return np.add.accumulate(x, axis=0, dtype=np.float32)[-1]  # strictly ascending row order


def _combine(old: np.ndarray, new: np.ndarray, fn: int, is_float: bool) -> np.ndarray:
    if fn == ReduceFn.MAX:
        return np.maximum(old, new)
    if fn == ReduceFn.MIN:
        return np.minimum(old, new)
    return old + new
