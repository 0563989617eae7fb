"""Random graphs (hypothesis) on numpy, llvm and opencl: the same answers everywhere.

Graphs are chains of elementwise ops over broadcast inputs, movement ops and reductions;
int8/int32 graphs (casts and REQUANT included) must agree bit for bit, float32 graphs
within a tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.backends import run_backend
from compiler.ir import Op


def _opencl_available() -> bool:
    try:
        from compiler.opencl_runtime import list_devices

        return bool(list_devices())
    except Exception:
        return False


INT_OPS = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN, Op.CMPLT, Op.CMPEQ, Op.DIV]
FLOAT_OPS = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN, Op.CMPLT]


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        ir.broadcast_shape(a, b)
    except ir.IRError:
        return False
    return True


@st.composite
def graphs(draw: st.DrawFn) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    dtype = draw(st.sampled_from(["int8", "int32", "float32"]))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    inputs, data = {}, {}
    for name in "ab":
        sub = tuple(s if draw(st.booleans()) else 1 for s in shape)  # broadcast some axes
        inputs[name] = ir.input_(name, sub, dtype)
        if dtype == "float32":
            data[name] = rng.standard_normal(sub).astype(np.float32)
        else:
            data[name] = rng.integers(-128, 128, sub).astype(ir.NUMPY_DTYPES[dtype])
    nodes = [inputs["a"], inputs["b"]]
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["binary", "unary", "reduce", "move", "cast"]))
        x = draw(st.sampled_from(nodes))
        if kind == "binary":
            op = draw(st.sampled_from(INT_OPS if dtype == "int32" else FLOAT_OPS))
            partners = [n for n in nodes if _broadcasts(x.shape, n.shape)]
            node = ir.binary(op, x, draw(st.sampled_from(partners)))
        elif kind == "unary":
            node = ir.unary(draw(st.sampled_from([Op.NEG, Op.RELU])), x)
        elif kind == "cast":  # there and back: wraps, rounds half to even, saturates
            other = draw(st.sampled_from([d for d in ir.DTYPES if d != dtype]))
            node = ir.unary(Op.CAST, ir.unary(Op.CAST, x, other), dtype)
            if other == "int32" and draw(st.booleans()):
                wide = ir.unary(Op.CAST, x, "int32")
                arg = ir.RequantArg(np.array([draw(st.integers(1, 1 << 20))]),
                                    np.array([draw(st.integers(0, 24))]),
                                    draw(st.integers(-5, 5)), -128, 127, 0, "int8")
                node = ir.unary(Op.CAST, ir.requant(wide, arg), dtype)
        elif kind == "reduce":
            axes = draw(st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim))
            node = ir.reduce(draw(st.sampled_from([Op.REDUCE_SUM, Op.REDUCE_MAX])), x, axes)
        else:
            order = draw(st.permutations(list(range(x.ndim))))
            node = ir.flip(ir.permute(x, order), [0])
            node = ir.pad(node, [(1, 0)] + [(0, 0)] * (node.ndim - 1))
        nodes.append(node)
    return ir.Graph(inputs, {"out": nodes[-1], "mid": nodes[len(nodes) // 2]}), data


def agree(backend: str, case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    graph, data = case
    want = run_backend("numpy", graph, data)
    got = run_backend(backend, graph, data)
    for name, ref in want.items():
        assert got[name].dtype == ref.dtype and got[name].shape == ref.shape
        if ref.dtype == np.float32:
            np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{backend} {name}")
        else:
            np.testing.assert_array_equal(got[name], ref, err_msg=f"{backend} {name}")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_llvm(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    agree("llvm", case)


# Fewer examples on OpenCL: PoCL spends about a second compiling each new graph.
@pytest.mark.skipif(not _opencl_available(), reason="no OpenCL device")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_opencl(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    agree("opencl", case)


@st.composite
def contractions(draw: st.DrawFn) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """Random (batched) matmuls whose operands are transposed, padded or flipped views, in
    int8 (bit-exact through CASTs) or float32, with a random elementwise epilogue."""
    dtype = draw(st.sampled_from(["int8", "float32"]))
    b, m, k, n = (draw(st.integers(1, 5)), draw(st.integers(1, 20)), draw(st.integers(1, 20)),
                  draw(st.integers(1, 20)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def operand(name: str, rows: int, cols: int) -> tuple[ir.Node, ir.Node, np.ndarray]:
        transposed, padded = draw(st.booleans()), draw(st.booleans())
        base_rows = rows - 1 if padded and rows > 1 else rows
        shape = (b, cols, base_rows) if transposed else (b, base_rows, cols)
        node = ir.input_(name, shape, dtype)
        view = ir.permute(node, (0, 2, 1)) if transposed else node
        if base_rows != rows:
            view = ir.pad(view, ((0, 0), (1, 0), (0, 0)))
        if draw(st.booleans()):
            view = ir.flip(view, [2])
        data = (rng.integers(-128, 128, shape).astype(np.int8) if dtype == "int8"
                else rng.standard_normal(shape).astype(np.float32))
        return node, view, data

    a_in, a, a_data = operand("a", m, k)
    w_in, w_t, w_data = operand("w", n, k)  # (b, n, k): used transposed
    w = ir.permute(w_t, (0, 2, 1))
    if dtype == "int8":
        a, w = ir.unary(Op.CAST, a, "int32"), ir.unary(Op.CAST, w, "int32")
    full = (b, m, k, n)
    prod = ir.binary(Op.MUL, ir.expand(ir.reshape(a, (b, m, k, 1)), full),
                     ir.expand(ir.reshape(w, (b, 1, k, n)), full))
    out = ir.reshape(ir.reduce(Op.REDUCE_SUM, prod, (2,)), (b, m, n))
    if draw(st.booleans()):
        out = ir.unary(Op.RELU, out)
    if dtype == "int8" and draw(st.booleans()):
        arg = ir.RequantArg(rng.integers(1, 1 << 20, n), rng.integers(0, 20, n), 0, -128, 127,
                            2, "int8")
        out = ir.requant(out, arg)
    return ir.Graph({"a": a_in, "w": w_in}, {"out": out}), {"a": a_data, "w": w_data}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contractions())
def test_random_contractions_llvm(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    agree("llvm", case)


@pytest.mark.skipif(not _opencl_available(), reason="no OpenCL device")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contractions())
def test_random_contractions_opencl(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    agree("opencl", case)
