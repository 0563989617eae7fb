"""The OpenCL backend on a GPU, when this machine has one (skipped otherwise): the tiled
GEMM with the GPU tiling and a quantised graph, against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import ir
from compiler.ir import Op


def _gpu_selector() -> str | None:
    try:
        from compiler.opencl_runtime import list_devices

        gpus = [d for d in list_devices() if d.kind == "GPU"]
    except Exception:
        return None
    return gpus[0].index if gpus else None


GPU = _gpu_selector()
pytestmark = pytest.mark.skipif(GPU is None, reason="no OpenCL GPU on this machine")


def test_gemm_on_the_gpu() -> None:
    from compiler.opencl_gemm import Gemm
    from compiler.opencl_runtime import runtime

    rt = runtime(GPU)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 300, 200)).astype(np.float32)
    b = rng.standard_normal((3, 200, 150)).astype(np.float32)
    np.testing.assert_allclose(Gemm(rt, "float32")(a, b), a @ b, rtol=1e-4, atol=1e-4)
    ai = rng.integers(-128, 128, (2, 70, 90)).astype(np.int32)
    bi = rng.integers(-128, 128, (2, 90, 33)).astype(np.int32)
    np.testing.assert_array_equal(Gemm(rt, "int32")(ai, bi), ai @ bi)


def test_int8_graph_on_the_gpu_is_bit_exact() -> None:
    from compiler.backends import run_backend

    rng = np.random.default_rng(1)
    x = ir.input_("x", (20, 64), "int8")
    w = ir.const(rng.integers(-128, 128, (64, 16)).astype(np.int8))
    full = (20, 64, 16)
    prod = ir.binary(Op.MUL, ir.expand(ir.reshape(ir.unary(Op.CAST, x, "int32"), (20, 64, 1)),
                                       full),
                     ir.expand(ir.reshape(ir.unary(Op.CAST, w, "int32"), (1, 64, 16)), full))
    acc = ir.reshape(ir.reduce(Op.REDUCE_SUM, prod, (1,)), (20, 16))
    y = ir.requant(acc, ir.RequantArg(np.array([1 << 16]), np.array([22]), 1, -128, 127, 1))
    graph = ir.Graph({"x": x}, {"y": y})
    data = {"x": rng.integers(-128, 128, (20, 64)).astype(np.int8)}
    want = run_backend("numpy", graph, data)["y"]
    got = run_backend("opencl", graph, data, device=GPU)["y"]
    np.testing.assert_array_equal(got, want)
