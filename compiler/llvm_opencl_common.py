"""What the OpenCL C and LLVM IR generators share: per-element code for scheduled Kernels.

Both backends consume the `compiler.schedule.Kernel`s the ISA lowering uses. They differ
only in how they spell one scalar operation, so the lowering of Views (strided, masked
reads), expression trees (the IR's numerics) and contraction layouts is written once
here against the small `Emitter` interface; `compiler.opencl_c` and `compiler.llvm_ir`
implement it. Index arithmetic is 64-bit; int8 and int32 values live in 32-bit
registers (int8 sign-extended, as on the chip), float32 in float registers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from compiler.ir import Op, RequantArg
from compiler.schedule import ACC, LOAD, Access, Expr, Kernel
from compiler.view import View


class Emitter(ABC):
    """Appends scalar statements to `lines`; every method returns the name of its result."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        return f"v{self.count}"

    # 64-bit index arithmetic (operands are non-negative) ------------------------------
    @abstractmethod
    def iconst(self, value: int) -> str: ...

    @abstractmethod
    def iarith(self, op: str, a: str, b: str) -> str:
        """op in + * / %  on i64."""

    @abstractmethod
    def icmp(self, op: str, a: str, b: str) -> str:
        """op in < >= on i64, giving a boolean."""

    @abstractmethod
    def band(self, a: str, b: str) -> str: ...

    # values --------------------------------------------------------------------------
    @abstractmethod
    def load(self, slot: int, dtype: str, addr: str, valid: str | None) -> str:
        """Element `addr` of parameter buffer `slot`, or 0 when `valid` is false."""

    @abstractmethod
    def apply(self, op: Op, args: list[str], dtypes: list[str], out: str, arg: object) -> str:
        """One elementwise IR op (not REQUANT) with the IR's numerics."""

    @abstractmethod
    def requant(self, x: str, arg: RequantArg, channel: str) -> str: ...

    @abstractmethod
    def zero(self, dtype: str) -> str: ...


def unflatten(em: Emitter, flat: str, shape: Sequence[int]) -> list[str]:
    """Row-major indices of `flat` in `shape` (size-1 axes get the constant 0)."""
    idx: list[str] = [""] * len(shape)
    rest = flat
    for axis in range(len(shape) - 1, -1, -1):
        size = shape[axis]
        if size == 1:
            idx[axis] = em.iconst(0)
            continue
        outer = all(s == 1 for s in shape[:axis])
        if outer:
            idx[axis] = rest
        else:
            size_c = em.iconst(size)
            idx[axis] = em.iarith("%", rest, size_c)
            rest = em.iarith("/", rest, size_c)
    return idx


def flatten(em: Emitter, idx: Sequence[str], shape: Sequence[int]) -> str:
    """The row-major flat index of `idx` in `shape`."""
    flat = em.iconst(0)
    for i, size in zip(idx, shape, strict=True):
        if size == 1:
            continue
        flat = em.iarith("+", em.iarith("*", flat, em.iconst(size)), i)
    return flat


def view_address(em: Emitter, view: View, idx: Sequence[str]) -> tuple[str, str | None]:
    """(element address, validity or None) of a View at the index `idx`."""
    addr = em.iconst(view.offset)
    for i, stride in zip(idx, view.strides, strict=True):
        if stride:
            addr = em.iarith("+", addr, em.iarith("*", i, em.iconst(stride)))
    valid = None
    if view.mask is not None:
        for i, (lo, hi), size in zip(idx, view.mask, view.shape, strict=True):
            conds = []
            if lo > 0:
                conds.append(em.icmp(">=", i, em.iconst(lo)))
            if hi < size:
                conds.append(em.icmp("<", i, em.iconst(hi)))
            for cond in conds:
                valid = cond if valid is None else em.band(valid, cond)
    return addr, valid


@dataclass
class Point:
    """Where an expression is evaluated: indices over `shape`, optionally its flat index."""

    idx: list[str]
    shape: tuple[int, ...]
    flat: str | None = None


def lower_expr(em: Emitter, expr: Expr, at: Point, inputs: Sequence[Access],
               slots: Sequence[int], acc: str | None = None,
               valid: str | None = None) -> str:
    """Code for `expr` at `at`; LOAD j reads parameter slot `slots[j]` through its View.

    `valid` (optional) masks every load (padding of gathered contraction operands).
    """
    memo: dict[int, str] = {}

    def visit(e: Expr) -> str:
        found = memo.get(id(e))
        if found is not None:
            return found
        if e.op == LOAD:
            view = inputs[e.arg].view
            if at.flat is not None and view.is_contiguous and view.shape == at.shape:
                addr, ok = at.flat, None
            else:
                addr, ok = view_address(em, view, at.idx)
            if valid is not None:
                ok = valid if ok is None else em.band(ok, valid)
            out = em.load(slots[e.arg], e.dtype, addr, ok)
        elif e.op == ACC:
            assert acc is not None, "ACC outside an epilogue"
            out = acc
        elif e.op is Op.REQUANT:
            axis = e.arg.axis
            channel = at.idx[axis] if at.shape and at.shape[axis] > 1 else em.iconst(0)
            out = em.requant(visit(e.srcs[0]), e.arg, channel)
        else:
            args = [visit(s) for s in e.srcs]
            out = em.apply(e.op, args, [s.dtype for s in e.srcs], e.dtype, e.arg)
        memo[id(e)] = out
        return out

    return visit(expr)


# Contractions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Contraction:
    """A contraction kernel's axes sorted into batch, M (only operand a), N (only b) and K."""

    batch_axes: tuple[int, ...]
    m_axes: tuple[int, ...]
    n_axes: tuple[int, ...]
    k_axes: tuple[int, ...]
    shape: tuple[int, ...]

    def size(self, axes: Sequence[int]) -> int:
        return math.prod(self.shape[a] for a in axes)

    @property
    def b(self) -> int:
        return self.size(self.batch_axes)

    @property
    def m(self) -> int:
        return self.size(self.m_axes)

    @property
    def n(self) -> int:
        return self.size(self.n_axes)

    @property
    def k(self) -> int:
        return self.size(self.k_axes)


def _reads_axis(expr: Expr, inputs: Sequence[Access], axis: int) -> bool:
    for leaf in expr.leaves():
        if leaf.op != LOAD:
            continue
        view = inputs[leaf.arg].view
        if view.strides[axis] != 0:
            return True
        if view.mask is not None and view.mask[axis] != (0, view.shape[axis]):
            return True
    return False


def classify(kernel: Kernel) -> Contraction:
    """Sort the axes of a contraction kernel (REDUCE_SUM of MUL(a, b)) for a GEMM."""
    a_expr, b_expr = kernel.body.srcs
    batch, m_axes, n_axes = [], [], []
    for axis, size in enumerate(kernel.shape):
        if axis in kernel.reduce_axes:
            continue
        if size == 1:
            batch.append(axis)
            continue
        in_a = _reads_axis(a_expr, kernel.inputs, axis)
        in_b = _reads_axis(b_expr, kernel.inputs, axis)
        if in_a and not in_b:
            m_axes.append(axis)
        elif in_b and not in_a:
            n_axes.append(axis)
        else:
            batch.append(axis)
    return Contraction(tuple(batch), tuple(m_axes), tuple(n_axes), tuple(kernel.reduce_axes),
                       kernel.shape)


def scatter_index(em: Emitter, c: Contraction, parts: dict[str, str]) -> list[str]:
    """Indices over the kernel's shape from flat group indices {"b": .., "m": .., ...}."""
    idx = [em.iconst(0)] * len(c.shape)
    groups = {"b": c.batch_axes, "m": c.m_axes, "n": c.n_axes, "k": c.k_axes}
    for key, flat in parts.items():
        axes = groups[key]
        for axis, i in zip(axes, unflatten(em, flat, [c.shape[a] for a in axes]), strict=True):
            idx[axis] = i
    return idx


def packed_coords(em: Emitter, flat: str, layout: Sequence[tuple[str, int, int]]
                  ) -> dict[str, str]:
    """Logical coordinates of element `flat` of a packed buffer.

    `layout` lists the buffer's dims outer to inner as (coordinate, size, multiplier): the
    coordinate gains index * multiplier; e.g. [("m", M/4, 4), ("k", K, 1), ("m", 4, 1)]
    is an A operand packed in panels of 4 rows.
    """
    shape = [size for _, size, _ in layout]
    idx = unflatten(em, flat, shape)
    coords: dict[str, str] = {}
    for (name, _, mult), i in zip(layout, idx, strict=True):
        term = i if mult == 1 else em.iarith("*", i, em.iconst(mult))
        coords[name] = term if name not in coords else em.iarith("+", coords[name], term)
    return coords


def reduce_identity(op: Op, dtype: str) -> float | int:
    if op is Op.REDUCE_SUM:
        return 0
    return {"float32": -math.inf, "int32": -(1 << 31), "int8": -128}[dtype]


def debug_level() -> int:
    """DOZEN_DEBUG: 1 prints each kernel run with its time, 2 also the generated code."""
    import os

    try:
        return int(os.environ.get("DOZEN_DEBUG", "0") or 0)
    except ValueError:
        return 0


def debug_kernel(backend: str, kernel: Kernel, seconds: float, sources: Sequence[str]) -> None:
    import sys

    sys.stderr.write(f"[{backend}] {kernel.describe()}  {seconds * 1e3:.3f} ms\n")
    if debug_level() >= 2:
        for source in sources:
            sys.stderr.write(source.rstrip() + "\n\n")
