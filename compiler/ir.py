"""The primitive-op graph: Dozen's compiler IR, with every op listed once in `Op`.

Everything the Tensor API and the ONNX importer produce lowers to these ops, in the
spirit of tinygrad: matmul is `REDUCE_SUM(MUL(view_a, view_b))` over EXPANDed/RESHAPEd
views, conv2d is PAD + a sliding-window view + MUL + REDUCE_SUM, pooling is a window view
+ REDUCE_MAX/REDUCE_SUM. Backends (the ISA compiler, OpenCL, LLVM, the numpy reference in
`compiler.reference`) consume `Graph`s of `Node`s.

Rules every consumer may rely on:

- A `Node` is immutable and compared by identity (use it as a dict key). `shape` is a
  tuple of positive ints (`()` for a scalar); `dtype` is one of `DTYPES`.
- Elementwise ops (UNARY, BINARY, TERNARY) take sources of *equal* shape: the builders
  below broadcast by inserting explicit RESHAPE + EXPAND nodes, so no backend needs
  implicit broadcasting. Sources of a BINARY/TERNARY op share one dtype (WHERE's
  condition may have any dtype: nonzero selects the second source).
- Arithmetic: int32 wraps modulo 2^32, int8 results wrap modulo 2^8 (the chip keeps int8
  sign-extended in 32-bit lanes and stores the low byte); saturation is REQUANT's job.
  Integer DIV truncates toward zero and x/0 = 0 (as the ISA's BINARY div). CMPLT/CMPEQ
  give 1 or 0 in their sources' dtype. float32 is IEEE binary32.
- CAST (arg = target dtype): int -> float32 exact/rounded to nearest even; float32 -> int
  rounds to nearest even and saturates to int32 (NaN -> 0); anything -> int8 then keeps the
  low 8 bits of that int32 (wraps). Widening int8 -> int32 sign-extends.
- REDUCE ops keep dims: arg = sorted tuple of axes, result has size 1 on those axes. int32
  sums wrap.
- The int8 contraction pattern (what the matrix unit runs) is
  `REDUCE_SUM(MUL(CAST_int32(view(a_int8)), CAST_int32(view(b_int8))))`, where `view(x)` is a
  chain of movement ops; `compiler.view.fold` turns each chain into one `View`. The fp32
  pattern is the same without the casts.
- REQUANT takes int32 and applies, per channel c along `arg.axis`, exactly the rule in
  `isa.model.NUMERICS`: p = x*m[c] (64-bit); q = s[c]==0 ? p : (p + 2^(s[c]-1)) >> s[c];
  y = clamp(q + zp, lo, hi). Result dtype is `arg.out_dtype` (int8 or int32).

Build nodes with the functions in this module (`input_`, `const`, `unary`, `binary`,
`ternary`, `reduce`, movement helpers, `requant`); they infer shapes and raise `IRError`
(a one-line `InputError`) on a mismatch.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isa.errors import InputError

DTYPES = ("int8", "int32", "float32")
NUMPY_DTYPES = {"int8": np.int8, "int32": np.int32, "float32": np.float32}


class IRError(InputError):
    """A graph that cannot be built: a shape or dtype mismatch, a bad axis or argument."""


class OpKind(enum.Enum):
    LOAD = "load"
    UNARY = "unary"
    BINARY = "binary"
    TERNARY = "ternary"
    REDUCE = "reduce"
    MOVEMENT = "movement"
    QUANT = "quant"


class Op(enum.Enum):
    """Every primitive op, grouped by kind. `op.kind` tells the group; `arg` meaning in comments."""

    # LOAD
    INPUT = "input"  # arg: the input's name
    CONST = "const"  # arg: a read-only numpy array of the node's shape and dtype
    # UNARY (arg None, except CAST)
    NEG = "neg"
    RELU = "relu"
    EXP2 = "exp2"
    LOG2 = "log2"
    SIN = "sin"
    SQRT = "sqrt"
    RECIP = "recip"
    CAST = "cast"  # arg: target dtype name
    # BINARY
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MAX = "max"
    MIN = "min"
    CMPLT = "cmplt"
    CMPEQ = "cmpeq"
    # TERNARY
    WHERE = "where"  # srcs: (cond, if_true, if_false)
    MULACC = "mulacc"  # srcs: (a, b, c) -> a*b + c
    # REDUCE (arg: sorted tuple of axes; dims kept with size 1)
    REDUCE_SUM = "reduce_sum"
    REDUCE_MAX = "reduce_max"
    # MOVEMENT
    RESHAPE = "reshape"  # arg: new shape (same element count)
    PERMUTE = "permute"  # arg: axis order, a permutation of range(ndim)
    EXPAND = "expand"  # arg: new shape, same ndim; only size-1 axes grow
    PAD = "pad"  # arg: per-axis (before, after), >= 0; the pad value is 0
    SHRINK = "shrink"  # arg: per-axis (start, end), 0 <= start < end <= size
    FLIP = "flip"  # arg: sorted tuple of axes to reverse
    # QUANT
    REQUANT = "requant"  # arg: RequantArg

    @property
    def kind(self) -> OpKind:
        return _KIND[self]


_KIND: dict[Op, OpKind] = {}
for _kind, _ops in (
    (OpKind.LOAD, (Op.INPUT, Op.CONST)),
    (OpKind.UNARY, (Op.NEG, Op.RELU, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.CAST)),
    (OpKind.BINARY, (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAX, Op.MIN, Op.CMPLT, Op.CMPEQ)),
    (OpKind.TERNARY, (Op.WHERE, Op.MULACC)),
    (OpKind.REDUCE, (Op.REDUCE_SUM, Op.REDUCE_MAX)),
    (OpKind.MOVEMENT, (Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.PAD, Op.SHRINK, Op.FLIP)),
    (OpKind.QUANT, (Op.REQUANT,)),
):
    for _op in _ops:
        _KIND[_op] = _kind
assert set(_KIND) == set(Op), "every Op needs a kind"

UNARY_OPS = frozenset(o for o in Op if o.kind is OpKind.UNARY)
BINARY_OPS = frozenset(o for o in Op if o.kind is OpKind.BINARY)
TERNARY_OPS = frozenset(o for o in Op if o.kind is OpKind.TERNARY)
ELEMENTWISE_OPS = UNARY_OPS | BINARY_OPS | TERNARY_OPS
REDUCE_OPS = frozenset(o for o in Op if o.kind is OpKind.REDUCE)
MOVEMENT_OPS = frozenset(o for o in Op if o.kind is OpKind.MOVEMENT)
FLOAT_ONLY_OPS = frozenset({Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP})


@dataclass(frozen=True, eq=False)
class RequantArg:
    """Per-channel requantisation parameters (see `isa.model.NUMERICS`).

    `multiplier` (int32 range) and `shift` (0..63) are int64 arrays of length 1 (per tensor)
    or of the node's size along `axis`. `zp`, `lo`, `hi` fit the ISA's 9-bit signed fields.
    """

    multiplier: np.ndarray
    shift: np.ndarray
    zp: int = 0
    lo: int = -128
    hi: int = 127
    axis: int = 0
    out_dtype: str = "int8"

    def channel_params(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Multiplier and shift reshaped to broadcast against an `ndim`-d tensor."""
        shape = [1] * ndim
        if ndim:
            shape[self.axis] = -1
        return self.multiplier.reshape(shape), self.shift.reshape(shape)


@dataclass(frozen=True, eq=False)
class Node:
    """One op applied to source nodes. Immutable; equality and hashing are by identity."""

    op: Op
    srcs: tuple[Node, ...]
    arg: Any
    shape: tuple[int, ...]
    dtype: str
    name: str | None = field(default=None, compare=False)  # optional label for debugging

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        arg = self.arg
        if isinstance(arg, np.ndarray):
            arg = f"array{arg.shape}"
        elif isinstance(arg, RequantArg):
            arg = f"requant(axis={arg.axis}, zp={arg.zp}, lo={arg.lo}, hi={arg.hi})"
        return f"<{self.op.name} {self.dtype}{list(self.shape)} arg={arg} srcs={len(self.srcs)}>"


@dataclass
class Graph:
    """Named inputs (INPUT nodes) and named outputs (any nodes) of one computation.

    `meta` carries facts about the graph that are not computation, e.g. the scales of a
    quantised graph's int8 inputs and outputs (`frontend.quantize`); backends ignore it."""

    inputs: dict[str, Node]
    outputs: dict[str, Node]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, node in self.inputs.items():
            if node.op is not Op.INPUT or node.arg != name:
                raise IRError(f"graph input {name!r} is not an INPUT node of that name")
        reached = {n.arg for n in self.nodes() if n.op is Op.INPUT}
        missing = sorted(reached - set(self.inputs))
        if missing:
            raise IRError(f"graph uses input {missing[0]!r} that is not among its inputs")

    def nodes(self) -> list[Node]:
        """All nodes reachable from the outputs, sources before users (iterative: deep graphs)."""
        return toposort(self.outputs.values())

    def input_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {name: (n.shape, n.dtype) for name, n in self.inputs.items()}

    def dump(self) -> str:
        """One line per node, sources before users: `%i = OP dtype[shape] (srcs) arg`."""
        index: dict[int, int] = {}
        lines = []
        names = {id(n): name for name, n in self.outputs.items()}
        for i, n in enumerate(self.nodes()):
            index[id(n)] = i
            arg = n.arg
            if isinstance(arg, np.ndarray):
                arg = f"array{list(arg.shape)}" if arg.size > 4 else arg.tolist()
            elif isinstance(arg, RequantArg):
                arg = (f"m={arg.multiplier.tolist()[:4]} s={arg.shift.tolist()[:4]} "
                       f"zp={arg.zp} lo={arg.lo} hi={arg.hi} axis={arg.axis}")
            srcs = ", ".join(f"%{index[id(s)]}" for s in n.srcs)
            out = f"  -> {names[id(n)]}" if id(n) in names else ""
            lines.append(f"%{i} = {n.op.name} {n.dtype}{list(n.shape)} ({srcs})"
                         + ("" if arg is None else f" {arg}") + out)
        return "\n".join(lines)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes():
            counts[n.op.name] = counts.get(n.op.name, 0) + 1
        return counts


def toposort(roots: Iterable[Node]) -> list[Node]:
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        stack: list[tuple[Node, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and id(node) in seen:
                continue
            if i < len(node.srcs):
                stack.append((node, i + 1))
                src = node.srcs[i]
                if id(src) not in seen:
                    stack.append((src, 0))
            else:
                if id(node) not in seen:
                    seen.add(id(node))
                    order.append(node)
    return order


# Builders --------------------------------------------------------------------------------

def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise IRError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    return dtype


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if any(s <= 0 for s in out):
        raise IRError(f"shape {list(out)} has a non-positive dimension (empty tensors are "
                      "not supported)")
    return out


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise IRError(f"axis {axis} out of range for a {ndim}-d tensor")
    return axis % ndim if ndim else 0


def input_(name: str, shape: Sequence[int], dtype: str = "float32") -> Node:
    return Node(Op.INPUT, (), str(name), _check_shape(shape), _check_dtype(dtype))


def const(value: Any, dtype: str | None = None) -> Node:
    """A constant; the array is copied and frozen. dtype defaults from the array's kind."""
    arr = np.asarray(value)
    if dtype is None:
        if arr.dtype == np.int8:
            dtype = "int8"
        elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            dtype = "int32"
        else:
            dtype = "float32"
    arr = np.array(arr, dtype=NUMPY_DTYPES[_check_dtype(dtype)], copy=True)
    arr.setflags(write=False)
    return Node(Op.CONST, (), arr, _check_shape(arr.shape), dtype)


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (ndim - len(s)) + tuple(s) for s in shapes], strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise IRError("shapes " + " and ".join(str(list(s)) for s in shapes)
                          + " do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def broadcast_to(x: Node, shape: Sequence[int]) -> Node:
    """RESHAPE (prepend 1s) + EXPAND so that `x` has exactly `shape`."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if len(x.shape) > len(shape):
        raise IRError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
    if len(x.shape) < len(shape):
        x = reshape(x, (1,) * (len(shape) - len(x.shape)) + x.shape)
    return expand(x, shape)


def unary(op: Op, x: Node, arg: Any = None) -> Node:
    if op not in UNARY_OPS:
        raise IRError(f"{op.name} is not a unary op")
    dtype = x.dtype
    if op is Op.CAST:
        dtype = _check_dtype(arg)
        if dtype == x.dtype:
            return x
    elif arg is not None:
        raise IRError(f"{op.name} takes no argument")
    if op in FLOAT_ONLY_OPS and x.dtype != "float32":
        raise IRError(f"{op.name} needs float32, got {x.dtype} (cast first)")
    return Node(op, (x,), arg if op is Op.CAST else None, x.shape, dtype)


def binary(op: Op, a: Node, b: Node) -> Node:
    if op not in BINARY_OPS:
        raise IRError(f"{op.name} is not a binary op")
    if a.dtype != b.dtype:
        raise IRError(f"{op.name}: dtypes differ ({a.dtype} and {b.dtype}); cast first")
    shape = broadcast_shape(a.shape, b.shape)
    return Node(op, (broadcast_to(a, shape), broadcast_to(b, shape)), None, shape, a.dtype)


def ternary(op: Op, a: Node, b: Node, c: Node) -> Node:
    if op not in TERNARY_OPS:
        raise IRError(f"{op.name} is not a ternary op")
    if b.dtype != c.dtype or (op is Op.MULACC and a.dtype != b.dtype):
        raise IRError(f"{op.name}: dtypes differ ({a.dtype}, {b.dtype}, {c.dtype})")
    shape = broadcast_shape(a.shape, b.shape, c.shape)
    srcs = tuple(broadcast_to(s, shape) for s in (a, b, c))
    return Node(op, srcs, None, shape, b.dtype)


def reduce(op: Op, x: Node, axes: Iterable[int] | None = None) -> Node:
    """Reduce over `axes` (all when None), keeping them as size-1 dims."""
    if op not in REDUCE_OPS:
        raise IRError(f"{op.name} is not a reduce op")
    axes = tuple(range(x.ndim)) if axes is None else tuple(_axis(a, x.ndim) for a in axes)
    axes = tuple(sorted(set(axes)))
    if not axes:
        return x
    shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    return Node(op, (x,), axes, shape, x.dtype)


def reshape(x: Node, shape: Sequence[int]) -> Node:
    shape = list(shape)
    if shape.count(-1) > 1:
        raise IRError(f"reshape to {shape}: at most one -1")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or x.numel % rest:
            raise IRError(f"cannot reshape {list(x.shape)} to {shape}")
        shape[shape.index(-1)] = x.numel // rest
    new = _check_shape(shape)
    if math.prod(new) != x.numel:
        raise IRError(f"cannot reshape {list(x.shape)} ({x.numel} elements) to {list(new)}")
    if new == x.shape:
        return x
    return Node(Op.RESHAPE, (x,), new, new, x.dtype)


def permute(x: Node, order: Sequence[int]) -> Node:
    order = tuple(_axis(a, x.ndim) for a in order)
    if sorted(order) != list(range(x.ndim)):
        raise IRError(f"permute {list(order)} is not a permutation of {x.ndim} axes")
    if order == tuple(range(x.ndim)):
        return x
    return Node(Op.PERMUTE, (x,), order, tuple(x.shape[a] for a in order), x.dtype)


def expand(x: Node, shape: Sequence[int]) -> Node:
    shape = _check_shape(shape)
    if len(shape) != x.ndim or any(s != n and s != 1 for s, n in zip(x.shape, shape, strict=True)):
        raise IRError(f"cannot expand {list(x.shape)} to {list(shape)} (only size-1 axes grow)")
    if shape == x.shape:
        return x
    return Node(Op.EXPAND, (x,), shape, shape, x.dtype)


def pad(x: Node, widths: Sequence[tuple[int, int]]) -> Node:
    widths = tuple((int(b), int(a)) for b, a in widths)
    if len(widths) != x.ndim or any(b < 0 or a < 0 for b, a in widths):
        raise IRError(f"pad {list(widths)} needs one non-negative (before, after) per axis of "
                      f"{list(x.shape)}")
    if all(b == 0 and a == 0 for b, a in widths):
        return x
    shape = tuple(s + b + a for s, (b, a) in zip(x.shape, widths, strict=True))
    return Node(Op.PAD, (x,), widths, shape, x.dtype)


def shrink(x: Node, bounds: Sequence[tuple[int, int]]) -> Node:
    bounds = tuple((int(s), int(e)) for s, e in bounds)
    if len(bounds) != x.ndim or any(not 0 <= s < e <= n
                                    for (s, e), n in zip(bounds, x.shape, strict=True)):
        raise IRError(f"shrink {list(bounds)} out of range for shape {list(x.shape)}")
    if all(s == 0 and e == n for (s, e), n in zip(bounds, x.shape, strict=True)):
        return x
    return Node(Op.SHRINK, (x,), bounds, tuple(e - s for s, e in bounds), x.dtype)


def flip(x: Node, axes: Iterable[int]) -> Node:
    axes = tuple(sorted({_axis(a, x.ndim) for a in axes}))
    if not axes:
        return x
    return Node(Op.FLIP, (x,), axes, x.shape, x.dtype)


def requant(x: Node, arg: RequantArg) -> Node:
    if x.dtype != "int32":
        raise IRError(f"REQUANT needs an int32 source, got {x.dtype}")
    if arg.out_dtype not in ("int8", "int32"):
        raise IRError(f"REQUANT output dtype must be int8 or int32, got {arg.out_dtype}")
    axis = _axis(arg.axis, x.ndim) if x.ndim else 0
    mult = np.asarray(arg.multiplier, dtype=np.int64).reshape(-1)
    shift = np.asarray(arg.shift, dtype=np.int64).reshape(-1)
    channels = x.shape[axis] if x.ndim else 1
    for what, arr in (("multiplier", mult), ("shift", shift)):
        if arr.size not in (1, channels):
            raise IRError(f"REQUANT {what} has {arr.size} values for {channels} channels")
    if mult.size != shift.size:
        mult, shift = np.broadcast_arrays(mult, shift)
        mult, shift = mult.copy(), shift.copy()
    if np.any(mult < -(1 << 31)) or np.any(mult >= 1 << 31):
        raise IRError("REQUANT multiplier out of the int32 range")
    if np.any(shift < 0) or np.any(shift > 63):
        raise IRError("REQUANT shift out of 0..63")
    for what, v in (("zp", arg.zp), ("lo", arg.lo), ("hi", arg.hi)):
        if not -256 <= int(v) <= 255:
            raise IRError(f"REQUANT {what}={v} does not fit the 9-bit signed field")
    if arg.lo > arg.hi:
        raise IRError(f"REQUANT lo={arg.lo} above hi={arg.hi}")
    mult.setflags(write=False)
    shift.setflags(write=False)
    fixed = RequantArg(mult, shift, int(arg.zp), int(arg.lo), int(arg.hi), axis, arg.out_dtype)
    return Node(Op.REQUANT, (x,), fixed, x.shape, arg.out_dtype)


def is_contraction(node: Node) -> bool:
    """True for REDUCE_SUM over MUL (optionally of int8->int32 CASTs): the matrix-unit pattern."""
    return (node.op is Op.REDUCE_SUM and node.srcs[0].op is Op.MUL)
