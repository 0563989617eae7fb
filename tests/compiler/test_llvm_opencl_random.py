"""Random graphs (hypothesis) on numpy, llvm and opencl: the same answers everywhere.

Graphs are chains of elementwise ops over broadcast inputs, movement ops and reductions;
int32 graphs must agree bit for bit, float32 graphs within a tolerance."""

from __future__ import annotations

import numpy as np
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


INT_OPS = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN, Op.CMPLT, Op.DIV]
FLOAT_OPS = [Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN, Op.CMPLT]
BACKENDS = ["llvm"] + (["opencl"] if _opencl_available() else [])


@st.composite
def graphs(draw: st.DrawFn) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    dtype = draw(st.sampled_from(["int32", "float32"]))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    inputs, data = {}, {}
    for name in "ab":
        sub = tuple(s if draw(st.booleans()) else 1 for s in shape)  # broadcast some axes
        inputs[name] = ir.input_(name, sub, dtype)
        data[name] = (rng.integers(-50, 50, sub).astype(np.int32) if dtype == "int32"
                      else rng.standard_normal(sub).astype(np.float32))
    nodes = [inputs["a"], inputs["b"]]
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["binary", "unary", "reduce", "move"]))
        x = draw(st.sampled_from(nodes))
        if kind == "binary":
            op = draw(st.sampled_from(INT_OPS if dtype == "int32" else FLOAT_OPS))
            node = ir.binary(op, x, draw(st.sampled_from(nodes)))
        elif kind == "unary":
            node = ir.unary(draw(st.sampled_from([Op.NEG, Op.RELU])), x)
        elif kind == "reduce":
            axes = draw(st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim))
            node = ir.reduce(draw(st.sampled_from([Op.REDUCE_SUM, Op.REDUCE_MAX])), x, axes)
        else:
            order = draw(st.permutations(list(range(x.ndim))))
            node = ir.flip(ir.permute(x, order), [0])
            node = ir.pad(node, [(1, 0)] + [(0, 0)] * (node.ndim - 1))
        nodes.append(node)
    return ir.Graph(inputs, {"out": nodes[-1], "mid": nodes[len(nodes) // 2]}), data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_agree_across_backends(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
    graph, data = case
    want = run_backend("numpy", graph, data)
    for backend in BACKENDS:
        got = run_backend(backend, graph, data)
        for name, ref in want.items():
            assert got[name].dtype == ref.dtype and got[name].shape == ref.shape
            if ref.dtype == np.float32:
                np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5,
                                           err_msg=f"{backend} {name}")
            else:
                np.testing.assert_array_equal(got[name], ref, err_msg=f"{backend} {name}")
