"""The ISA lowering, end to end: graphs compiled for a chip, run on the simulator, held
against the numpy reference (int8 bit-exact, float32 within FLOAT_TOL)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lower_helpers import assert_matches

from compiler import ir
from compiler.ir import Op
from compiler.isa_builder import CompileError
from compiler.lower import compile_graph
from frontend.benchmarks._nets import conv2d, matmul, max_pool, pool
from isa.config import ChipConfig, preset

RNG = np.random.default_rng(7)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i8(*shape: int) -> np.ndarray:
    return RNG.integers(-128, 128, shape).astype(np.int8)


def requant_arg(channels: int, axis: int) -> ir.RequantArg:
    return ir.RequantArg(RNG.integers(1, 1 << 16, channels), RNG.integers(8, 16, channels),
                         zp=2, axis=axis)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       cfg=st.sampled_from(["tiny", "default"]))
def test_int8_gemm_with_epilogue_is_bit_exact(m: int, k: int, n: int, cfg: str) -> None:
    a = ir.input_("a", (m, k), "int8")
    w = ir.const(i8(k, n))
    y = ir.binary(Op.ADD, matmul(a, w), ir.const(RNG.integers(-999, 999, n).astype(np.int32)))
    out = ir.requant(ir.unary(Op.RELU, y), requant_arg(n, 1))
    assert_matches(ir.Graph({"a": a}, {"y": out}), {"a": i8(m, k)}, cfg)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 33), k=st.integers(1, 33), n=st.integers(1, 33),
       cfg=st.sampled_from(["tiny", "default"]))
def test_fp32_gemm_of_two_inputs(m: int, k: int, n: int, cfg: str) -> None:
    a, b = ir.input_("a", (m, k)), ir.input_("b", (k, n))
    assert_matches(ir.Graph({"a": a, "b": b}, {"y": matmul(a, b)}),
                   {"a": f32(m, k), "b": f32(k, n)}, cfg)


def test_raw_accumulator_output_and_fused_epilogue_together() -> None:
    a = ir.input_("a", (20, 24), "int8")
    s = matmul(a, ir.const(i8(24, 18)))
    q = ir.requant(s, requant_arg(18, 1))
    assert_matches(ir.Graph({"a": a}, {"raw": s, "q": q}), {"a": i8(20, 24)}, "default")


@pytest.mark.parametrize("n,c,h,w,co,k,stride,pad,groups", [
    (1, 3, 8, 8, 4, 3, 1, 1, 1),
    (2, 4, 9, 7, 6, 3, 2, 1, 2),
    (1, 8, 6, 6, 8, 1, 1, 0, 1),
    (1, 4, 7, 7, 4, 3, 1, 1, 4),
    (3, 4, 6, 6, 8, 3, 1, 1, 1),  # a batch: image rows tile the output one by one
])
def test_int8_conv_stride_padding_groups(n, c, h, w, co, k, stride, pad, groups) -> None:
    x = ir.input_("x", (n, c, h, w), "int8")
    y = conv2d(x, ir.const(i8(co, c // groups, k, k)), stride, pad, groups)
    y = ir.binary(Op.ADD, y, ir.const(RNG.integers(-500, 500, (1, co, 1, 1)).astype(np.int32)))
    out = ir.requant(ir.unary(Op.RELU, y), requant_arg(co, 1))
    assert_matches(ir.Graph({"x": x}, {"y": out}), {"x": i8(n, c, h, w)}, "tiny")


def test_fp32_conv_default_chip() -> None:
    x = ir.input_("x", (1, 5, 9, 9))
    y = conv2d(x, ir.const(f32(7, 5, 3, 3)), 1, 1)
    assert_matches(ir.Graph({"x": x}, {"y": ir.unary(Op.RELU, y)}), {"x": f32(1, 5, 9, 9)},
                   "default")


def _unary_graph(build) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    x = ir.input_("x", (6, 10))
    return ir.Graph({"x": x}, {"o": build(x)}), {"x": f32(6, 10)}


def _softmax(x: ir.Node) -> ir.Node:
    e = ir.unary(Op.EXP2, ir.binary(Op.SUB, x, ir.reduce(Op.REDUCE_MAX, x, (1,))))
    return ir.binary(Op.MUL, e, ir.unary(Op.RECIP, ir.reduce(Op.REDUCE_SUM, e, (1,))))


@pytest.mark.parametrize("cfg", ["tiny", "default"])
@pytest.mark.parametrize("name,build", [
    ("sum last", lambda x: ir.reduce(Op.REDUCE_SUM, x, (1,))),
    ("max first", lambda x: ir.reduce(Op.REDUCE_MAX, x, (0,))),
    ("sum all", lambda x: ir.reduce(Op.REDUCE_SUM, x)),
    ("permute", lambda x: ir.permute(x, (1, 0))),
    ("flip", lambda x: ir.flip(x, (1,))),
    ("pad", lambda x: ir.pad(x, ((1, 2), (3, 1)))),
    ("shrink", lambda x: ir.shrink(x, ((1, 4), (2, 9)))),
    ("softmax", _softmax),
    ("leaky relu", lambda x: ir.ternary(Op.WHERE, ir.binary(Op.CMPLT, x, ir.const(np.float32(0))),
                                        ir.binary(Op.MUL, x, ir.const(np.float32(0.1))), x)),
    ("sqrt log", lambda x: ir.unary(Op.LOG2, ir.unary(Op.SQRT, ir.binary(
        Op.ADD, ir.binary(Op.MUL, x, x), ir.const(np.float32(1)))))),
])
def test_vector_kernels(name, build, cfg) -> None:
    graph, inputs = _unary_graph(build)
    assert_matches(graph, inputs, cfg, tol=1e-3)


def test_int8_arithmetic_wraps_and_casts() -> None:
    x = ir.input_("x", (4, 9), "int8")
    wrapped = ir.binary(Op.MUL, ir.binary(Op.ADD, x, x), x)
    scaled = ir.unary(Op.CAST, ir.binary(Op.MUL, ir.unary(Op.CAST, x, "float32"),
                                         ir.const(np.float32(0.37))), "int8")
    total = ir.reduce(Op.REDUCE_SUM, ir.unary(Op.CAST, x, "int32"), (0,))
    assert_matches(ir.Graph({"x": x}, {"w": wrapped, "s": scaled, "t": total,
                                       "m": ir.reduce(Op.REDUCE_MAX, x, (1,))}),
                   {"x": i8(4, 9)}, "tiny")


def test_broadcast_columns_and_long_reduction_on_tiny() -> None:
    x, y, big = ir.input_("x", (6, 10)), ir.input_("y", (6, 1)), ir.input_("big", (3, 1000))
    graph = ir.Graph({"x": x, "y": y, "big": big},
                     {"d": ir.binary(Op.SUB, x, y), "s": ir.reduce(Op.REDUCE_SUM, big, (1,))})
    assert_matches(graph, {"x": f32(6, 10), "y": f32(6, 1), "big": f32(3, 1000)}, "tiny",
                   tol=1e-3)


def test_batched_attention_scores() -> None:
    q, k = ir.input_("q", (2, 5, 8)), ir.input_("k", (2, 7, 8))
    full = (2, 5, 7, 8)
    qv = ir.expand(ir.reshape(q, (2, 5, 1, 8)), full)
    kv = ir.expand(ir.reshape(k, (2, 1, 7, 8)), full)
    s = ir.reshape(ir.reduce(Op.REDUCE_SUM, ir.binary(Op.MUL, qv, kv), (3,)), (2, 5, 7))
    assert_matches(ir.Graph({"q": q, "k": k}, {"s": _softmax3(s)}),
                   {"q": f32(2, 5, 8), "k": f32(2, 7, 8)}, "default", tol=1e-3)


def _softmax3(x: ir.Node) -> ir.Node:
    e = ir.unary(Op.EXP2, ir.binary(Op.SUB, x, ir.reduce(Op.REDUCE_MAX, x, (2,))))
    return ir.binary(Op.MUL, e, ir.unary(Op.RECIP, ir.reduce(Op.REDUCE_SUM, e, (2,))))


def test_float_graph_on_an_int8_only_chip_is_a_clear_error() -> None:
    cfg = ChipConfig(name="intonly", dtypes=("int8",))
    x = ir.input_("x", (4, 4))
    with pytest.raises(CompileError, match="float32"):
        compile_graph(ir.Graph({"x": x}, {"o": ir.unary(Op.RELU, x)}), cfg)


def test_program_symbols_and_metadata() -> None:
    a = ir.input_("a", (8, 8), "int8")
    prog = compile_graph(ir.Graph({"a": a}, {"y": matmul(a, ir.const(i8(8, 4)))}),
                         preset("default"))
    assert [s.name for s in prog.inputs] == ["a"] and [s.name for s in prog.outputs] == ["y"]
    assert prog.outputs[0].shape == (8, 4) and prog.outputs[0].dtype == "int32"
    assert prog.meta["macs"] == 8 * 8 * 4
    assert prog.code[-1].mnemonic == "halt"


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_pooling_windows(cfg: str) -> None:
    x = ir.input_("x", (2, 3, 9, 9), "int8")
    xs = ir.input_("xs", (2, 3, 8, 8))
    graph = ir.Graph({"x": x, "xs": xs}, {
        "max3s2": max_pool(x, 3, 2, 1),
        "avg2": ir.reduce(Op.REDUCE_SUM, pool(xs, (2, 2), (2, 2)), (4, 5)),
    })
    assert_matches(graph, {"x": i8(2, 3, 9, 9), "xs": f32(2, 3, 8, 8)}, cfg, tol=1e-4)


@pytest.mark.parametrize("cfg", ["tiny", "default"])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (3, 1, 1), (2, 2, 0)])
def test_tensor_max_pool_pads_with_the_dtype_minimum(cfg: str, k: int, s: int, p: int) -> None:
    """Padding by WHERE over a padded mask: broadcast lanes spanning several chunks."""
    from frontend.tensor import Tensor

    x = Tensor.input("x", (1, 4, 8, 8), "int8")
    graph = x.max_pool2d(k, s, p).graph("y")
    assert_matches(graph, {"x": i8(1, 4, 8, 8)}, cfg)
