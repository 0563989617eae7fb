"""Graph builders for benchmarks and tests: tinygrad-style matmul, conv and pooling in
primitive ops, and int8 networks of ResNet-50's shape (random weights, per-channel REQUANT).
"""

from __future__ import annotations

import math

import numpy as np

from compiler import ir
from compiler.ir import Node, Op


def cast32(x: Node) -> Node:
    return ir.unary(Op.CAST, x, "int32") if x.dtype == "int8" else x


def matmul(a: Node, b: Node) -> Node:
    """(..., M, K) @ (K, N) as tinygrad writes it: MUL of expanded views, SUM over K."""
    *batch, m, k = a.shape
    n = b.shape[-1]
    full = (*batch, m, k, n)
    av = ir.expand(ir.reshape(a, (*batch, m, k, 1)), full)
    bv = ir.expand(ir.reshape(b, (1,) * len(batch) + (1, k, n)), full)
    s = ir.reduce(Op.REDUCE_SUM, ir.binary(Op.MUL, cast32(av), cast32(bv)), (len(batch) + 1,))
    return ir.reshape(s, (*batch, m, n))


def repeat(x: Node, reps: list[int]) -> Node:
    shape = x.shape
    x = ir.reshape(x, tuple(d for s in shape for d in (1, s)))
    x = ir.expand(x, tuple(d for r, s in zip(reps, shape, strict=True) for d in (r, s)))
    return ir.reshape(x, tuple(r * s for r, s in zip(reps, shape, strict=True)))


def pool(x: Node, k_: tuple[int, int], s_: tuple[int, int]) -> Node:
    """(..., H, W) -> (..., OH, OW, KH, KW) sliding windows (tinygrad's _pool, dilation 1)."""
    noop = list(x.shape[:-2])
    i_ = x.shape[-2:]
    o_ = [(i - k) // s + 1 for i, k, s in zip(i_, k_, s_, strict=True)]
    nb = [(0, d) for d in noop]
    xup = repeat(x, [1] * len(noop) + [math.ceil(k * (i + 1) / i) for k, i in zip(k_, i_,
                                                                                strict=True)])
    xup = ir.shrink(xup, nb + [(0, k * (i + 1)) for k, i in zip(k_, i_, strict=True)])
    xup = ir.reshape(xup, tuple(noop) + tuple(d for k, i in zip(k_, i_, strict=True)
                                             for d in (k, i + 1)))
    xup = ir.shrink(xup, nb + [b for k, o, s in zip(k_, o_, s_, strict=True)
                               for b in ((0, k), (0, o * s))])
    xup = ir.reshape(xup, tuple(noop) + tuple(d for k, o, s in zip(k_, o_, s_, strict=True)
                                             for d in (k, o, s)))
    xup = ir.shrink(xup, nb + [b for k, o in zip(k_, o_, strict=True)
                               for b in ((0, k), (0, o), (0, 1))])
    xup = ir.reshape(xup, tuple(noop) + tuple(d for k, o in zip(k_, o_, strict=True)
                                             for d in (k, o)))
    nn = len(noop)
    return ir.permute(xup, [*range(nn), nn + 1, nn + 3, nn, nn + 2])


def conv2d(x: Node, w: Node, stride: int = 1, padding: int = 0, groups: int = 1) -> Node:
    """NCHW conv: PAD + window view, MUL with the weights, SUM over (C, KH, KW)."""
    n, c, h, wd = x.shape
    cout, cin, kh, kw = w.shape
    if padding:
        x = ir.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = pool(x, (kh, kw), (stride, stride))  # (N, C, OH, OW, KH, KW)
    oh, ow = win.shape[2], win.shape[3]
    g, co = groups, cout // groups
    win = ir.reshape(win, (n, g, 1, cin, oh, ow, kh, kw))
    win = ir.expand(win, (n, g, co, cin, oh, ow, kh, kw))
    wv = ir.reshape(w, (1, g, co, cin, 1, 1, kh, kw))
    wv = ir.expand(wv, (n, g, co, cin, oh, ow, kh, kw))
    s = ir.reduce(Op.REDUCE_SUM, ir.binary(Op.MUL, cast32(win), cast32(wv)), (3, 6, 7))
    return ir.reshape(s, (n, cout, oh, ow))


def requant(x: Node, channels: int, rng: np.random.Generator, relu: bool = True,
            axis: int = 1) -> Node:
    """int32 -> int8 with per-channel params that keep typical sums in range."""
    mult = rng.integers(1 << 14, 1 << 15, channels)
    shift = rng.integers(22, 25, channels)
    return ir.requant(x, ir.RequantArg(mult, shift, zp=0, lo=0 if relu else -128, hi=127,
                                       axis=axis))


def conv_layer(cin: int, h: int, cout: int, k: int, stride: int, rng: np.random.Generator,
               bias_range: int) -> tuple[ir.Graph, np.ndarray]:
    """One int8 conv layer as the benchmarks and tests measure it alone: bias, per-channel
    REQUANT (shift 20) with a fused ReLU, and a random int8 input."""
    x = ir.input_("x", (1, cin, h, h), "int8")
    w = ir.const(rng.integers(-64, 64, (cout, cin, k, k)).astype(np.int8))
    y = ir.binary(Op.ADD, conv2d(x, w, stride, k // 2),
                  ir.const(rng.integers(-bias_range, bias_range, (1, cout, 1, 1))
                           .astype(np.int32)))
    y = ir.requant(y, ir.RequantArg(rng.integers(1 << 14, 1 << 15, cout), np.full(cout, 20),
                                    lo=0, axis=1))
    xin = rng.integers(-128, 128, (1, cin, h, h)).astype(np.int8)
    return ir.Graph({"x": x}, {"y": y}), xin


def conv_bn_relu(x: Node, cout: int, k: int, stride: int, rng: np.random.Generator,
                 relu: bool = True) -> Node:
    cin = x.shape[1]
    w = ir.const(rng.integers(-64, 64, (cout, cin, k, k)).astype(np.int8))
    y = conv2d(x, w, stride, k // 2)
    b = ir.const(rng.integers(-256, 256, (1, cout, 1, 1)).astype(np.int32))
    return requant(ir.binary(Op.ADD, y, b), cout, rng, relu)


def residual(a: Node, b: Node, rng: np.random.Generator) -> Node:
    s = ir.binary(Op.ADD, ir.unary(Op.CAST, a, "int32"), ir.unary(Op.CAST, b, "int32"))
    return ir.requant(s, ir.RequantArg(np.array([1]), np.array([1]), lo=0, hi=127))


def max_pool(x: Node, k: int, stride: int, pad: int) -> Node:
    if pad:  # int8 inputs after ReLU are >= 0, so zero padding never wins the max
        x = ir.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = pool(x, (k, k), (stride, stride))
    n, c, oh, ow = win.shape[:4]
    return ir.reshape(ir.reduce(Op.REDUCE_MAX, win, (4, 5)), (n, c, oh, ow))


def resnet50(size: int = 224, width: int = 64, classes: int = 1000, blocks=(3, 4, 6, 3),
             seed: int = 0) -> ir.Graph:
    """ResNet-50's layer shapes at batch 1, int8 (random weights), NCHW."""
    rng = np.random.default_rng(seed)
    x = ir.input_("image", (1, 3, size, size), "int8")
    h = conv_bn_relu(x, width, 7, 2, rng)
    h = max_pool(h, 3, 2, 1)
    cin = width
    for stage, count in enumerate(blocks):
        mid = width * 2 ** stage
        for i in range(count):
            stride = 2 if (i == 0 and stage > 0) else 1
            y = conv_bn_relu(h, mid, 1, 1, rng)
            y = conv_bn_relu(y, mid, 3, stride, rng)
            y = conv_bn_relu(y, mid * 4, 1, 1, rng, relu=False)
            skip = h if (i > 0) else conv_bn_relu(h, mid * 4, 1, stride, rng, relu=False)
            h = residual(y, skip, rng)
            cin = mid * 4
    n, c, hh, ww = h.shape
    pooled = ir.reduce(Op.REDUCE_SUM, ir.unary(Op.CAST, h, "int32"), (2, 3))
    pooled = ir.requant(ir.reshape(pooled, (1, c)),
                        ir.RequantArg(np.array([1 << 15]), np.array([15 + int(math.log2(hh * ww))
                                                                      ])))
    w = ir.const(rng.integers(-64, 64, (cin, classes)).astype(np.int8))
    logits = matmul(pooled, w)
    return ir.Graph({"image": x}, {"logits": logits})


def conv_layers(graph: ir.Graph) -> int:
    """How many contractions over a 7-d window view (the convolutions) the graph holds."""
    return sum(1 for n in graph.nodes() if n.op is Op.REDUCE_SUM and len(n.shape) == 8)
