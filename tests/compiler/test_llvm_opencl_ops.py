"""The primitive-op suite on the code-generating backends: each case runs on the numpy
reference and on `llvm` and `opencl` (PoCL on a CPU here); integer results must be
bit-exact, float32 results within a tight tolerance. Shapes stay small: OpenCL compiles
are the cost, and they are cached by source."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import ir
from compiler.backends import run_backend
from compiler.ir import Op

BACKENDS = ["llvm", "opencl"]
RNG = np.random.default_rng(7)


def _opencl_available() -> bool:
    try:
        from compiler.opencl_runtime import list_devices

        return bool(list_devices())
    except Exception:
        return False


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "opencl" and not _opencl_available():
        pytest.skip("no OpenCL device")
    return request.param


def check(backend: str, graph: ir.Graph, inputs: dict[str, np.ndarray]) -> None:
    want = run_backend("numpy", graph, inputs)
    got = run_backend(backend, graph, inputs)
    assert set(got) == set(want)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape and out.dtype == ref.dtype, name
        if ref.dtype == np.float32:
            np.testing.assert_allclose(out, ref, rtol=2e-5, atol=1e-5, equal_nan=True,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(out, ref, err_msg=name)


def ints(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "int8":
        values = RNG.integers(-128, 128, shape)
        values.flat[:3] = [-128, 127, 0]
        return values.astype(np.int8)
    values = RNG.integers(-(1 << 31), 1 << 31, shape, dtype=np.int64)
    values.flat[:4] = [-(1 << 31), (1 << 31) - 1, -1, 0]
    return values.astype(np.int32)


def floats(shape: tuple[int, ...]) -> np.ndarray:
    return (RNG.standard_normal(shape) * 3).astype(np.float32)


FLOAT_UNARY = [Op.NEG, Op.RELU, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP]


def test_float_unary_ops(backend: str) -> None:
    x = ir.input_("x", (3, 17))
    outs = {op.name: ir.unary(op, x) for op in FLOAT_UNARY}
    data = floats((3, 17))
    data[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    data[1] = np.abs(data[1]) + 0.1  # log2 / sqrt on positive values too
    check(backend, ir.Graph({"x": x}, outs), {"x": data})


@pytest.mark.parametrize("dtype", ["int8", "int32", "float32"])
def test_binary_and_ternary_ops(backend: str, dtype: str) -> None:
    shape = (4, 9)
    a, b, c = (ir.input_(n, shape, dtype) for n in "abc")
    ops = [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAX, Op.MIN, Op.CMPLT, Op.CMPEQ]
    outs = {op.name: ir.binary(op, a, b) for op in ops}
    outs["where"] = ir.ternary(Op.WHERE, a, b, c)
    outs["mulacc"] = ir.ternary(Op.MULACC, a, b, c)
    if dtype != "float32":
        outs["neg"] = ir.unary(Op.NEG, a)
        outs["relu"] = ir.unary(Op.RELU, a)
        data = {n: ints(dtype, shape) for n in "abc"}
        data["b"].flat[:6] = [0, -1, -1, 0, 1, -1]  # x/0 = 0; INT_MIN/-1 wraps
    else:
        data = {n: floats(shape) for n in "abc"}
        data["a"][0, :3] = [np.nan, 1.0, 2.0]
        data["b"][0, :3] = [1.0, np.nan, 2.0]
    check(backend, ir.Graph({"a": a, "b": b, "c": c}, outs), data)


def test_casts(backend: str) -> None:
    f = ir.input_("f", (2, 12))
    i8 = ir.input_("i8", (2, 12), "int8")
    i32 = ir.input_("i32", (2, 12), "int32")
    outs = {}
    for src, name in ((f, "f"), (i8, "i8"), (i32, "i32")):
        for dtype in ("int8", "int32", "float32"):
            if dtype != src.dtype:
                outs[f"{name}_to_{dtype}"] = ir.unary(Op.CAST, src, dtype)
    fdata = floats((2, 12)) * 1e3
    fdata[0] = [0.5, 1.5, 2.5, -0.5, -1.5, 3e9, -3e9, np.nan, np.inf, -np.inf, 200.0, -129.0]
    check(backend, ir.Graph({"f": f, "i8": i8, "i32": i32}, outs),
          {"f": fdata, "i8": ints("int8", (2, 12)), "i32": ints("int32", (2, 12))})


@pytest.mark.parametrize("dtype", ["int8", "int32", "float32"])
def test_reductions(backend: str, dtype: str) -> None:
    x = ir.input_("x", (3, 5, 7), dtype)
    outs = {f"{op.name}{axes}": ir.reduce(op, x, axes)
            for op in (Op.REDUCE_SUM, Op.REDUCE_MAX) for axes in [(0,), (1, 2), (0, 2), None]}
    data = floats((3, 5, 7)) if dtype == "float32" else ints(dtype, (3, 5, 7))
    check(backend, ir.Graph({"x": x}, {k.replace(" ", ""): v for k, v in outs.items()}),
          {"x": data})


def test_movement_ops_through_views(backend: str) -> None:
    x = ir.input_("x", (4, 6))
    y = ir.permute(ir.reshape(x, (2, 2, 6)), (2, 0, 1))
    y = ir.flip(ir.pad(y, ((1, 0), (0, 2), (1, 1))), (0, 2))
    y = ir.shrink(y, ((1, 6), (0, 3), (1, 4)))
    z = ir.binary(Op.ADD, y, ir.expand(ir.reshape(ir.shrink(x, ((0, 1), (0, 1))), (1, 1, 1)),
                                       y.shape))
    w = ir.reshape(ir.unary(Op.EXP2, z), (-1,))
    check(backend, ir.Graph({"x": x}, {"z": z, "w": w, "copy": x}), {"x": floats((4, 6))})


def matmul(a: ir.Node, b: ir.Node) -> ir.Node:
    """(..., M, K) @ (..., K, N) the tinygrad way: EXPAND both to (..., M, K, N), MUL, SUM."""
    *batch, m, k = a.shape
    n = b.shape[-1]
    full = (*batch, m, k, n)
    a3 = ir.expand(ir.reshape(a, (*batch, m, k, 1)), full)
    b3 = ir.expand(ir.reshape(b, (*batch, 1, k, n)), full)
    prod = ir.binary(Op.MUL, a3, b3)
    return ir.reshape(ir.reduce(Op.REDUCE_SUM, prod, (len(full) - 2,)), (*batch, m, n))


def test_fp32_matmul_with_bias_and_relu(backend: str) -> None:
    x = ir.input_("x", (2, 19, 33))
    w = ir.const(floats((33, 21)))
    wt = ir.permute(ir.const(floats((21, 33))), (1, 0))  # a transposed weight view
    bias = ir.const(floats((21,)))
    y = ir.unary(Op.RELU, ir.binary(Op.ADD, matmul(x, ir.broadcast_to(w, (2, 33, 21))), bias))
    z = matmul(x, ir.broadcast_to(wt, (2, 33, 21)))
    check(backend, ir.Graph({"x": x}, {"y": y, "z": z}), {"x": floats((2, 19, 33))})


def test_int8_matmul_requant_is_bit_exact(backend: str) -> None:
    x = ir.input_("x", (13, 40), "int8")
    w = ir.const(ints("int8", (40, 11)))
    acc = matmul(ir.unary(Op.CAST, x, "int32"), ir.unary(Op.CAST, w, "int32"))
    acc = ir.binary(Op.ADD, acc, ir.const(ints("int32", (11,)) // 65536))
    arg = ir.RequantArg(RNG.integers(1, 1 << 30, 11), RNG.integers(0, 40, 11), zp=-3,
                        lo=-128, hi=127, axis=1, out_dtype="int8")
    y = ir.requant(acc, arg)
    relu = ir.unary(Op.RELU, y)
    check(backend, ir.Graph({"x": x}, {"y": y, "relu": relu, "acc": acc}),
          {"x": ints("int8", (13, 40))})


def test_conv2d_as_windowed_contraction(backend: str) -> None:
    """conv2d 3x3, padding 1: PAD, then one SHRINKed window per tap stacked by a contraction."""
    n, c, h, w_, k = 1, 3, 6, 5, 4
    x = ir.input_("x", (n, c, h, w_), "int8")
    xp = ir.pad(ir.unary(Op.CAST, x, "int32"), ((0, 0), (0, 0), (1, 1), (1, 1)))
    weight = ints("int8", (k, c, 3, 3)).astype(np.int32)
    out = None
    for dy in range(3):
        for dx in range(3):
            win = ir.shrink(xp, ((0, n), (0, c), (dy, dy + h), (dx, dx + w_)))
            win = ir.permute(win, (0, 2, 3, 1))  # (n, h, w, c)
            tap = ir.const(np.ascontiguousarray(weight[:, :, dy, dx].T))  # (c, k)
            term = matmul(ir.reshape(win, (n * h * w_, c)), tap)
            out = term if out is None else ir.binary(Op.ADD, out, term)
    check(backend, ir.Graph({"x": x}, {"y": out}), {"x": ints("int8", (n, c, h, w_))})


def test_opencl_index_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """32-bit index math where every address fits, 64-bit otherwise; both compute the same."""
    if not _opencl_available():
        pytest.skip("no OpenCL device")
    from compiler import opencl_backend
    from compiler.schedule import schedule

    huge = ir.expand(ir.reshape(ir.input_("x", (1,)), (1, 1)), (1 << 16, 1 << 16))
    (kernel,) = schedule(ir.Graph({"x": huge.srcs[0].srcs[0]}, {"y": huge})).kernels
    assert opencl_backend.index_type(kernel) == "long"
    assert "long gid" in opencl_backend.elementwise_source(kernel)
    monkeypatch.setattr(opencl_backend, "INT_INDEX_LIMIT", 0)  # force 64-bit everywhere
    test_int8_matmul_requant_is_bit_exact("opencl")
    test_movement_ops_through_views("opencl")
