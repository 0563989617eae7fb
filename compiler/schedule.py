"""The kernel schedule: a primitive-op Graph grouped into fused Kernels.

Every backend that generates code (the ISA lowering, OpenCL C, LLVM IR) consumes the
SAME `Kernel` objects, made by `schedule(graph)`. A kernel reads base buffers through
Views, evaluates one expression tree per element, optionally reduces, optionally applies
an epilogue, and writes ONE output buffer, contiguous and row-major.

Semantics of a Kernel `k` (this is the contract every backend implements):

    for every index i of k.shape:                      # the iteration space
        v[i] = eval(k.body, i)                          # leaves: k.inputs[j].view at i
    if k.reduce_op is None:
        out = v                                         # k.shape == k.output.shape
    else:
        r = reduce(k.reduce_op, v, axes=k.reduce_axes)  # keepdims: shape k.reduced_shape
        r = r.reshape(k.output.shape)                   # same element count, flat order kept
        out[o] = eval(k.epilogue, o) if k.epilogue else r[o]
                                                        # leaves: ACC = r[o],
                                                        # LOAD j = k.inputs[j].view at o
    k.output.buffer[...] = out

Expression trees (`Expr`) use the IR's elementwise ops (`compiler.ir.Op`: UNARY,
BINARY, TERNARY kinds and REQUANT) with the IR's numerics, plus two leaf kinds:
`LOAD` (arg = index into `k.inputs`; the element the input's View gives at the current
index, the View's shape is `k.shape` for body leaves and `k.output.shape` for epilogue
leaves) and `ACC` (the reduced value; epilogues only). REQUANT's `arg.axis` refers to the
axes of the shape the expression is evaluated over.

Kernel kinds:
- `elementwise`: no reduce; fused chains of elementwise ops, also pure copies (a body
  that is just a LOAD through a View: materialised movement ops).
- `reduce`: REDUCE_SUM or REDUCE_MAX of a fused elementwise body, with an epilogue.
- `contraction`: REDUCE_SUM of MUL(a, b) where a and b are LOADs, possibly wrapped in
  CAST int8 -> int32 (the int8 matrix-unit pattern) or both float32: matmul and conv.
  `k.contraction` gives the two operand indices. The epilogue carries the fused bias,
  activation and requantisation.

Grouping rules: a computed node gets its own buffer (becomes a kernel output) when it is a
graph output, has more than one consumer, or is read through movement ops (a View needs
a materialised base). Elementwise nodes with one consumer fuse into it. A REDUCE fuses
into its single elementwise consumer's kernel as that kernel's reduce (through reshapes
that keep flat order), so bias + ReLU + REQUANT land in the matmul/conv epilogue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.ir import (
    ELEMENTWISE_OPS,
    MOVEMENT_OPS,
    Graph,
    Node,
    Op,
)
from compiler.view import View, fold

LOAD = "LOAD"  # Expr leaf: arg = index into Kernel.inputs
ACC = "ACC"  # Expr leaf in epilogues: the reduced value


@dataclass(frozen=True, eq=False)
class Buffer:
    """A tensor in memory between kernels, stored contiguous and row-major.

    kind: "input" (graph input, `name` is its name), "const" (`data` holds the array),
    "output" (graph output, `name` is its name) or "temp" (an intermediate).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str
    data: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"<Buffer {self.kind} {self.name} {self.dtype}{list(self.shape)}>"


@dataclass(frozen=True)
class Access:
    """How a kernel reads a buffer: `view` maps an index of the kernel's space to the buffer."""

    buffer: Buffer
    view: View


@dataclass(frozen=True, eq=False)
class Expr:
    """A node of a kernel's per-element expression tree.

    op: a `compiler.ir.Op` (elementwise or REQUANT) or the leaf markers LOAD / ACC.
    arg: the IR op's arg (CAST target, RequantArg), or the input index for LOAD.
    """

    op: Any
    srcs: tuple[Expr, ...]
    arg: Any
    dtype: str

    def leaves(self) -> list[Expr]:
        if self.op in (LOAD, ACC):
            return [self]
        return [leaf for s in self.srcs for leaf in s.leaves()]

    def __repr__(self) -> str:
        if self.op == LOAD:
            return f"in{self.arg}"
        if self.op == ACC:
            return "acc"
        name = self.op.name.lower()
        if self.op is Op.CAST:
            name = f"cast_{self.arg}"
        return f"{name}({', '.join(map(repr, self.srcs))})"


@dataclass(eq=False)
class Kernel:
    """One fused kernel; see the module docstring for its exact semantics."""

    name: str
    kind: str  # "elementwise" | "reduce" | "contraction"
    shape: tuple[int, ...]  # iteration space of `body`
    inputs: list[Access]
    body: Expr
    output: Buffer
    reduce_op: Op | None = None  # Op.REDUCE_SUM or Op.REDUCE_MAX
    reduce_axes: tuple[int, ...] = ()
    epilogue: Expr | None = None
    contraction: tuple[int, int] | None = None  # (input index of a, input index of b)
    source: list[str] = field(default_factory=list)  # the IR ops fused here, for display

    @property
    def reduced_shape(self) -> tuple[int, ...]:
        return tuple(1 if i in self.reduce_axes else s for i, s in enumerate(self.shape))

    @property
    def macs(self) -> int:
        return math.prod(self.shape) if self.kind == "contraction" else 0

    def describe(self) -> str:
        red = f" {self.reduce_op.name.lower()}{list(self.reduce_axes)}" if self.reduce_op else ""
        epi = f" then {self.epilogue!r}" if self.epilogue is not None else ""
        return (f"{self.name}: {self.kind} {list(self.shape)}{red} {self.body!r}{epi} -> "
                f"{self.output.name} {self.output.dtype}{list(self.output.shape)}")


@dataclass
class Schedule:
    """The kernels of a graph in execution order and its buffers by role."""

    kernels: list[Kernel]
    inputs: dict[str, Buffer]
    outputs: dict[str, Buffer]
    consts: list[Buffer]


class _Scheduler:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = graph.nodes()
        self.consumers: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for n in self.nodes:
            for s in n.srcs:
                self.consumers[s].append(n)
        self.output_nodes = {id(n) for n in graph.outputs.values()}
        self.buffers: dict[Node, Buffer] = {}
        self.kernels: list[Kernel] = []
        self.consts: list[Buffer] = []
        self.roots: set[Node] = set()
        self.fused_reduce: set[Node] = set()

    # Which nodes get buffers ------------------------------------------------------------
    def find_roots(self) -> None:
        for n in self.nodes:
            computed = n.op not in (Op.INPUT, Op.CONST) and n.op not in MOVEMENT_OPS
            users = self.consumers[n]
            if id(n) in self.output_nodes:
                self.roots.add(n)
            elif computed and (len(users) > 1 or n.op.kind.name == "REDUCE"
                               or any(u.op in MOVEMENT_OPS for u in users)):
                self.roots.add(n)
            if n.op in MOVEMENT_OPS and any(u.op not in MOVEMENT_OPS for u in users):
                base, _ = fold(n)
                while base.op in MOVEMENT_OPS:  # reshapes strides cannot express
                    self.roots.add(base)
                    base, _ = fold(base)
        # A REDUCE with one elementwise consumer becomes that kernel's reduce.
        owner_has_reduce: set[Node] = set()
        for r in self.nodes:
            if r not in self.roots or r.op.kind.name != "REDUCE" or id(r) in self.output_nodes:
                continue
            user = self._sole_elementwise_user(r)
            if user is None:
                continue
            owner = user if user.op in MOVEMENT_OPS else self._kernel_root(user)
            if owner is None or owner in owner_has_reduce:
                continue
            owner_has_reduce.add(owner)
            self.roots.discard(r)
            self.fused_reduce.add(r)

    def _sole_elementwise_user(self, r: Node) -> Node | None:
        node = r
        while True:
            users = self.consumers[node]
            if len(users) != 1:
                return None
            user = users[0]
            if user.op in MOVEMENT_OPS:
                if id(user) in self.output_nodes or user in self.roots:
                    # a reshaped reduce that is itself an output: write it directly
                    base, view = fold(user)
                    return user if base is r and view.is_contiguous else None
                node = user
                continue
            if node is not r:  # passed through movement ops: must keep flat order
                base, view = fold(node)
                if base is not r or not view.is_contiguous:
                    return None
            if user.op in ELEMENTWISE_OPS or user.op is Op.REQUANT:
                return user
            return None

    def _kernel_root(self, node: Node) -> Node | None:
        """The root of the kernel an elementwise node fuses into (None: through a reduce)."""
        while True:
            if node.op.kind.name == "REDUCE":
                return None  # a reduce body cannot hold another reduce
            if node in self.roots:
                return node
            users = self.consumers[node]
            if len(users) != 1 or users[0].op in MOVEMENT_OPS:
                return None
            node = users[0]

    # Buffers ----------------------------------------------------------------------------
    def buffer_of(self, node: Node) -> Buffer:
        buf = self.buffers.get(node)
        if buf is None:
            if node.op is Op.INPUT:
                buf = Buffer(node.arg, node.shape, node.dtype, "input")
            elif node.op is Op.CONST:
                buf = Buffer(f"const{len(self.consts)}", node.shape, node.dtype, "const",
                             np.asarray(node.arg))
                self.consts.append(buf)
            else:
                raise AssertionError(f"{node!r} has no buffer yet")
            self.buffers[node] = buf
        return buf

    # Kernel building --------------------------------------------------------------------
    def build(self, root: Node, out: Buffer) -> Kernel:
        inputs: list[Access] = []
        index: dict[tuple[int, View], int] = {}
        state: dict[str, Any] = {"reduce": None, "body": None, "source": []}

        def leaf(buf: Buffer, view: View, dtype: str) -> Expr:
            key = (id(buf), view)
            if key not in index:
                index[key] = len(inputs)
                inputs.append(Access(buf, view))
            return Expr(LOAD, (), index[key], dtype)

        def visit(node: Node, top: bool, in_body: bool) -> Expr:
            if not top and (node in self.buffers or node.op in (Op.INPUT, Op.CONST)):
                return leaf(self.buffer_of(node), View.contiguous(node.shape), node.dtype)
            if node.op in MOVEMENT_OPS:
                base, view = fold(node)
                if base in self.fused_reduce and not in_body and state["reduce"] is None:
                    return visit(base, False, in_body)
                return leaf(self.buffer_of(base), view, node.dtype)
            state["source"].append(node.op.name.lower())
            if node.op.kind.name == "REDUCE":
                if in_body or state["reduce"] is not None or not (top or node in self.fused_reduce):
                    raise AssertionError(f"unscheduled reduce {node!r}")
                state["reduce"] = node
                state["body"] = visit(node.srcs[0], False, True)
                return Expr(ACC, (), None, node.dtype)
            if node.op in ELEMENTWISE_OPS or node.op is Op.REQUANT:
                srcs = tuple(visit(s, False, in_body) for s in node.srcs)
                return Expr(node.op, srcs, node.arg, node.dtype)
            raise AssertionError(f"cannot schedule {node!r}")

        expr = visit(root, True, False)
        name = f"k{len(self.kernels)}"
        red: Node | None = state["reduce"]
        if red is None:
            return Kernel(name, "elementwise", root.shape, inputs, expr, out,
                          source=state["source"])
        body: Expr = state["body"]
        epilogue = None if expr.op == ACC else expr
        shape = red.srcs[0].shape
        kernel = Kernel(name, "reduce", shape, inputs, body, out, red.op, tuple(red.arg),
                        epilogue, source=state["source"])
        pair = _contraction_operands(body)
        if red.op is Op.REDUCE_SUM and pair is not None:
            kernel.kind, kernel.contraction = "contraction", pair
        return kernel

    def run(self) -> Schedule:
        self.find_roots()
        out_names = {}
        for name, node in self.graph.outputs.items():
            out_names.setdefault(node, name)
        inputs = {name: self.buffer_of(node) for name, node in self.graph.inputs.items()}
        outputs: dict[str, Buffer] = {}
        for node in self.nodes:
            if node not in self.roots:
                continue
            if node in out_names:
                out = Buffer(out_names[node], node.shape, node.dtype, "output")
            else:
                out = Buffer(f"t{len(self.kernels)}", node.shape, node.dtype, "temp")
            if node.op in (Op.INPUT, Op.CONST):  # an output that is an input or a constant
                src = self.buffer_of(node)
                kernel = Kernel(f"k{len(self.kernels)}", "elementwise", node.shape,
                                [Access(src, View.contiguous(node.shape))],
                                Expr(LOAD, (), 0, node.dtype), out, source=["copy"])
            else:
                kernel = self.build(node, out)
            self.kernels.append(kernel)
            self.buffers[node] = out
            if out.kind == "output":
                outputs[out.name] = out
        for name, node in self.graph.outputs.items():  # a node named by two outputs
            if name not in outputs:
                src = self.buffers[node]
                out = Buffer(name, node.shape, node.dtype, "output")
                self.kernels.append(Kernel(f"k{len(self.kernels)}", "elementwise", node.shape,
                                           [Access(src, View.contiguous(node.shape))],
                                           Expr(LOAD, (), 0, node.dtype), out,
                                           source=["copy"]))
                outputs[name] = out
        return Schedule(self.kernels, inputs, outputs, self.consts)


def _strip_widen(e: Expr) -> Expr:
    if e.op is Op.CAST and e.dtype == "int32" and e.srcs[0].dtype == "int8":
        return e.srcs[0]
    return e


def _contraction_operands(body: Expr) -> tuple[int, int] | None:
    """(a, b) input indices when `body` is MUL of two int8 or two float32 loads."""
    if body.op is not Op.MUL:
        return None
    a, b = (_strip_widen(s) for s in body.srcs)
    if a.op != LOAD or b.op != LOAD:
        return None
    if body.dtype == "float32" and a.dtype == b.dtype == "float32":
        return a.arg, b.arg
    if body.dtype == "int32" and a.dtype == b.dtype == "int8":
        return a.arg, b.arg
    return None


def schedule(graph: Graph) -> Schedule:
    """Group `graph` into fused kernels in execution order (see the module docstring)."""
    return _Scheduler(graph).run()
