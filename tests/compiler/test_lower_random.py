"""Random graphs of movement, elementwise and reduce ops, compiled for the tiny chip and
run on the simulator, against the numpy reference (hypothesis builds the graphs)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lower_helpers import assert_matches

from compiler import ir
from compiler.ir import Op

BINARY = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN, Op.CMPLT]


@st.composite
def movement(draw, x: ir.Node) -> ir.Node:
    """One random movement op on x."""
    kind = draw(st.sampled_from(["permute", "pad", "shrink", "flip", "expand", "reshape"]))
    nd = x.ndim
    if kind == "permute":
        return ir.permute(x, draw(st.permutations(range(nd))))
    if kind == "pad":
        return ir.pad(x, [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd)])
    if kind == "shrink":
        bounds = []
        for s in x.shape:
            a = draw(st.integers(0, s - 1))
            bounds.append((a, draw(st.integers(a + 1, s))))
        return ir.shrink(x, bounds)
    if kind == "flip":
        return ir.flip(x, [draw(st.integers(0, nd - 1))])
    if kind == "expand":
        ax = draw(st.integers(0, nd))
        y = ir.reshape(x, x.shape[:ax] + (1,) + x.shape[ax:])
        return ir.expand(y, y.shape[:ax] + (draw(st.integers(1, 3)),) + y.shape[ax + 1:])
    return ir.reshape(x, (x.numel,))


@st.composite
def graphs(draw):
    dtype = draw(st.sampled_from(["float32", "int32", "int8"]))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
    x = ir.input_("x", shape, dtype)
    y = x
    for _ in range(draw(st.integers(1, 3))):
        y = draw(movement(y))
    b = ir.input_("b", y.shape[-1:], dtype)  # broadcast along the last axis
    op = draw(st.sampled_from(BINARY))
    out = ir.binary(op, y, b)
    if draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, out.ndim - 1), min_size=1, max_size=2, unique=True))
        # REDUCE_SUM of MUL is a contraction, tested on its own (test_lower.py)
        reduce_op = Op.REDUCE_MAX if op is Op.MUL else draw(st.sampled_from(
            [Op.REDUCE_SUM, Op.REDUCE_MAX]))
        out = ir.reduce(reduce_op, out, axes)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))

    def value(node: ir.Node) -> np.ndarray:
        if dtype == "float32":
            return rng.standard_normal(node.shape).astype(np.float32)
        lo, hi = (-128, 128) if dtype == "int8" else (-1000, 1000)
        return rng.integers(lo, hi, node.shape).astype(ir.NUMPY_DTYPES[dtype])

    return ir.Graph({"x": x, "b": b}, {"out": out}), {"x": value(x), "b": value(b)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=graphs(), cfg=st.sampled_from(["tiny", "default"]))
def test_random_graphs_match_the_reference(case, cfg) -> None:
    """Every graph compiles on both chips: the tiny chip splits rows too long for its 4 KiB
    scratchpad into column windows (test_lower_long_rows.py)."""
    graph, inputs = case
    assert_matches(graph, inputs, cfg, tol=1e-4)


@st.composite
def contractions(draw):
    """Batched matmuls whose operands are stored transposed or not, int8 or fp32, with an
    optional bias and ReLU epilogue."""
    dtype = draw(st.sampled_from(["int8", "float32"]))
    bt, m, k, n = (draw(st.integers(1, 3)), draw(st.integers(1, 20)), draw(st.integers(1, 20)),
                   draw(st.integers(1, 20)))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a_in = ir.input_("a", (bt, k, m) if ta else (bt, m, k), dtype)
    b_in = ir.input_("b", (n, k) if tb else (k, n), dtype)
    a = ir.permute(a_in, (0, 2, 1)) if ta else a_in
    b = ir.permute(b_in, (1, 0)) if tb else b_in
    full = (bt, m, k, n)
    av = ir.expand(ir.reshape(a, (bt, m, k, 1)), full)
    bv = ir.expand(ir.reshape(b, (1, 1, k, n)), full)
    if dtype == "int8":
        av, bv = ir.unary(Op.CAST, av, "int32"), ir.unary(Op.CAST, bv, "int32")
    out = ir.reshape(ir.reduce(Op.REDUCE_SUM, ir.binary(Op.MUL, av, bv), (2,)), (bt, m, n))
    if draw(st.booleans()):
        bias = np.arange(n, dtype=np.float32 if dtype == "float32" else np.int32) - n // 2
        out = ir.unary(Op.RELU, ir.binary(Op.ADD, out, ir.const(bias)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))

    def value(node: ir.Node) -> np.ndarray:
        if dtype == "float32":
            return rng.standard_normal(node.shape).astype(np.float32)
        return rng.integers(-128, 128, node.shape).astype(np.int8)

    return ir.Graph({"a": a_in, "b": b_in}, {"out": out}), {"a": value(a_in), "b": value(b_in)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=contractions(), cfg=st.sampled_from(["tiny", "default"]))
def test_random_contractions_match_the_reference(case, cfg) -> None:
    graph, inputs = case
    assert_matches(graph, inputs, cfg, tol=1e-4)
