"""The numpy reference interpreter of a primitive-op `Graph`: the oracle for every backend.

`run(graph, inputs) -> outputs` evaluates node by node with plain numpy, independently of
`compiler.view` (movement ops use numpy's reshape/transpose/pad/slicing, so the tests can
hold the View machinery against it). Integer graphs are exact: arithmetic is done in
int64 and wrapped to int32/int8, REQUANT follows `isa.model.NUMERICS` bit for bit. float32
graphs compute in float32 (sums use numpy's pairwise summation; other backends agree
within a tolerance, not bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from compiler.ir import NUMPY_DTYPES, Graph, IRError, Node, Op, OpKind, toposort

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs converted to the graph's dtypes; a missing or misshapen input is an IRError."""
    out = {}
    for name, node in graph.inputs.items():
        if name not in inputs:
            raise IRError(f"missing input {name!r} (shape {list(node.shape)}, {node.dtype})")
        arr = np.asarray(inputs[name])
        if arr.shape != node.shape:
            raise IRError(f"input {name!r} has shape {list(arr.shape)}, the graph expects "
                          f"{list(node.shape)}")
        want = NUMPY_DTYPES[node.dtype]
        if node.dtype != "float32" and not np.issubdtype(arr.dtype, np.integer):
            raise IRError(f"input {name!r} must be {node.dtype}, got {arr.dtype}")
        out[name] = arr.astype(want, copy=False)
    extra = sorted(set(inputs) - set(graph.inputs))
    if extra:
        raise IRError(f"unknown input {extra[0]!r} (inputs: {', '.join(graph.inputs)})")
    return out


def run(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate every output of `graph`; the `numpy` backend."""
    values = check_inputs(graph, inputs)
    return evaluate(list(graph.outputs.values()), values, names=list(graph.outputs))


def evaluate(roots: list[Node], inputs: Mapping[str, np.ndarray],
             names: list[str] | None = None,
             observe: Callable[[Node, np.ndarray], None] | None = None
             ) -> dict[str, np.ndarray]:
    """Evaluate `roots`, freeing intermediates once their last user has run.

    Two shortcuts keep big convolutions cheap without changing a single result bit of
    integer graphs: EXPAND yields a broadcast view (no copy) and unary ops work on the
    compact data under it; a REDUCE_SUM over a MUL used only there is one einsum over the
    operands' non-broadcast axes (integers through float64 BLAS when every partial sum is
    exact in 53 bits, else int64). `observe(node, value)`, when given, sees every computed
    value (calibration uses it); products kept for a contraction are not computed.
    """
    order = toposort(roots)
    users: dict[int, int] = {}
    for node in order:
        for src in node.srcs:
            users[id(src)] = users.get(id(src), 0) + 1
    keep = {id(r) for r in roots}
    # a MUL that is itself an output must be computed, not kept as a pending product
    deferred = {id(n.srcs[0]) for n in order
                if n.op is Op.REDUCE_SUM and n.srcs[0].op is Op.MUL and users[id(n.srcs[0])] == 1
                and id(n.srcs[0]) not in keep}
    env: dict[int, Any] = {}
    for node in order:
        srcs = [env[id(s)] for s in node.srcs]
        if id(node) in deferred:
            env[id(node)] = _Product(srcs[0], srcs[1])
        elif node.op is Op.REDUCE_SUM and isinstance(srcs[0], _Product):
            env[id(node)] = contract(srcs[0].a, srcs[0].b, node.arg, node.dtype)
        else:
            env[id(node)] = eval_node(node, srcs, inputs)
        if observe is not None and not isinstance(env[id(node)], _Product):
            observe(node, env[id(node)])
        for src in node.srcs:
            users[id(src)] -= 1
            if users[id(src)] == 0 and id(src) not in keep:
                del env[id(src)]
    names = names or [str(i) for i in range(len(roots))]
    return {name: np.array(env[id(r)], copy=True) for name, r in zip(names, roots, strict=True)}


class _Product:
    """A MUL whose only user is a REDUCE_SUM: kept as its two operands."""

    __slots__ = ("a", "b")

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = a, b


def _compact(arr: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The data under a broadcast view: stride-0 axes cut to size 1; and those axes."""
    axes = [i for i, (n, st) in enumerate(zip(arr.shape, arr.strides, strict=True))
            if st == 0 and n > 1]
    if not axes:
        return arr, []
    return arr[tuple(slice(0, 1) if i in axes else slice(None) for i in range(arr.ndim))], axes


def contract(a: np.ndarray, b: np.ndarray, axes: tuple[int, ...], dtype: str) -> np.ndarray:
    """sum(a * b, axes, keepdims) in `dtype` semantics, via einsum on the compact operands."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    ca, a_bcast = _compact(a)
    cb, b_bcast = _compact(b)
    letters = [chr(ord("a") + i) for i in range(len(shape))]
    # an axis broadcast in an operand is absent from its subscripts
    sub_a = "".join(letters[i] for i in range(len(shape)) if i not in a_bcast)
    sub_b = "".join(letters[i] for i in range(len(shape)) if i not in b_bcast)
    present = set(sub_a) | set(sub_b)
    out_axes = [i for i in range(len(shape)) if i not in axes and letters[i] in present]
    sub_out = "".join(letters[i] for i in out_axes)
    sa = ca.reshape([n for i, n in enumerate(ca.shape) if i not in a_bcast])
    sb = cb.reshape([n for i, n in enumerate(cb.shape) if i not in b_bcast])
    spec = f"{sub_a},{sub_b}->{sub_out}"
    # a reduced axis along which both operands are broadcast: every term appears n times
    repeats = int(np.prod([shape[i] for i in axes if letters[i] not in present], dtype=np.int64))
    if dtype == "float32":
        r = np.einsum(spec, sa, sb, optimize=True).astype(np.float32)
        if repeats != 1:  # as the pairwise sum of equal terms would (up to rounding)
            r = (r.astype(np.float64) * repeats).astype(np.float32)
    else:
        k = int(np.prod([shape[i] for i in axes], dtype=np.int64)) if axes else 1
        k = max(k // repeats, 1)
        bound = float(np.max(np.abs(sa), initial=0)) * float(np.max(np.abs(sb), initial=0)) * k
        if bound < 2.0 ** 52:
            r = np.rint(np.einsum(spec, sa.astype(np.float64), sb.astype(np.float64),
                                  optimize=True)).astype(np.int64)
        else:
            r = np.einsum(spec, sa.astype(np.int64), sb.astype(np.int64))
        r = wrap(r * repeats, dtype)
    # put back reduced axes (size 1) and axes no operand had (broadcast)
    full = [1 if i in axes else (shape[i] if i in out_axes else 1) for i in range(len(shape))]
    r = r.reshape(full)
    target = tuple(1 if i in axes else n for i, n in enumerate(shape))
    if r.shape != target:
        r = np.broadcast_to(r, target)
    return r


def wrap(x: np.ndarray, dtype: str) -> np.ndarray:
    """Wrap an integer array into int8/int32 (two's complement), or round into float32."""
    return np.asarray(x).astype(NUMPY_DTYPES[dtype])


def cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """CAST semantics from `compiler.ir`: float->int rounds half to even and saturates."""
    if dtype == "float32":
        return x.astype(np.float32)
    if x.dtype == np.float32:
        with np.errstate(invalid="ignore"):
            r = np.rint(x.astype(np.float64))
            r = np.where(np.isnan(r), 0, np.clip(r, INT32_MIN, INT32_MAX)).astype(np.int64)
        return wrap(r, dtype)
    return wrap(x.astype(np.int64), dtype)


def requantize(x: np.ndarray, mult: np.ndarray, shift: np.ndarray, zp: int, lo: int, hi: int,
               out_dtype: str) -> np.ndarray:
    """isa.model.NUMERICS REQUANT in int64: the rounding bit trick avoids p + 2^(s-1) overflow."""
    p = x.astype(np.int64) * mult.astype(np.int64)
    s = shift.astype(np.int64)
    rounded = (p >> s) + ((p >> np.maximum(s - 1, 0)) & 1)
    q = np.where(s == 0, p, rounded)
    y = np.clip(q + zp, lo, hi)
    return wrap(y, out_dtype)


def _int_binary(op: Op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.int64), b.astype(np.int64)
    if op is Op.ADD:
        return a + b
    if op is Op.SUB:
        return a - b
    if op is Op.MUL:
        return a * b
    if op is Op.DIV:
        safe = np.where(b == 0, 1, b)
        q = np.abs(a) // np.abs(safe) * np.sign(a) * np.sign(safe)
        return np.where(b == 0, 0, q)
    raise AssertionError(op)


def _unary(node: Node, x: np.ndarray) -> np.ndarray:
    op, dtype = node.op, node.dtype
    if op is Op.CAST:
        return cast(x, node.arg)
    with np.errstate(all="ignore"):
        if op is Op.NEG:
            return -x if dtype == "float32" else wrap(-x.astype(np.int64), dtype)
        if op is Op.RELU:
            return np.maximum(x, np.zeros((), x.dtype))
        if op is Op.EXP2:
            return np.exp2(x)
        if op is Op.LOG2:
            return np.log2(x)
        if op is Op.SIN:
            return np.sin(x)
        if op is Op.SQRT:
            return np.sqrt(x)
        if op is Op.RECIP:
            return np.float32(1) / x
    raise AssertionError(f"reference has no rule for {op.name}")


def eval_node(node: Node, srcs: list[np.ndarray], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    op, arg, dtype = node.op, node.arg, node.dtype
    is_float = dtype == "float32"
    if op is Op.INPUT:
        return inputs[arg]
    if op is Op.CONST:
        return arg
    # movement -------------------------------------------------------------------------
    if op is Op.RESHAPE:
        return srcs[0].reshape(arg)
    if op is Op.PERMUTE:
        return np.transpose(srcs[0], arg)
    if op is Op.EXPAND:
        return np.broadcast_to(srcs[0], arg)
    if op is Op.PAD:
        return np.pad(srcs[0], arg)
    if op is Op.SHRINK:
        return srcs[0][tuple(slice(s, e) for s, e in arg)]
    if op is Op.FLIP:
        return np.flip(srcs[0], arg)
    if node.op.kind is OpKind.UNARY:
        small, bcast = _compact(srcs[0])
        if bcast:  # a unary op on a broadcast view: compute the compact data only
            return np.broadcast_to(_unary(node, small), srcs[0].shape)
        return _unary(node, srcs[0])
    with np.errstate(all="ignore"):
        # binary / ternary -------------------------------------------------------------------
        if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
            if is_float:
                fn = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply,
                      Op.DIV: np.divide}[op]
                return fn(srcs[0], srcs[1])
            return wrap(_int_binary(op, srcs[0], srcs[1]), dtype)
        if op is Op.MAX:
            return np.maximum(srcs[0], srcs[1])
        if op is Op.MIN:
            return np.minimum(srcs[0], srcs[1])
        if op is Op.CMPLT:
            return (srcs[0] < srcs[1]).astype(NUMPY_DTYPES[dtype])
        if op is Op.CMPEQ:
            return (srcs[0] == srcs[1]).astype(NUMPY_DTYPES[dtype])
        if op is Op.WHERE:
            return np.where(srcs[0] != 0, srcs[1], srcs[2])
        if op is Op.MULACC:
            if is_float:
                return srcs[0] * srcs[1] + srcs[2]
            a, b, c = (s.astype(np.int64) for s in srcs)
            return wrap(wrap(a * b, "int32").astype(np.int64) + c, dtype)
        # reduce -------------------------------------------------------------------------------
        if op is Op.REDUCE_SUM:
            if is_float:
                return np.sum(srcs[0], axis=arg, keepdims=True, dtype=np.float32)
            return wrap(np.sum(srcs[0].astype(np.int64), axis=arg, keepdims=True), dtype)
        if op is Op.REDUCE_MAX:
            return np.max(srcs[0], axis=arg, keepdims=True)
    if op is Op.REQUANT:
        mult, shift = arg.channel_params(srcs[0].ndim)
        return requantize(srcs[0], mult, shift, arg.zp, arg.lo, arg.hi, arg.out_dtype)
    raise AssertionError(f"reference has no rule for {op.name}")
