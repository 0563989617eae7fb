"""compiler.view against the numpy reference: random movement chains fold to Views that read
exactly what numpy's reshape/transpose/pad/slice/flip give."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.reference import evaluate
from compiler.view import View, fold, fold_all, merge


def _split(n: int, draw) -> tuple[int, ...]:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = draw(st.sampled_from(divisors))
    return (d, n // d)


@st.composite
def movement_chain(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    x = ir.input_("x", shape)
    node = x
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["reshape", "permute", "expand", "pad", "shrink", "flip"]))
        s = node.shape
        if kind == "reshape":
            choice = draw(st.integers(0, 2))
            if choice == 0 and len(s) < 5:
                a = draw(st.integers(0, len(s) - 1))
                new = s[:a] + _split(s[a], draw) + s[a + 1:]
            elif choice == 1 and len(s) > 1:
                a = draw(st.integers(0, len(s) - 2))
                new = s[:a] + (s[a] * s[a + 1],) + s[a + 2:]
            else:
                new = (math.prod(s),)
            node = ir.reshape(node, new)
        elif kind == "permute":
            node = ir.permute(node, draw(st.permutations(range(len(s)))))
        elif kind == "expand":
            if 1 in s:
                new = tuple(draw(st.integers(1, 3)) if d == 1 else d for d in s)
                node = ir.expand(node, new)
            else:
                node = ir.reshape(node, (1,) + s)
        elif kind == "pad":
            node = ir.pad(node, [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in s])
        elif kind == "shrink":
            bounds = []
            for d in s:
                a = draw(st.integers(0, d - 1))
                bounds.append((a, draw(st.integers(a + 1, d))))
            node = ir.shrink(node, bounds)
        else:
            node = ir.flip(node, draw(st.lists(st.integers(0, len(s) - 1), max_size=2)))
    return x, node


@settings(max_examples=300, deadline=None)
@given(movement_chain())
def test_fold_matches_reference(chain):
    x, node = chain
    data = np.arange(1, x.numel + 1, dtype=np.float32).reshape(x.shape)
    want = evaluate([node], {"x": data})["0"]
    buffers: dict[int, np.ndarray] = {id(x): data}
    for target, base, view in fold_all(node):
        src = buffers[id(base)]
        lo, hi = view.span()
        assert view.is_empty or (0 <= lo and hi < src.size)
        buffers[id(target)] = view.gather(src)
    np.testing.assert_array_equal(buffers[id(node)], want)


def test_fold_never_returns_the_node_itself():
    x = ir.input_("x", (2, 3))
    y = ir.reshape(ir.permute(ir.pad(x, [(1, 1), (0, 0)]), (1, 0)), (12,))
    y = ir.shrink(y, [(0, 5)])  # smaller than any cut below it
    for target, base, _ in fold_all(y):
        assert base is not target


def test_fold_all_keys_steps_by_node():
    x = ir.input_("x", (2, 3, 4))
    p = ir.pad(x, [(0, 0), (1, 1), (0, 0)])
    y = ir.reshape(p, (2, 20))
    steps = fold_all(y)
    assert steps[0][:2] == (p, x) and steps[-1][:2] == (y, p)


def _window(x: ir.Node, k: int, s: int, d: int) -> ir.Node:
    """tinygrad's repeat-and-shrink sliding window over the last axis."""
    *lead, i = x.shape
    lead = tuple(lead)
    o = (i - d * (k - 1) - 1) // s + 1
    e = math.ceil(k * (i + d) / i)
    y = ir.expand(ir.reshape(x, lead + (1, i)), lead + (e, i))
    y = ir.reshape(y, lead + (e * i,))
    y = ir.shrink(y, [(0, n) for n in lead] + [(0, k * (i + d))])
    y = ir.reshape(y, lead + (k, i + d))
    y = ir.shrink(y, [(0, n) for n in lead] + [(0, k), (0, o * s)])
    y = ir.reshape(y, lead + (k, o, s))
    y = ir.shrink(y, [(0, n) for n in lead] + [(0, k), (0, o), (0, 1)])
    return ir.reshape(y, lead + (k, o))


@pytest.mark.parametrize("k,s,d", [(3, 1, 1), (3, 2, 1), (2, 2, 1), (3, 2, 2), (1, 1, 1)])
def test_sliding_window_folds_to_one_view(k, s, d):
    x = ir.input_("x", (2, 11))
    y = _window(x, k, s, d)
    base, view = fold(y)
    assert base is x and view.mask is None
    assert view.strides == (11, d if k > 1 else 0, s)
    data = np.arange(22, dtype=np.float32).reshape(2, 11)
    np.testing.assert_array_equal(view.gather(data), evaluate([y], {"x": data})["0"])


def test_padded_window_materialises_the_pad_not_the_repeat():
    x = ir.input_("x", (2, 7))
    p = ir.pad(x, [(0, 0), (1, 1)])
    y = _window(p, 3, 2, 1)
    base, view = fold(y)
    assert base is p and view.strides == (9, 1, 2)
    inner_base, inner = fold(p)
    assert inner_base is x and inner.mask == ((0, 2), (1, 8))


def test_merge_rejects_carrying_strides():
    inner = View.contiguous((3, 4))
    outer = View((4,), (3,), 0, None)  # crosses rows unevenly: still affine on the flat buffer
    assert merge(outer, inner) == View((4,), (3,), 0, None)
    masked = View((3, 4), (4, 1), 0, ((0, 3), (1, 3)))
    assert merge(View((12,), (1,), 0, None), masked) is None
