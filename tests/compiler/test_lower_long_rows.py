"""Elementwise kernels whose rows are longer than a small chip's scratchpad holds: the tiny
chip processes them in column windows, one pass each, and must match the reference
(int8 and int32 bit-exact, float32 within FLOAT_TOL) like the default chip does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lower_helpers import assert_matches

from compiler import ir
from compiler.ir import Op
from compiler.isa_elementwise import column_window
from compiler.view import View

RNG = np.random.default_rng(11)


def values(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "float32":
        return RNG.standard_normal(shape).astype(np.float32)
    lo, hi = (-128, 128) if dtype == "int8" else (-1000, 1000)
    return RNG.integers(lo, hi, shape).astype(ir.NUMPY_DTYPES[dtype])


@pytest.mark.parametrize("cfg", ["tiny", "default"])
@pytest.mark.parametrize("dtype", ["float32", "int8", "int32"])
def test_padded_flat_row_smallest_case(dtype: str, cfg: str) -> None:
    """The smallest graph the tiny chip used to refuse ("needs 264 scratchpad rows per
    block row"): a flattened, padded row of 85 elements has no lane split and no outer
    rows, so all 22 chunks sat in one block row."""
    x = ir.input_("x", (3, 4, 7), dtype)
    y = ir.pad(ir.reshape(x, (84,)), [(0, 1)])
    b = ir.input_("b", (85,), dtype)
    graph = ir.Graph({"x": x, "b": b}, {"out": ir.binary(Op.ADD, y, b)})
    assert_matches(graph, {"x": values((3, 4, 7), dtype), "b": values((85,), dtype)}, cfg)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_gathered_long_rows_on_tiny(dtype: str) -> None:
    """A transposed input (lane stride 5: gathered element by element) with 301-element
    rows, flipped and padded, minus a broadcast row: n scratch rows per element."""
    x = ir.input_("x", (301, 3), dtype)
    y = ir.pad(ir.flip(ir.permute(x, (1, 0)), [1]), [(1, 0), (2, 1)])
    b = ir.input_("b", (304,), dtype)
    out = ir.binary(Op.MAX, ir.binary(Op.SUB, y, b), ir.unary(Op.NEG, b))
    graph = ir.Graph({"x": x, "b": b}, {"out": out})
    assert_matches(graph, {"x": values((301, 3), dtype), "b": values((304,), dtype)}, "tiny")


def test_long_row_reduced_after_the_elementwise_pass_on_tiny() -> None:
    x = ir.input_("x", (4, 7, 7), "int32")
    y = ir.pad(ir.reshape(x, (196,)), [(2, 1)])
    b = ir.input_("b", (199,), "int32")
    out = ir.reduce(Op.REDUCE_SUM, ir.binary(Op.SUB, y, b), [0])
    graph = ir.Graph({"x": x, "b": b}, {"out": out})
    assert_matches(graph, {"x": values((4, 7, 7), "int32"), "b": values((199,), "int32")},
                   "tiny")


def test_per_channel_requant_over_a_long_masked_row_on_tiny() -> None:
    """Per-lane REQUANT params are resident rows, two per chunk: a window holds only its
    own chunks' params."""
    c = 150
    x = ir.input_("x", (2, c - 2), "int32")
    y = ir.pad(x, [(0, 0), (1, 1)])
    arg = ir.RequantArg(RNG.integers(1, 1 << 16, c), RNG.integers(8, 16, c), zp=3, axis=1)
    graph = ir.Graph({"x": x}, {"out": ir.requant(ir.unary(Op.RELU, y), arg)})
    x_val = RNG.integers(-(1 << 20), 1 << 20, (2, c - 2)).astype(np.int32)
    assert_matches(graph, {"x": x_val}, "tiny")


@st.composite
def windowed_views(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    strides = tuple(draw(st.lists(st.integers(-12, 12), min_size=ndim, max_size=ndim)))
    span = sum(abs(s) * (n - 1) for s, n in zip(strides, shape, strict=True))
    offset = sum(-s * (n - 1) for s, n in zip(strides, shape, strict=True) if s < 0)
    mask = None
    if draw(st.booleans()):
        mask = []
        for n in shape:
            lo = draw(st.integers(0, n))
            mask.append((lo, draw(st.integers(lo, n))))
        mask = tuple(mask)
    c0 = draw(st.integers(0, shape[-1] - 1))
    width = draw(st.integers(1, shape[-1]))
    return View(shape, strides, offset, mask), span, c0, width


@settings(max_examples=60, deadline=None)
@given(case=windowed_views())
def test_column_window_reads_the_same_elements(case) -> None:
    view, span, c0, width = case
    base = np.arange(1, span + 2, dtype=np.int64)
    shape, (win,) = column_window(view.shape, [view], c0, width)
    want = view.gather(base)[..., c0:c0 + width]
    assert shape == want.shape
    assert np.array_equal(win.gather(base), want)


@pytest.mark.parametrize("dtype,op", [("float32", Op.REDUCE_SUM), ("int32", Op.REDUCE_MAX),
                                      ("int8", Op.REDUCE_MAX)])
def test_reduction_over_a_long_prime_row_on_tiny(dtype: str, op: Op) -> None:
    """347 elements (a prime: no staging by a divisor) reduced in column windows first;
    the epilogue runs on the windows' reduction."""
    x = ir.input_("x", (2, 7, 7, 7), dtype)
    y = ir.pad(ir.reshape(x, (2, 343)), [(0, 0), (2, 2)])
    b = ir.input_("b", (347,), dtype)
    r = ir.reduce(op, ir.binary(Op.MAX, y, b), [1])
    out = ir.binary(Op.SUB, r, ir.const(np.array([3], ir.NUMPY_DTYPES[dtype])))
    graph = ir.Graph({"x": x, "b": b}, {"out": out})
    assert_matches(graph, {"x": values((2, 7, 7, 7), dtype), "b": values((347,), dtype)},
                   "tiny")
