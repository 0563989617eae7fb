"""Every Tensor op against numpy (float32 within 1e-5 relative unless stated), on the
numpy reference backend; hypothesis drives shapes and broadcasting for elementwise and
reduce ops. Convolutions are checked against an independent sliding-window einsum."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import sliding_window_view

from compiler import ir
from compiler.backends import BackendError
from compiler.view import fold
from frontend.tensor import Tensor

RTOL, ATOL = 1e-5, 1e-5
rng = np.random.default_rng(1234)


def close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


floats = st.floats(-4, 4, width=32)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)


@st.composite
def broadcast_pair(draw):
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_side=1,
                                                              max_side=4)).input_shapes
    a = draw(hnp.arrays(np.float32, a_shape, elements=floats))
    b = draw(hnp.arrays(np.float32, b_shape, elements=floats))
    return a, b


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "max": (Tensor.maximum, np.maximum),
    "min": (Tensor.minimum, np.minimum),
    "lt": (lambda a, b: a < b, lambda a, b: (a < b).astype(np.float32)),
    "ge": (lambda a, b: a >= b, lambda a, b: (a >= b).astype(np.float32)),
    "eq": (Tensor.eq, lambda a, b: (a == b).astype(np.float32)),
}


@settings(max_examples=25, deadline=None)
@given(broadcast_pair(), st.sampled_from(sorted(BINARY)))
def test_binary_broadcasting(pair, name):
    a, b = pair
    ours, theirs = BINARY[name]
    close(ours(Tensor(a), Tensor(b)).numpy(), theirs(a, b).astype(np.float32))


@settings(max_examples=15, deadline=None)
@given(broadcast_pair())
def test_division(pair):
    a, b = pair
    b = np.where(np.abs(b) < 0.25, np.float32(1), b)
    close((Tensor(a) / Tensor(b)).numpy(), a / b, rtol=1e-6)
    close((Tensor(a) / 3.0).numpy(), a / np.float32(3), rtol=1e-6)


@settings(max_examples=15, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_side=1, max_side=4),
       st.sampled_from(["add", "sub", "mul", "idiv"]))
def test_int32_wraps_and_truncates(shapes_, name):
    a = rng.integers(-(1 << 31), 1 << 31, shapes_.input_shapes[0]).astype(np.int32)
    b = rng.integers(-5, 5, shapes_.input_shapes[1]).astype(np.int32)
    ta, tb = Tensor(a), Tensor(b)
    got = {"add": lambda: ta + tb, "sub": lambda: ta - tb, "mul": lambda: ta * tb,
           "idiv": lambda: ta.idiv(tb)}[name]().numpy()
    a64, b64 = np.broadcast_arrays(a.astype(np.int64), b.astype(np.int64))
    if name == "idiv":
        want = np.where(b64 == 0, 0, np.trunc(a64 / np.where(b64 == 0, 1, b64)).astype(np.int64))
    else:
        want = {"add": a64 + b64, "sub": a64 - b64, "mul": a64 * b64}[name]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want.astype(np.int32))


UNARY = {
    "neg": (lambda t: -t, np.negative, 4),
    "relu": (Tensor.relu, lambda x: np.maximum(x, 0), 4),
    "exp": (Tensor.exp, np.exp, 4),
    "log": (Tensor.log, np.log, 0),
    "sqrt": (Tensor.sqrt, np.sqrt, 0),
    "sigmoid": (Tensor.sigmoid, lambda x: 1 / (1 + np.exp(-x)), 4),
    "tanh": (Tensor.tanh, np.tanh, 4),
    "sin": (Tensor.sin, np.sin, 4),
    "cos": (Tensor.cos, np.cos, 4),
    "abs": (Tensor.abs, np.abs, 4),
    "reciprocal": (Tensor.reciprocal, lambda x: 1 / x, 0),
    "erf": (Tensor.erf, np.vectorize(math.erf), 4),
    "gelu": (Tensor.gelu, lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), 4),
    "gelu_tanh": (lambda t: t.gelu("tanh"), lambda x: 0.5 * x * (1 + np.tanh(
        math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), 4),
    "square": (lambda t: t ** 2, np.square, 4),
    "rsqrt": (lambda t: t ** -0.5, lambda x: 1 / np.sqrt(x), 0),
    "pow": (lambda t: t ** 1.7, lambda x: x ** 1.7, 0),
    "clip": (lambda t: t.clip(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), 4),
    "leaky": (lambda t: t.leaky_relu(0.1), lambda x: np.where(x > 0, x, 0.1 * x), 4),
}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(UNARY)), shapes, st.data())
def test_unary(name, shape, data):
    ours, theirs, span = UNARY[name]
    lo = -span if span else 0.0625
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(lo, max(span, 4),
                                                                   width=32)))
    want = theirs(x.astype(np.float64)).astype(np.float32)
    close(ours(Tensor(x)).numpy(), want, rtol=2e-5, atol=2e-6)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
                  elements=floats), st.data(), st.booleans(),
       st.sampled_from(["sum", "max", "min", "mean", "var"]))
def test_reduce(x, data, keepdim, name):
    axes = data.draw(st.lists(st.integers(-x.ndim, x.ndim - 1), max_size=x.ndim, unique=True))
    axis = None if not axes else tuple(axes)
    if axis is not None and len({a % x.ndim for a in axis}) != len(axis):
        return
    got = getattr(Tensor(x), name)(axis, keepdim=keepdim).numpy()
    want = getattr(np, name)(x.astype(np.float64), axis=axis, keepdims=keepdim)
    close(got, np.asarray(want, np.float32), rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=floats), st.data())
def test_softmax_and_log_softmax(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    e = np.exp(x - x.max(axis, keepdims=True))
    close(Tensor(x).softmax(axis).numpy(), e / e.sum(axis, keepdims=True))
    close(Tensor(x).log_softmax(axis).numpy(), np.log(e / e.sum(axis, keepdims=True)),
          atol=2e-5)


def test_layernorm_with_affine():
    x, w, b = randn(2, 5, 8), randn(8), randn(8)
    mu = x.mean(-1, keepdims=True)
    want = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * w + b
    close(Tensor(x).layernorm(-1, 1e-5, Tensor(w), Tensor(b)).numpy(), want, atol=1e-5)


def test_where_and_casts():
    x = randn(3, 4)
    close((Tensor(x) > 0).where(Tensor(x), 0.5).numpy(), np.where(x > 0, x, 0.5))
    f = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3e9, -3e9, np.nan], np.float32)
    np.testing.assert_array_equal(Tensor(f).cast("int32").numpy(),
                                  [-2, -2, 0, 0, 2, 2, 2**31 - 1, -2**31, 0])
    i = np.array([300, -129, 127, -128], np.int32)
    np.testing.assert_array_equal(Tensor(i).cast("int8").numpy(), i.astype(np.int8))
    assert Tensor(i.astype(np.int8)).cast("float32").numpy().dtype == np.float32


def test_movement_ops():
    x = randn(2, 3, 4)
    t = Tensor(x)
    np.testing.assert_array_equal(t.reshape(4, 6).numpy(), x.reshape(4, 6))
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.T.numpy(), x.T)
    np.testing.assert_array_equal(t[:, :1].expand(5, 2, 3, 4).numpy(),
                                  np.broadcast_to(x[:, :1], (5, 2, 3, 4)))
    np.testing.assert_array_equal(t.pad([(1, 0), (0, 2), (1, 1)], value=7).numpy(),
                                  np.pad(x, [(1, 0), (0, 2), (1, 1)], constant_values=7))
    np.testing.assert_array_equal(t.pad([(0, 0), (-1, 1), (0, -2)]).numpy(),
                                  np.pad(x[:, 1:, :2], [(0, 0), (0, 1), (0, 0)]))
    np.testing.assert_array_equal(t.shrink([(1, 2), None, (1, 3)]).numpy(), x[1:2, :, 1:3])
    np.testing.assert_array_equal(t.flip((0, 2)).numpy(), x[::-1, :, ::-1])
    np.testing.assert_array_equal(t[1, ::-2, 1:].numpy(), x[1, ::-2, 1:])
    np.testing.assert_array_equal(t[..., None, 2].numpy(), x[..., None, 2])
    np.testing.assert_array_equal(t.unsqueeze(1).squeeze(1).numpy(), x)
    np.testing.assert_array_equal(t.flatten(1).numpy(), x.reshape(2, 12))
    np.testing.assert_array_equal(t.repeat([2, 1, 3]).numpy(), np.tile(x, (2, 1, 3)))
    parts = [x, randn(2, 1, 4), randn(2, 2, 4)]
    np.testing.assert_array_equal(Tensor.cat([Tensor(p) for p in parts], 1).numpy(),
                                  np.concatenate(parts, 1))


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                                             ((4,), (4, 2)), ((3, 4), (4,)),
                                             ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,))])
def test_matmul(a_shape, b_shape):
    a, b = randn(*a_shape), randn(*b_shape)
    close((Tensor(a) @ Tensor(b)).numpy(), a @ b)


def test_int8_matmul_accumulates_in_int32_and_uses_the_contraction_pattern():
    a = rng.integers(-128, 128, (5, 64)).astype(np.int8)
    b = rng.integers(-128, 128, (64, 3)).astype(np.int8)
    y = Tensor(a) @ Tensor(b)
    assert y.dtype == "int32"
    np.testing.assert_array_equal(y.numpy(), a.astype(np.int64) @ b.astype(np.int64))
    reduce = y.node.srcs[0] if y.node.op is ir.Op.RESHAPE else y.node
    assert ir.is_contraction(reduce)
    for operand in reduce.srcs[0].srcs:
        assert operand.op is ir.Op.CAST and operand.srcs[0].dtype == "int8"


def conv_reference(x, w, stride, pad, dil, groups):
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    co, cig, kh, kw = w.shape
    win = sliding_window_view(x, ((kh - 1) * dil + 1, (kw - 1) * dil + 1), axis=(2, 3))
    win = win[:, :, ::stride, ::stride, ::dil, ::dil]
    n, _, oh, ow = win.shape[:4]
    win = win.reshape(n, groups, cig, oh, ow, kh, kw)
    wg = w.astype(np.float64).reshape(groups, co // groups, cig, kh, kw)
    return np.einsum("ngchwij,gocij->ngohw", win, wg).reshape(n, co, oh, ow)


@pytest.mark.parametrize("stride,pad,dil,groups,k", [(1, 0, 1, 1, 3), (2, 1, 1, 1, 3),
                                                     (2, 1, 2, 2, 3), (3, 2, 1, 2, 2),
                                                     (1, 1, 1, 4, 3), (2, 0, 1, 1, 1),
                                                     (4, 0, 1, 1, 1)])
def test_conv2d(stride, pad, dil, groups, k):
    x, w, b = randn(2, 4, 9, 9), randn(8, 4 // groups, k, k), randn(8)
    y = Tensor(x).conv2d(Tensor(w), Tensor(b), stride=stride, padding=pad, dilation=dil,
                         groups=groups)
    want = conv_reference(x, w, stride, pad, dil, groups) + b[None, :, None, None]
    close(y.numpy(), want.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_conv_window_is_one_view_of_the_padded_input():
    x = Tensor.input("x", (1, 3, 8, 8))
    y = x.conv2d(Tensor(randn(4, 3, 3, 3)), padding=1)
    node = y.node
    while node.op is not ir.Op.MUL:
        node = node.srcs[0]
    base, view = fold(node.srcs[0])
    assert base.op is ir.Op.PAD and view.mask is None


def test_int8_conv_is_exact():
    x = rng.integers(-128, 128, (1, 3, 7, 7)).astype(np.int8)
    w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)
    y = Tensor(x).conv2d(Tensor(w), stride=2, padding=1)
    assert y.dtype == "int32"
    np.testing.assert_array_equal(y.numpy(), conv_reference(x, w, 2, 1, 1, 1).astype(np.int64))


@pytest.mark.parametrize("k,s,p,ceil", [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True),
                                        (3, 1, 1, False)])
def test_pooling(k, s, p, ceil):
    x = randn(2, 3, 8, 8)
    xp = np.pad(x, [(0, 0), (0, 0), (p, p + (2 if ceil else 0)), (p, p + (2 if ceil else 0))],
                constant_values=-np.inf)
    o = (8 + 2 * p - k + ((s - 1) if ceil else 0)) // s + 1
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :o, :o]
    close(Tensor(x).max_pool2d(k, s, p, ceil_mode=ceil).numpy(), win.max((-1, -2)))
    if not ceil:
        xz = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
        winz = sliding_window_view(xz, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        close(Tensor(x).avg_pool2d(k, s, p).numpy(), winz.mean((-1, -2)))
        ones = sliding_window_view(np.pad(np.ones((8, 8)), p), (k, k))[::s, ::s].sum((-1, -2))
        close(Tensor(x).avg_pool2d(k, s, p, count_include_pad=False).numpy(),
              winz.sum((-1, -2)) / ones)
    close(Tensor(x).global_avg_pool().numpy(), x.mean((2, 3), keepdims=True))


def test_inputs_and_errors():
    x = Tensor.input("x", (2, 3))
    y = (x * 2).sum(1)
    data = randn(2, 3)
    close(y.realize(inputs={"x": data}).numpy(), (data * 2).sum(1))
    assert set(y.graph().inputs) == {"x"}
    with pytest.raises(ir.IRError, match="missing input 'x'"):
        (x + 1).realize()
    with pytest.raises(ir.IRError, match="do not broadcast"):
        Tensor(randn(2, 3)) + Tensor(randn(4))
    with pytest.raises(ir.IRError, match="inner dimension"):
        Tensor(randn(2, 3)) @ Tensor(randn(4, 2))
    with pytest.raises(BackendError, match="unknown backend"):
        (x + 1).realize(backend="nope", inputs={"x": data})
    with pytest.raises(ir.IRError, match="cannot reshape"):
        x.reshape(4, 2)


def test_trunc_cast_rounds_toward_zero():
    f = np.array([-2.7, -2.5, -0.5, 0.49, 1.5, 2.5, 7.99], np.float32)
    np.testing.assert_array_equal(Tensor(f).trunc_cast("int32").numpy(), f.astype(np.int32))


def _np_layernorm(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)


def test_end_to_end_transformer_block():
    """Attention (matmul, softmax), layernorm and a GELU MLP with residuals, against numpy."""
    seq, dim, heads = 6, 8, 2
    hd = dim // heads
    x = randn(1, seq, dim)
    wq, wk, wv, wo = (randn(dim, dim) / np.sqrt(dim) for _ in range(4))
    w1, w2 = randn(dim, 4 * dim) / np.sqrt(dim), randn(4 * dim, dim) / np.sqrt(4 * dim)

    def split(t):
        return t.reshape(1, seq, heads, hd).permute(0, 2, 1, 3)

    t = Tensor.input("x", x.shape)
    h = t.layernorm()
    q, k, v = (split(h @ Tensor(w)) for w in (wq, wk, wv))
    att = ((q @ k.transpose(-1, -2)) * (1 / np.sqrt(hd))).softmax(-1) @ v
    t2 = t + att.permute(0, 2, 1, 3).reshape(1, seq, dim) @ Tensor(wo)
    out = t2 + (t2.layernorm() @ Tensor(w1)).gelu() @ Tensor(w2)

    def nsplit(a):
        return a.reshape(1, seq, heads, hd).transpose(0, 2, 1, 3)

    hn = _np_layernorm(x.astype(np.float64))
    qn, kn, vn = (nsplit(hn @ w) for w in (wq, wk, wv))
    s = qn @ kn.transpose(0, 1, 3, 2) / np.sqrt(hd)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    x2 = x + (p @ vn).transpose(0, 2, 1, 3).reshape(1, seq, dim) @ wo
    m = _np_layernorm(x2) @ w1
    gelu = 0.5 * m * (1 + np.vectorize(math.erf)(m / math.sqrt(2)))
    want = x2 + gelu @ w2
    close(out.realize(inputs={"x": x}).numpy(), want.astype(np.float32), rtol=1e-4, atol=1e-4)


def test_end_to_end_residual_cnn():
    """conv-relu-conv + skip, max pool, average pool, linear head, against numpy."""
    x = randn(2, 3, 12, 12)
    w1, w2, w3 = randn(8, 3, 3, 3) * 0.3, randn(8, 8, 3, 3) * 0.2, randn(8, 8, 1, 1) * 0.3
    fc = randn(32, 5)
    t = Tensor(x)
    a = t.conv2d(Tensor(w1), padding=1).relu()
    b = a.conv2d(Tensor(w2), padding=1).relu().conv2d(Tensor(w3))
    y = (a + b).relu().max_pool2d(2).avg_pool2d(3, 3).flatten(1) @ Tensor(fc)
    an = np.maximum(conv_reference(x, w1, 1, 1, 1, 1), 0)
    bn = conv_reference(np.maximum(conv_reference(an, w2, 1, 1, 1, 1), 0), w3, 1, 0, 1, 1)
    r = np.maximum(an + bn, 0)
    r = r.reshape(2, 8, 6, 2, 6, 2).max((3, 5)).reshape(2, 8, 2, 3, 2, 3).mean((3, 5))
    close(y.numpy(), (r.reshape(2, 32) @ fc).astype(np.float32), rtol=1e-4, atol=1e-4)
