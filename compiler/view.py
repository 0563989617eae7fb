"""Views: a chain of movement ops folded into one strided, masked window on a flat buffer.

A `View(shape, strides, offset, mask)` says how to read a tensor of `shape` out of a
flat (row-major, element-addressed) base buffer: element `(i0, .., ik)` is
`base_flat[offset + sum(i * stride)]` when every `i` lies in its mask range
`mask[axis] = (lo, hi)` (`lo <= i < hi`), and the pad value 0 otherwise. `mask is None`
means every element is valid. Strides may be 0 (EXPAND) or negative (FLIP).

`fold(node)` walks down a chain of movement nodes (RESHAPE, PERMUTE, EXPAND, PAD, SHRINK,
FLIP) to the first node that is not one and returns `(base, view)`. When the whole chain
is one View, `base` is that non-movement node. When some RESHAPE cannot be expressed with
strides (e.g. merging a padded axis), `base` is the movement node just below the deepest
such step: the consumer must materialise `base` into a contiguous buffer first (folding
it in turn), then read it through `view`. Intermediate steps that are not expressible
but fold back into strides later (tinygrad's "repeat then shrink" sliding-window trick
for convolutions) are handled: the folder keeps a short stack of views and merges them
exactly whenever the composition is again a single strided view.

This module is the only place that knows the movement semantics in terms of strides;
`compiler.reference` evaluates the same ops with plain numpy, and the tests hold the two
equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compiler.ir import MOVEMENT_OPS, Node, Op

Mask = tuple[tuple[int, int], ...] | None


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, acc = [], 1
    for s in reversed(tuple(shape)):
        strides.append(acc if s != 1 else 0)
        acc *= s
    return tuple(reversed(strides))


@dataclass(frozen=True)
class View:
    """A strided, masked window on a flat buffer (see the module docstring)."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0
    mask: Mask = None

    @staticmethod
    def contiguous(shape: Sequence[int]) -> View:
        shape = tuple(shape)
        return View(shape, contiguous_strides(shape), 0, None)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_contiguous(self) -> bool:
        """Reads base elements 0..numel-1 in order (size-1 axes may have any stride)."""
        return (self.offset == 0 and self.mask is None and all(
            st == c for s, st, c in zip(self.shape, self.strides,
                                        contiguous_strides(self.shape), strict=True) if s != 1))

    @property
    def is_empty(self) -> bool:
        """Every element is masked (reads only the pad value)."""
        return self.mask is not None and any(lo >= hi for lo, hi in self.mask)

    def valid_ranges(self) -> tuple[tuple[int, int], ...]:
        return self.mask if self.mask is not None else tuple((0, s) for s in self.shape)

    def span(self) -> tuple[int, int]:
        """Smallest and largest base index any valid element reads (empty view: (0, -1))."""
        if self.is_empty:
            return 0, -1
        lo = hi = self.offset
        for (a, b), st in zip(self.valid_ranges(), self.strides, strict=True):
            lo += min(a * st, (b - 1) * st)
            hi += max(a * st, (b - 1) * st)
        return lo, hi

    # Evaluation (vectorised; for references, tests and code generators) --------------------
    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat base index, valid) arrays of `shape`; invalid elements have index 0."""
        idx = np.full(self.shape, self.offset, dtype=np.int64)
        valid = np.ones(self.shape, dtype=bool)
        for axis, (size, stride) in enumerate(zip(self.shape, self.strides, strict=True)):
            shape = [1] * self.ndim
            shape[axis] = size
            ar = np.arange(size, dtype=np.int64).reshape(shape)
            idx = idx + ar * stride
            if self.mask is not None:
                lo, hi = self.mask[axis]
                valid = valid & (ar >= lo) & (ar < hi)
        return np.where(valid, idx, 0), valid

    def gather(self, base: np.ndarray) -> np.ndarray:
        """Read this view out of a base array (flattened row-major)."""
        flat = np.ascontiguousarray(base).reshape(-1)
        idx, valid = self.indices()
        if self.mask is None:
            return flat[idx]
        return np.where(valid, flat[idx], np.zeros((), dtype=flat.dtype))

    # Movement ops; each returns a new View, or None when strides cannot express it ---------
    def permute(self, order: Sequence[int]) -> View:
        mask = None if self.mask is None else tuple(self.mask[a] for a in order)
        return View(tuple(self.shape[a] for a in order), tuple(self.strides[a] for a in order),
                    self.offset, mask)

    def expand(self, shape: Sequence[int]) -> View:
        shape = tuple(shape)
        strides = tuple(0 if n != s else st
                        for s, n, st in zip(self.shape, shape, self.strides, strict=True))
        mask = None
        if self.mask is not None:
            mask = tuple(((0, n) if hi > lo else (0, 0)) if n != s else (lo, hi)
                         for (lo, hi), s, n in zip(self.mask, self.shape, shape, strict=True))
        return View(shape, strides, self.offset, _norm_mask(mask, shape))

    def pad(self, widths: Sequence[tuple[int, int]]) -> View:
        offset = self.offset - sum(b * st for (b, _), st in zip(widths, self.strides, strict=True))
        shape = tuple(s + b + a for s, (b, a) in zip(self.shape, widths, strict=True))
        mask = tuple((lo + b, hi + b) for (lo, hi), (b, _) in
                     zip(self.valid_ranges(), widths, strict=True))
        return View(shape, self.strides, offset, _norm_mask(mask, shape))

    def shrink(self, bounds: Sequence[tuple[int, int]]) -> View:
        offset = self.offset + sum(s * st for (s, _), st in zip(bounds, self.strides, strict=True))
        shape = tuple(e - s for s, e in bounds)
        mask = tuple((min(max(lo - s, 0), e - s), max(min(hi - s, e - s), 0))
                     for (lo, hi), (s, e) in zip(self.valid_ranges(), bounds, strict=True))
        mask = tuple((lo, hi) if lo < hi else (0, 0) for lo, hi in mask)
        return View(shape, self.strides, offset, _norm_mask(mask, shape))

    def flip(self, axes: Sequence[int]) -> View:
        strides, offset, mask = list(self.strides), self.offset, list(self.valid_ranges())
        for a in axes:
            n = self.shape[a]
            offset += (n - 1) * strides[a]
            strides[a] = -strides[a]
            lo, hi = mask[a]
            mask[a] = (n - hi, n - lo) if hi > lo else (0, 0)
        return View(self.shape, tuple(strides), offset, _norm_mask(tuple(mask), self.shape))

    def reshape(self, shape: Sequence[int]) -> View | None:
        shape = tuple(shape)
        if shape == self.shape:
            return self
        if self.is_empty:
            return View(shape, (0,) * len(shape), 0, tuple((0, 0) for _ in shape))
        kept = [i for i, s in enumerate(self.shape) if s != 1]
        if [self.shape[i] for i in kept] == [s for s in shape if s != 1]:
            # only size-1 axes come or go: carry strides and mask over
            strides, mask, it = [], [], iter(kept)
            for s in shape:
                if s == 1:
                    strides.append(0)
                    mask.append((0, 1))
                else:
                    i = next(it)
                    strides.append(self.strides[i])
                    mask.append(self.valid_ranges()[i])
            m = None if self.mask is None else _norm_mask(tuple(mask), shape)
            if self.mask is not None and any(self.mask[i] == (0, 0) for i in
                                             range(self.ndim) if self.shape[i] == 1):
                m = tuple((0, 0) for _ in shape)
            return View(shape, tuple(strides), self.offset, m)
        if self.mask is not None:
            return None  # masked splits/merges go through the view stack in `fold`
        strides = _nocopy_reshape(self.shape, self.strides, shape)
        return None if strides is None else View(shape, strides, self.offset, None)


def _norm_mask(mask: Mask, shape: Sequence[int]) -> Mask:
    if mask is None:
        return None
    if any(lo >= hi for lo, hi in mask):
        return tuple((0, 0) for _ in shape)
    if all(lo == 0 and hi == s for (lo, hi), s in zip(mask, shape, strict=True)):
        return None
    return tuple(mask)


def _nocopy_reshape(old_shape: Sequence[int], old_strides: Sequence[int],
                    new_shape: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's attempt_nocopy_reshape: new strides for an unmasked view, or None."""
    olds = [(s, st) for s, st in zip(old_shape, old_strides, strict=True) if s != 1]
    o_shape = [s for s, _ in olds]
    o_str = [st for _, st in olds]
    new_strides = [0] * len(new_shape)
    oi, oj, ni, nj = 0, 1, 0, 1
    n_old, n_new = len(o_shape), len(new_shape)
    while ni < n_new and oi < n_old:
        np_, op_ = new_shape[ni], o_shape[oi]
        while np_ != op_:
            if np_ < op_:
                np_ *= new_shape[nj]
                nj += 1
            else:
                op_ *= o_shape[oj]
                oj += 1
        for ok in range(oi, oj - 1):
            if o_str[ok] != o_shape[ok + 1] * o_str[ok + 1]:
                return None
        new_strides[nj - 1] = o_str[oj - 1]
        for nk in range(nj - 1, ni, -1):
            new_strides[nk - 1] = new_strides[nk] * new_shape[nk]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    for nk in range(ni, n_new):  # trailing size-1 axes
        new_strides[nk] = 0
    return tuple(0 if s == 1 else st for s, st in zip(new_shape, new_strides, strict=True))


def _digits(value: int, radix: Sequence[int]) -> list[int] | None:
    """Mixed-radix digits of 0 <= value < prod(radix), most significant first."""
    if value < 0 or value >= math.prod(radix):
        return None
    out = []
    for r in reversed(radix):
        out.append(value % r)
        value //= r
    return out[::-1]


def _collapse(view: View) -> View:
    """Merge neighbouring unmasked axes that are contiguous with each other (fewer digits)."""
    if view.is_empty:
        return view
    ranges = view.valid_ranges()
    dims: list[list[int]] = []  # size, stride, lo, hi
    for size, stride, (lo, hi) in zip(view.shape, view.strides, ranges, strict=True):
        if size == 1:
            continue
        if dims:
            psize, pstride, plo, phi = dims[-1]
            full = plo == 0 and phi == psize and lo == 0 and hi == size
            if full and pstride == stride * size:
                dims[-1] = [psize * size, stride, 0, psize * size]
                continue
        dims.append([size, stride, lo, hi])
    if not dims:
        return View((1,), (0,), view.offset, None)
    shape = tuple(d[0] for d in dims)
    mask = _norm_mask(tuple((d[2], d[3]) for d in dims), shape)
    return View(shape, tuple(d[1] for d in dims), view.offset, mask)


def merge(outer: View, inner: View) -> View | None:
    """The single View equal to reading `outer` from the contiguous result of `inner`.

    Exact: each outer stride is split into mixed-radix digits of `inner.shape`; when no
    digit can carry over the outer view's valid region, the composition is affine. Returns
    None when it is not (or when the inner mask would not stay a box).
    """
    if outer.is_empty:
        return View(outer.shape, (0,) * outer.ndim, 0, tuple((0, 0) for _ in outer.shape))
    inner = _collapse(inner)
    radix = list(inner.shape)
    ranges = outer.valid_ranges()
    lens = [hi - lo for lo, hi in ranges]
    f0 = outer.offset + sum(lo * st for (lo, _), st in zip(ranges, outer.strides, strict=True))
    d0 = _digits(f0, radix)
    if d0 is None:
        return None
    coeffs = []  # per outer axis: signed digits of its stride
    for st, n in zip(outer.strides, lens, strict=True):
        if n == 1 or st == 0:
            coeffs.append([0] * len(radix))
            continue
        d = _digits(abs(st), radix)
        if d is None:
            return None
        coeffs.append([c if st > 0 else -c for c in d])
    for b, size in enumerate(radix):
        lo = d0[b] + sum(min(0, (n - 1) * c[b]) for c, n in zip(coeffs, lens, strict=True))
        hi = d0[b] + sum(max(0, (n - 1) * c[b]) for c, n in zip(coeffs, lens, strict=True))
        if lo < 0 or hi >= size:
            return None
    strides = tuple(sum(t * c[b] for b, t in enumerate(inner.strides)) for c in coeffs)
    offset = inner.offset + sum(t * d for t, d in zip(inner.strides, d0, strict=True)) \
        - sum(lo * st for (lo, _), st in zip(ranges, strides, strict=True))
    new_ranges = [list(r) for r in ranges]  # in outer coordinates
    for b, (mlo, mhi) in enumerate(inner.valid_ranges()):
        if mlo == 0 and mhi == radix[b]:
            continue
        deps = [a for a, (c, n) in enumerate(zip(coeffs, lens, strict=True)) if c[b] and n > 1]
        if not deps:
            if not mlo <= d0[b] < mhi:
                return View(outer.shape, strides, offset, tuple((0, 0) for _ in outer.shape))
            continue
        if len(deps) > 1:
            return None
        a = deps[0]
        c = coeffs[a][b]
        # d0 + j*c in [mlo, mhi-1] for j = idx - ranges[a][0]
        if c > 0:
            jlo, jhi = -((d0[b] - mlo) // c), (mhi - 1 - d0[b]) // c
        else:
            jlo, jhi = -((mhi - 1 - d0[b]) // -c), (d0[b] - mlo) // -c
        base = ranges[a][0]
        new_ranges[a][0] = max(new_ranges[a][0], base + jlo)
        new_ranges[a][1] = min(new_ranges[a][1], base + jhi + 1)
    mask = _norm_mask(tuple((lo, hi) for lo, hi in new_ranges), outer.shape)
    return View(outer.shape, strides, offset, mask)


def apply(view: View, node: Node) -> View | None:
    """Apply one movement node to a view of its source; None when strides cannot express it."""
    op, arg = node.op, node.arg
    if op is Op.RESHAPE:
        return view.reshape(arg)
    if op is Op.PERMUTE:
        return view.permute(arg)
    if op is Op.EXPAND:
        return view.expand(arg)
    if op is Op.PAD:
        return view.pad(arg)
    if op is Op.SHRINK:
        return view.shrink(arg)
    if op is Op.FLIP:
        return view.flip(arg)
    raise ValueError(f"{op.name} is not a movement op")


def _fold_chain(base: Node, chain: list[Node]) -> list[tuple[View, Node]]:
    """Apply `chain` to a contiguous view of `base`; a stack of views, merged where exact."""
    stack: list[tuple[View, Node]] = [(View.contiguous(base.shape), base)]
    for step in chain:
        view, under = stack[-1]
        new = apply(view, step)
        if new is None:  # only RESHAPE can fail: read the previous result contiguously
            stack.append((View.contiguous(step.arg), step.srcs[0]))
        else:
            stack[-1] = (new, under)
        while len(stack) > 1:
            merged = merge(stack[-1][0], stack[-2][0])
            if merged is None:
                break
            stack.pop()
            stack[-1] = (merged, stack[-1][1])
    return stack


def fold(node: Node) -> tuple[Node, View]:
    """Fold the movement chain ending at `node` into (base node, View); see the module doc.

    When the chain is not one View, `base` is the movement node whose materialised
    (contiguous) result is smallest among those the rest of the chain reads as one View,
    e.g. the PAD under a convolution's sliding window rather than the repeated buffer.
    """
    chain: list[Node] = []
    base = node
    while base.op in MOVEMENT_OPS:
        chain.append(base)
        base = base.srcs[0]
    chain.reverse()
    stack = _fold_chain(base, chain)
    if len(stack) == 1:
        return base, stack[0][0]
    best: tuple[Node, View] | None = None
    for i, cut in enumerate(chain[:-1]):  # never `node` itself: fold_all must progress
        upper = _fold_chain(cut, chain[i + 1:])
        if len(upper) == 1 and (best is None or cut.numel < best[0].numel):
            best = (cut, upper[0][0])
    assert best is not None  # one op over its contiguous source always folds
    return best


def fold_all(node: Node) -> list[tuple[Node, Node, View]]:
    """The materialisation steps `node` needs, innermost first: (target, base, view) each,
    meaning "target's contiguous result = view read out of base's result". The last
    step's target is `node`; every other target is a movement node a later step reads."""
    steps = []
    while True:
        base, view = fold(node)
        steps.append((node, base, view))
        if base.op not in MOVEMENT_OPS:
            return steps[::-1]
        node = base
