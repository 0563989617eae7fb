"""The numpy reference interpreter of a primitive-op `Graph`: the oracle for every backend.

`run(graph, inputs) -> outputs` evaluates node by node with plain numpy, independently of
`compiler.view` (movement ops use numpy's reshape/transpose/pad/slicing, so the tests can
hold the View machinery against it). Integer graphs are exact: arithmetic is done in
int64 and wrapped to int32/int8, REQUANT follows `isa.model.NUMERICS` bit for bit. float32
graphs compute in float32 (sums use numpy's pairwise summation; other backends agree
within a tolerance, not bit for bit).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from compiler.ir import NUMPY_DTYPES, Graph, IRError, Node, Op, toposort

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
             names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Evaluate `roots`, freeing intermediates once their last user has run."""
    order = toposort(roots)
    users: dict[int, int] = {}
    for node in order:
        for src in node.srcs:
            users[id(src)] = users.get(id(src), 0) + 1
    keep = {id(r) for r in roots}
    env: dict[int, np.ndarray] = {}
    for node in order:
        env[id(node)] = eval_node(node, [env[id(s)] for s in node.srcs], inputs)
        for src in node.srcs:
            users[id(src)] -= 1
            if users[id(src)] == 0 and id(src) not in keep:
                del env[id(src)]
    names = names or [str(i) for i in range(len(roots))]
    return {name: env[id(r)] for name, r in zip(names, roots, strict=True)}


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
        return np.ascontiguousarray(np.transpose(srcs[0], arg))
    if op is Op.EXPAND:
        return np.ascontiguousarray(np.broadcast_to(srcs[0], arg))
    if op is Op.PAD:
        return np.pad(srcs[0], arg)
    if op is Op.SHRINK:
        return np.ascontiguousarray(srcs[0][tuple(slice(s, e) for s, e in arg)])
    if op is Op.FLIP:
        return np.ascontiguousarray(np.flip(srcs[0], arg))
    # unary ------------------------------------------------------------------------------
    if op is Op.CAST:
        return cast(srcs[0], arg)
    with np.errstate(all="ignore"):
        if op is Op.NEG:
            return -srcs[0] if is_float else wrap(-srcs[0].astype(np.int64), dtype)
        if op is Op.RELU:
            return np.maximum(srcs[0], np.zeros((), srcs[0].dtype))
        if op is Op.EXP2:
            return np.exp2(srcs[0])
        if op is Op.LOG2:
            return np.log2(srcs[0])
        if op is Op.SIN:
            return np.sin(srcs[0])
        if op is Op.SQRT:
            return np.sqrt(srcs[0])
        if op is Op.RECIP:
            return np.float32(1) / srcs[0]
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
