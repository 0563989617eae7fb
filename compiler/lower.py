"""Graph -> .dzn: schedule the graph into kernels, plan DRAM, emit each kernel's ISA code.

`compile_graph(graph, cfg)` returns an `isa.container.Program` whose symbols are the
graph's inputs and outputs. Constants become data segments; every intermediate buffer
gets its own DRAM range (no reuse: DRAM is large and this keeps kernels independent).
Kernels run one after another, separated by a token barrier; within a kernel the load,
compute and store units overlap through double buffering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.ir import Graph, Op
from compiler.isa_builder import CompileError, DramBuffer, Emitter
from compiler.isa_contraction import PadSource, emit_contraction
from compiler.isa_elementwise import Leaf, emit_elementwise, emit_reduce_rows
from compiler.isa_pad import emit_pad_copy, pad_copy_fits
from compiler.isa_vector import MAX_LANE_STRIDE, Imm
from compiler.schedule import ACC, LOAD, Buffer, Expr, Kernel, Schedule, schedule
from compiler.view import View, contiguous_strides
from isa.config import ChipConfig
from isa.container import Program

DRAM_GUARD = 64 * 1024  # unused bytes around the buffers: padded views may read there
DTYPE_SUPPORT = {"int8": "int8", "int32": "int32", "float32": "fp32"}


class Lowering:
    """Holds the emitter and the DRAM home of every schedule buffer."""

    def __init__(self, cfg: ChipConfig, sched: Schedule) -> None:
        self.cfg = cfg
        self.sched = sched
        self.em = Emitter(cfg)
        self.em.dram_top = DRAM_GUARD
        self.home: dict[int, DramBuffer] = {}
        self.deferred: dict[int, tuple[PadSource, Callable[[], None]]] = {}
        for buf in sched.inputs.values():
            self.home[id(buf)] = d = self.em.alloc(buf.name, buf.shape, buf.dtype)
            self.em.symbol(d, "input")
        for buf in sched.outputs.values():
            self.home[id(buf)] = d = self.em.alloc(buf.name, buf.shape, buf.dtype)
            self.em.symbol(d, "output")

    def dram(self, buf: Buffer) -> DramBuffer:
        d = self.home.get(id(buf))
        if d is None:
            if buf.kind == "const":
                assert buf.data is not None
                d = self.em.constant(buf.name, np.asarray(buf.data))
            else:
                d = self.em.alloc(buf.name, buf.shape, buf.dtype)
            self.home[id(buf)] = d
        return d

    def leaf(self, kernel: Kernel, index: int) -> Leaf:
        access = kernel.inputs[index]
        data = access.buffer.data if access.buffer.kind == "const" else None
        return Leaf(self.dram(access.buffer), access.view, data)

    def materialise(self, leaf: Leaf, order: list[int], shape: tuple[int, ...]
                    ) -> tuple[DramBuffer, View]:
        """A contiguous copy of `leaf` over the axes `order` (other axes at index 0)."""
        assert leaf.view is not None and leaf.buf is not None
        bounds = [(0, s) if i in order else (0, 1) for i, s in enumerate(shape)]
        rest = [i for i in range(len(shape)) if i not in order]
        v = leaf.view.shrink(bounds).permute(order + rest)
        full = tuple(shape[i] for i in order)
        v = v.reshape(full) if v.shape != full else v
        assert v is not None
        if leaf.data is not None:
            arr = v.gather(np.asarray(leaf.data).reshape(-1)).astype(np.asarray(leaf.data).dtype)
            buf = self.em.constant(f"{leaf.buf.name}.matrix", arr)
        else:
            buf = self.em.alloc(f"{leaf.buf.name}.matrix", full, leaf.buf.dtype)
            emit_elementwise(self.em, full, [Leaf(leaf.buf, v)], Expr(LOAD, (), 0, buf.dtype),
                             buf)
            self.em.barrier()
        strides = [0] * len(shape)
        for pos, axis in enumerate(order):
            strides[axis] = contiguous_strides(full)[pos]
        return buf, View(tuple(shape), tuple(strides), 0, None)

    def kernel(self, k: Kernel, later: list[Kernel] | None = None) -> None:
        """Emit `k`; `later` (the kernels after it) lets a zero-padding copy read only by
        the next convolution wait, so the convolution may read the unpadded image itself."""
        for dtype in {k.output.dtype, *(a.buffer.dtype for a in k.inputs)}:
            if DTYPE_SUPPORT[dtype] not in self.cfg.dtypes and dtype != "int32":
                raise CompileError(f"kernel {k.name} uses {dtype}, which chip "
                                   f"{self.cfg.name!r} does not support")
        if later and self._defer_pad(k, later):
            return
        out = self.dram(k.output)
        leaves = [self.leaf(k, i) for i in range(len(k.inputs))]
        used = {e.arg for e in k.epilogue.leaves() if e.op == LOAD} if k.epilogue else set()
        epi_leaves = [lf if i in used else Leaf(None, None, imm=Imm(0))
                      for i, lf in enumerate(leaves)]
        if k.kind == "elementwise":
            self.elementwise(k, leaves, out)
        elif k.kind == "contraction":
            assert k.contraction is not None
            ia, ib = k.contraction
            pads = {id(self.dram(buf)): (pad, flush) for buf, (pad, flush) in
                    ((a.buffer, self.deferred.pop(id(a.buffer))) for a in k.inputs
                     if id(a.buffer) in self.deferred)}
            emit_contraction(self.em, k.shape, k.reduce_axes, leaves[ia], leaves[ib],
                             k.epilogue, epi_leaves, out, k.output.shape, self.materialise,
                             pads)
        else:
            self.reduce(k, leaves, epi_leaves, out)
        self.em.barrier()

    def elementwise(self, k: Kernel, leaves: list[Leaf], out: DramBuffer) -> None:
        pad = self._pad_source(k)
        if pad is not None and pad_copy_fits(self.em, pad, k.shape, out):
            emit_pad_copy(self.em, pad, k.shape, out)
        else:
            emit_elementwise(self.em, k.shape, leaves, k.body, out)

    def _pad_source(self, k: Kernel) -> PadSource | None:
        """`k` as a zero-padding of the last two axes of an input, or None."""
        if k.kind != "elementwise" or k.body.op != LOAD or len(k.inputs) != 1 \
                or k.inputs[0].buffer.kind == "const" or k.body.dtype != k.output.dtype:
            return None
        v = k.inputs[0].view
        if v.mask is None or len(v.shape) < 3 or v.strides[-1] != 1 or v.is_empty \
                or any(m != (0, sz) for m, sz in zip(v.mask[:-2], v.shape[:-2], strict=True)):
            return None
        (y_lo, y_hi), (x_lo, x_hi) = v.mask[-2:]
        return PadSource(self.dram(k.inputs[0].buffer), v.offset, v.strides[-2], y_lo, y_hi,
                         x_lo, x_hi, tuple(v.strides[:-2]))

    def _defer_pad(self, k: Kernel, later: list[Kernel]) -> bool:
        """Hold back `k` when it only zero-pads the last two axes of an input for the next
        kernel, a contraction, and nothing later reads it: the contraction emits it (a
        callback) unless it reads the image through the returned `PadSource` instead."""
        nxt = later[0]
        pad = self._pad_source(k)
        if pad is None or k.output.kind != "temp" or nxt.kind != "contraction" \
                or all(a.buffer is not k.output for a in nxt.inputs) \
                or any(a.buffer is k.output for kk in later[1:] for a in kk.inputs):
            return False

        def flush() -> None:
            self.elementwise(k, [self.leaf(k, 0)], self.dram(k.output))
            self.em.barrier()

        self.deferred[id(k.output)] = (pad, flush)
        return True

    def reduce(self, k: Kernel, leaves: list[Leaf], epi_leaves: list[Leaf], out: DramBuffer
               ) -> None:
        """Bring the body to a contiguous (kept, reduced) matrix, then reduce its rows."""
        assert k.reduce_op is not None
        if self.window_reduce(k, leaves, epi_leaves, out):
            return
        keep = [i for i in range(len(k.shape)) if i not in k.reduce_axes]
        order = keep + list(k.reduce_axes)
        full = tuple(k.shape[i] for i in order)
        p_total = int(np.prod([k.shape[i] for i in keep], dtype=np.int64))
        q = int(np.prod([k.shape[i] for i in k.reduce_axes], dtype=np.int64))
        body = k.body
        src: DramBuffer | None = None
        if body.op == LOAD and leaves[body.arg].data is None:
            lf = leaves[body.arg]
            assert lf.view is not None and lf.buf is not None
            v = lf.view.permute(order)
            if v.is_contiguous and v.offset == 0 and lf.buf.shape and \
                    int(np.prod(lf.buf.shape)) == p_total * q:
                src = lf.buf
        if src is None:
            src = self.em.alloc(f"{k.name}.body", full, body.dtype)
            permuted = [Leaf(lf.buf, lf.view.permute(order) if lf.view is not None else None,
                             lf.data, lf.imm) for lf in leaves]
            emit_elementwise(self.em, full, permuted, body, src)
            self.em.barrier()
        limit = self.cfg.n * max(1, (self.cfg.sp_rows - 16) // 4 - 4)
        while q > limit:  # too long for one pass: reduce in stages of a divisor of q
            f = max(d for d in range(1, limit + 1) if q % d == 0)
            if f == 1:  # a prime: emit_reduce_rows reduces it in column windows
                break
            part = self.em.alloc(f"{k.name}.partial", (p_total * q // f,), src.dtype)
            emit_reduce_rows(self.em, src, p_total * q // f, f, k.reduce_op, None, [], part,
                             (p_total * q // f,))
            self.em.barrier()
            src, q = part, q // f
        emit_reduce_rows(self.em, src, p_total, q, k.reduce_op, k.epilogue, epi_leaves, out,
                         k.output.shape)


    def window_reduce(self, k: Kernel, leaves: list[Leaf], epi_leaves: list[Leaf],
                      out: DramBuffer) -> bool:
        """A reduction over a small window (pooling) as one elementwise kernel:
        fn(body at window position 0, body at position 1, ...), epilogue applied after.
        Every operand is then a plain strided view of the kept axes. False if it does
        not apply."""
        q = int(np.prod([k.shape[i] for i in k.reduce_axes], dtype=np.int64))
        body_leaves = [e.arg for e in k.body.leaves() if e.op == LOAD]
        if q > WINDOW_REDUCE_MAX or q * max(1, len(set(body_leaves))) > 24:
            return False
        kept = [i for i, s in enumerate(k.shape) if i not in k.reduce_axes and s > 1]
        if not kept or any(abs(leaves[j].view.strides[kept[-1]]) > MAX_LANE_STRIDE
                           for j in body_leaves if leaves[j].view is not None):
            return False  # the kept axes give no lanes: reduce across lanes instead
        big = [ax for ax in k.reduce_axes if k.shape[ax] > 1]
        if len(big) > 1 and q > 4:  # separable: rows of the window first, then columns
            if self.column_window_reduce(k, leaves, epi_leaves, out, kept[-1], big[-1]):
                return True
            return self.separable_reduce(k, leaves, epi_leaves, out, big[-1])
        red_shape = k.reduced_shape
        new_leaves: list[Leaf] = []
        epi_map: dict[int, int] = {}
        for i, lf in enumerate(epi_leaves):
            if lf.imm is not None or lf.view is None:
                continue
            v = lf.view.reshape(red_shape)
            if v is None:
                return False
            epi_map[i] = len(new_leaves)
            new_leaves.append(Leaf(lf.buf, v, lf.data))
        fn = Op.ADD if k.reduce_op is Op.REDUCE_SUM else Op.MAX
        chain: Expr | None = None
        for pos in np.ndindex(*[k.shape[i] for i in k.reduce_axes]):
            bounds = [(0, s) for s in k.shape]
            for axis, j in zip(k.reduce_axes, pos, strict=True):
                bounds[axis] = (int(j), int(j) + 1)
            remap: dict[int, int] = {}
            for j in sorted(set(body_leaves)):
                lf = leaves[j]
                assert lf.view is not None
                remap[j] = len(new_leaves)
                new_leaves.append(Leaf(lf.buf, lf.view.shrink(bounds), lf.data, lf.imm))
            term = _relabel(k.body, remap)
            chain = term if chain is None else Expr(fn, (chain, term), None, k.body.dtype)
        assert chain is not None
        body = chain if k.epilogue is None else _substitute(k.epilogue, chain, epi_map)
        emitted = len(self.em.code)
        try:
            emit_elementwise(self.em, red_shape, new_leaves, body, out)
        except CompileError:
            if len(self.em.code) != emitted:
                raise
            return False  # too many operands for the scratchpad: reduce the usual way
        return True


    def column_window_reduce(self, k: Kernel, leaves: list[Leaf], epi_leaves: list[Leaf],
                             out: DramBuffer, lane: int, col: int) -> bool:
        """Pooling over (rows, cols) windows: first reduce the window's other axes for
        every image column (lanes contiguous), then the column axis (lane stride s).

        Applies when, in every body view, the window column axis `col` has stride 1 and
        the output column axis `lane` a small stride s, with no mask: the columns
        ow*s + kw then form one contiguous axis of s*(OW-1) + KW elements."""
        body_leaves = sorted({e.arg for e in k.body.leaves() if e.op == LOAD})
        views = [leaves[j].view for j in body_leaves]
        if not views or any(v is None or v.mask is not None or v.strides[col] != 1
                            or not 1 <= v.strides[lane] <= MAX_LANE_STRIDE for v in views):
            return False
        s = views[0].strides[lane]
        if any(v.strides[lane] != s for v in views):
            return False
        nd = len(k.shape)
        width = s * (k.shape[lane] - 1) + k.shape[col]
        rest = tuple(ax for ax in k.reduce_axes if ax != col)
        # Stage 1 space: the original axes with `lane` widened to all columns, `col` = 1.
        shape1 = tuple(width if i == lane else 1 if i == col else d
                       for i, d in enumerate(k.shape))
        moved = list(leaves)
        for j in body_leaves:
            v = leaves[j].view
            assert v is not None
            strides = tuple(1 if i == lane else 0 if i == col else st
                            for i, st in enumerate(v.strides))
            moved[j] = Leaf(leaves[j].buf, View(shape1, strides, v.offset, None),
                            leaves[j].data, leaves[j].imm)
        part_shape = tuple(1 if i in rest else d for i, d in enumerate(shape1))
        part = self.em.alloc(f"{k.name}.cols", part_shape, k.body.dtype)
        first = Kernel(f"{k.name}a", "reduce", shape1, [], k.body, k.output, k.reduce_op,
                       rest)
        emitted = len(self.em.code)
        if not self.window_reduce(first, moved, [], part):
            if len(self.em.code) != emitted:
                raise CompileError("internal: a column-window reduction half emitted")
            return False
        self.em.barrier()
        cs = contiguous_strides(part_shape)
        strides2 = [0] * nd
        for i in range(nd):
            if i == lane:
                strides2[i] = s
            elif i == col:
                strides2[i] = 1
            elif i not in rest:
                strides2[i] = cs[i]
        shape2 = tuple(1 if i in rest else d for i, d in enumerate(k.shape))
        second = Kernel(f"{k.name}b", "reduce", shape2, [],
                        Expr(LOAD, (), len(epi_leaves), k.body.dtype), k.output, k.reduce_op,
                        (col,), k.epilogue)
        inner = list(epi_leaves) + [Leaf(part, View(shape2, tuple(strides2), 0, None))]
        if not self.window_reduce(second, inner, epi_leaves, out):
            raise CompileError("internal: the column pass of a window reduction failed")
        return True

    def separable_reduce(self, k: Kernel, leaves: list[Leaf], epi_leaves: list[Leaf],
                         out: DramBuffer, axis: int) -> bool:
        """Reduce `axis` into a temporary, then the other window axes. The temporary is
        laid out with the lane axis (the last kept one) innermost."""
        assert k.reduce_op is not None
        nd = len(k.shape)
        non_red = [i for i in range(nd) if i not in k.reduce_axes]
        lane = [i for i in non_red if k.shape[i] > 1][-1]
        rest = [ax for ax in k.reduce_axes if ax != axis]
        perm = [i for i in non_red if i != lane] + rest + [lane, axis]
        pshape = tuple(k.shape[i] for i in perm)
        part_shape = pshape[:-1] + (1,)
        part = self.em.alloc(f"{k.name}.rows", part_shape, k.body.dtype)
        first = Kernel(f"{k.name}a", "reduce", pshape, [], k.body, k.output, k.reduce_op,
                       (nd - 1,))
        moved = [Leaf(lf.buf, lf.view.permute(perm) if lf.view is not None else None,
                      lf.data, lf.imm) for lf in leaves]
        if not self.window_reduce(first, moved, [], part):
            return False
        self.em.barrier()
        cs = contiguous_strides(part_shape)
        strides = [0] * nd
        for pos, i in enumerate(perm):
            strides[i] = cs[pos] if i != axis else 0
        shape2 = tuple(1 if i == axis else s for i, s in enumerate(k.shape))
        second = Kernel(f"{k.name}b", "reduce", shape2, [],
                        Expr(LOAD, (), len(epi_leaves), k.body.dtype), k.output, k.reduce_op,
                        tuple(rest), k.epilogue)
        inner = list(epi_leaves) + [Leaf(part, View(shape2, tuple(strides), 0, None))]
        if not self.window_reduce(second, inner, epi_leaves, out):
            raise CompileError("internal: the second pass of a separable reduction failed")
        return True


WINDOW_REDUCE_MAX = 16  # reductions over at most this many elements become elementwise


def _relabel(e: Expr, remap: dict[int, int]) -> Expr:
    if e.op == LOAD:
        return Expr(LOAD, (), remap[e.arg], e.dtype)
    return Expr(e.op, tuple(_relabel(s, remap) for s in e.srcs), e.arg, e.dtype)


def _substitute(e: Expr, acc_value: Expr, remap: dict[int, int]) -> Expr:
    """The epilogue with ACC replaced by `acc_value` and its loads renumbered."""
    if e.op == ACC:
        return acc_value
    if e.op == LOAD:
        return Expr(LOAD, (), remap[e.arg], e.dtype)
    return Expr(e.op, tuple(_substitute(s, acc_value, remap) for s in e.srcs), e.arg, e.dtype)


def compile_graph(graph: Graph, cfg: ChipConfig, progress: Callable[[int, int], Any] | None
                  = None) -> Program:
    """Compile `graph` for `cfg` into a runnable program (inputs/outputs as symbols)."""
    started = time.perf_counter()
    for node in graph.nodes():
        if node.op.kind.name == "REDUCE" and node.op not in (Op.REDUCE_SUM, Op.REDUCE_MAX):
            raise CompileError(f"the chip cannot run {node.op.name}")
    sched = schedule(graph)
    low = Lowering(cfg, sched)
    for i, k in enumerate(sched.kernels):
        try:
            low.kernel(k, sched.kernels[i + 1:])
        except CompileError as exc:
            raise CompileError(f"kernel {k.name} ({', '.join(k.source) or k.kind}): {exc}") \
                from None
        if progress is not None:
            progress(i + 1, len(sched.kernels))
    macs = sum(k.macs for k in sched.kernels)
    meta = {"compiler": "dozen", "kernels": len(sched.kernels), "macs": int(macs),
            "compile_seconds": round(time.perf_counter() - started, 3),
            "kernel_list": [k.describe()[:200] for k in sched.kernels[:200]]}
    return low.em.program(meta)
