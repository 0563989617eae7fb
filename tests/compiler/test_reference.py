"""The numpy reference: REQUANT bit for bit against the NUMERICS rule in Python integers,
integer wrapping, casts, and the einsum contraction shortcut against plain MUL + SUM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.ir import Op, RequantArg
from compiler.reference import contract, evaluate, requantize, run

I32 = st.integers(-(1 << 31), (1 << 31) - 1)


def requant_rule(x: int, m: int, s: int, zp: int, lo: int, hi: int) -> int:
    """isa.model.NUMERICS, transcribed with Python's unbounded integers."""
    p = x * m
    q = p if s == 0 else (p + (1 << (s - 1))) >> s
    return min(max(q + zp, lo), hi)


@settings(max_examples=300, deadline=None)
@given(st.lists(I32, min_size=1, max_size=8), I32, st.integers(0, 63), st.integers(-256, 255),
       st.integers(-256, 255), st.integers(-256, 255))
def test_requant_matches_the_rule(xs, m, s, zp, a, b):
    lo, hi = min(a, b), max(a, b)
    x = np.array(xs, np.int32)
    got = requantize(x, np.array([m]), np.array([s]), zp, lo, hi, "int32")
    assert got.tolist() == [requant_rule(v, m, s, zp, lo, hi) for v in xs]


def test_requant_extremes_do_not_overflow():
    x = np.array([-(1 << 31), (1 << 31) - 1, -1, 1], np.int32)
    for m in (-(1 << 31), (1 << 31) - 1):
        for s in (0, 1, 31, 62, 63):
            got = requantize(x, np.array([m]), np.array([s]), 0, -256, 255, "int32")
            assert got.tolist() == [requant_rule(int(v), m, s, 0, -256, 255) for v in x]


def test_requant_node_per_channel():
    x = ir.input_("x", (2, 3, 4), "int32")
    mult, shift = np.array([1 << 30, 3, -7]), np.array([31, 1, 0])
    y = ir.requant(x, RequantArg(mult, shift, zp=5, lo=-128, hi=127, axis=1))
    assert y.dtype == "int8"
    data = np.random.default_rng(0).integers(-1000, 1000, (2, 3, 4)).astype(np.int32)
    got = run(ir.Graph({"x": x}, {"y": y}), {"x": data})["y"]
    want = [[[requant_rule(int(data[i, c, j]), int(mult[c]), int(shift[c]), 5, -128, 127)
              for j in range(4)] for c in range(3)] for i in range(2)]
    np.testing.assert_array_equal(got, np.array(want, np.int8))
    with pytest.raises(ir.IRError, match="3 channels"):
        ir.requant(x, RequantArg(np.array([1, 2]), np.array([0, 0]), axis=1))
    with pytest.raises(ir.IRError, match="int32 source"):
        ir.requant(ir.input_("f", (2,)), RequantArg(np.array([1]), np.array([0])))


@settings(max_examples=50, deadline=None)
@given(st.lists(I32, min_size=2, max_size=2), st.sampled_from([Op.ADD, Op.SUB, Op.MUL, Op.DIV]))
def test_int32_arithmetic_wraps(pair, op):
    a, b = (ir.const(np.array([v], np.int32)) for v in pair)
    got = int(evaluate([ir.binary(op, a, b)], {})["0"][0])
    x, y = pair
    if op is Op.DIV:
        want = 0 if y == 0 else abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
    else:
        want = {Op.ADD: x + y, Op.SUB: x - y, Op.MUL: x * y}[op]
    assert got == (want + (1 << 31)) % (1 << 32) - (1 << 31)


def test_int8_wraps_and_casts():
    a = ir.const(np.array([100, -100, 127], np.int8))
    assert evaluate([ir.binary(Op.ADD, a, a)], {})["0"].tolist() == [-56, 56, -2]
    f = ir.const(np.array([2.5, 3.5, -2.5, 1e10, np.nan], np.float32))
    assert evaluate([ir.unary(Op.CAST, f, "int32")], {})["0"].tolist() == \
        [2, 4, -2, (1 << 31) - 1, 0]
    assert evaluate([ir.unary(Op.CAST, f, "int8")], {})["0"].tolist() == [2, 4, -2, -1, 0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 40), st.sampled_from(
    ["int8", "float32", "int32big"]))
def test_contraction_shortcut_equals_mul_then_sum(m, n, k, kind):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    if kind == "int8":
        a = rng.integers(-128, 128, (m, 1, k)).astype(np.int32)
        b = rng.integers(-128, 128, (1, n, k)).astype(np.int32)
    elif kind == "int32big":
        a = rng.integers(-(1 << 31), 1 << 31, (m, 1, k)).astype(np.int32)
        b = rng.integers(-(1 << 31), 1 << 31, (1, n, k)).astype(np.int32)
    else:
        a = rng.standard_normal((m, 1, k)).astype(np.float32)
        b = rng.standard_normal((1, n, k)).astype(np.float32)
    av, bv = np.broadcast_to(a, (m, n, k)), np.broadcast_to(b, (m, n, k))
    dtype = "float32" if kind == "float32" else "int32"
    got = contract(av, bv, (2,), dtype)
    if dtype == "int32":
        want = (av.astype(np.int64) * bv.astype(np.int64)).sum(2, keepdims=True).astype(np.int32)
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, (av * bv).sum(2, keepdims=True), rtol=1e-5, atol=1e-5)


def test_missing_and_misshapen_inputs():
    x = ir.input_("x", (2, 2))
    g = ir.Graph({"x": x}, {"y": ir.unary(Op.RELU, x)})
    with pytest.raises(ir.IRError, match="missing input"):
        run(g, {})
    with pytest.raises(ir.IRError, match="expects"):
        run(g, {"x": np.zeros((3, 2), np.float32)})
    with pytest.raises(ir.IRError, match="unknown input"):
        run(g, {"x": np.zeros((2, 2), np.float32), "z": np.zeros(1)})


def test_graph_dump_and_summary():
    x = ir.input_("x", (2, 3), "int32")
    y = ir.requant(ir.binary(Op.ADD, x, ir.const(np.int32(1))),
                   RequantArg(np.array([3]), np.array([1])))
    g = ir.Graph({"x": x}, {"y": y})
    text = g.dump()
    assert text.splitlines()[0] == "%0 = INPUT int32[2, 3] () x"
    assert text.splitlines()[-1].endswith("-> y") and "REQUANT int8[2, 3]" in text
    assert g.summary()["REQUANT"] == 1


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_contraction_over_an_axis_both_operands_broadcast(dtype):
    """sum_k a*b where neither operand varies along k is k * a * b."""
    a = ir.const(np.array([[3], [-2]], dtype=np.int32 if dtype == "int32" else np.float32))
    b = ir.const(np.array([[5, 7]], dtype=np.int32 if dtype == "int32" else np.float32))
    av = ir.expand(ir.reshape(a, (2, 1, 1)), (2, 2, 4))
    bv = ir.expand(ir.reshape(b, (1, 2, 1)), (2, 2, 4))
    y = ir.reduce(Op.REDUCE_SUM, ir.binary(Op.MUL, av, bv), (2,))
    got = evaluate([y], {})["0"]
    np.testing.assert_array_equal(got.reshape(2, 2), np.array([[60, 84], [-40, -56]]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_contraction_shortcut_with_random_broadcasts(shape, data):
    nd = len(shape)
    rng = np.random.default_rng(sum(shape))
    views = []
    for _ in range(2):
        bcast = data.draw(st.lists(st.booleans(), min_size=nd, max_size=nd))
        small = [1 if b else n for b, n in zip(bcast, shape, strict=True)]
        arr = rng.integers(-100, 100, small).astype(np.int32)
        views.append(np.broadcast_to(arr, shape))
    axes = tuple(sorted(set(data.draw(st.lists(st.integers(0, nd - 1), max_size=nd)))))
    got = contract(views[0], views[1], axes, "int32")
    want = (views[0].astype(np.int64) * views[1]).sum(axis=axes, keepdims=True)
    np.testing.assert_array_equal(got, want.astype(np.int32))


def test_a_product_that_is_also_an_output_is_computed():
    """A MUL feeding a REDUCE_SUM and returned itself comes back as numbers, not a pending
    product."""
    a = ir.const(np.arange(6, dtype=np.int32).reshape(2, 3))
    b = ir.const(np.full((2, 3), 3, dtype=np.int32))
    prod = ir.binary(Op.MUL, a, b)
    total = ir.reduce(Op.REDUCE_SUM, prod, (1,))
    out = evaluate([prod, total], {}, names=["prod", "total"])
    assert out["prod"].dtype == np.int32
    np.testing.assert_array_equal(out["prod"], np.arange(6).reshape(2, 3) * 3)
    np.testing.assert_array_equal(out["total"].reshape(2), [9, 36])
