"""Graph builders and the compile-simulate-compare check shared by the ISA lowering tests."""

from __future__ import annotations

import math

import numpy as np

from compiler import ir, reference
from compiler.ir import Node, Op
from compiler.lower import compile_graph
from isa.config import ChipConfig, preset
from simulator import Simulator

FLOAT_TOL = 1e-4  # relative to the largest reference magnitude


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


def run_both(graph: ir.Graph, inputs: dict[str, np.ndarray], cfg: ChipConfig | str = "tiny"):
    """Compile for `cfg`, simulate; return (simulated outputs, reference outputs, result)."""
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    program = compile_graph(graph, cfg)
    result = Simulator(program).run(inputs)
    return result.outputs, reference.run(graph, inputs), result


def assert_matches(graph: ir.Graph, inputs: dict[str, np.ndarray],
                   cfg: ChipConfig | str = "tiny", tol: float = FLOAT_TOL):
    got, want, result = run_both(graph, inputs, cfg)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape and out.dtype == ref.dtype, name
        if ref.dtype == np.float32:
            scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
            err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
            assert err <= tol * scale, f"{name}: max error {err} > {tol * scale}"
        else:
            assert np.array_equal(out, ref), f"{name}: int outputs differ " \
                f"({int(np.sum(out != ref))} of {ref.size} elements)"
    return result
