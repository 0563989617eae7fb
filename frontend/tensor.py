"""A lazy, numpy-like `Tensor` that builds a `compiler.ir` graph of primitive ops.

Nothing computes until `realize(backend=...)`: every method below only adds nodes, and
every op lowers to the primitive ops of `compiler.ir.Op` (matmul and conv2d to MUL of
two views + REDUCE_SUM, pooling to window views + REDUCE_MAX/REDUCE_SUM, exp/log/tanh/...
to EXP2/LOG2/RECIP arithmetic), so every backend runs every Tensor program.

    x = Tensor.input("x", (1, 3, 32, 32))
    y = x.conv2d(Tensor(w), stride=2, padding=1).relu().mean(axis=(2, 3))
    y.realize(backend="numpy", inputs={"x": data}).numpy()

`Tensor(array)` is a constant (weights); `Tensor.input(name, shape, dtype)` a named graph
input, fed at `realize`. `graph()` / `Tensor.to_graph({...})` give the IR Graph for the
compiler or the command line. dtypes are "float32", "int32" and "int8"; mixing dtypes
promotes int8 < int32 < float32. int8 matmul/conv accumulate in int32 (the result dtype).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compiler import ir
from compiler.backends import load_plugins, run_backend
from compiler.ir import Graph, Node, Op
from compiler.reference import evaluate

LOG2_E = math.log2(math.e)
LN_2 = math.log(2.0)
_RANK = {"int8": 0, "int32": 1, "float32": 2}
_INT_LIMITS = {"int8": (-128, 127), "int32": (-(1 << 31), (1 << 31) - 1)}


def to_dtype(dtype: Any) -> str:
    """Accept "float32"/"int32"/"int8", numpy dtypes and the short names "f32", "i8"."""
    aliases = {"f32": "float32", "fp32": "float32", "float": "float32", "i32": "int32",
               "int": "int32", "i8": "int8"}
    if isinstance(dtype, str):
        name = aliases.get(dtype, dtype)
    else:
        name = np.dtype(dtype).name
    if name not in ir.DTYPES:
        raise ir.IRError(f"unsupported dtype {dtype!r} (supported: {', '.join(ir.DTYPES)})")
    return name


def _pairs(value: int | Sequence[Any], n: int) -> list[tuple[int, int]]:
    """Padding as int, per-axis ints, or per-axis (before, after) pairs."""
    if isinstance(value, int):
        return [(value, value)] * n
    value = list(value)
    if len(value) == n and all(isinstance(v, int) for v in value):
        return [(v, v) for v in value]
    if len(value) == n:
        return [(int(a), int(b)) for a, b in value]
    raise ir.IRError(f"padding {value} does not fit {n} spatial axes")


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    out = (value,) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != n:
        raise ir.IRError(f"{list(out)} does not fit {n} spatial axes")
    return out


class Tensor:
    """A lazy tensor: a node of the primitive-op graph, plus its realised value if any."""

    __slots__ = ("node", "_value")

    def __init__(self, data: Any, dtype: Any = None):
        if isinstance(data, Node):
            self.node = data
        elif isinstance(data, Tensor):
            self.node = data.node
        else:
            arr = np.asarray(data)
            if dtype is None and arr.dtype == np.float64:
                dtype = "float32"
            self.node = ir.const(arr, None if dtype is None else to_dtype(dtype))
        self._value: np.ndarray | None = None

    # Construction --------------------------------------------------------------------------
    @staticmethod
    def input(name: str, shape: Sequence[int], dtype: Any = "float32") -> Tensor:
        return Tensor(ir.input_(name, shape, to_dtype(dtype)))

    @staticmethod
    def full(shape: Sequence[int], value: float, dtype: Any = "float32") -> Tensor:
        """A constant broadcast to `shape` (stored as one element, then EXPANDed)."""
        shape = tuple(shape)
        one = Tensor(np.full((1,) * len(shape), value), dtype=to_dtype(dtype))
        return Tensor(ir.expand(one.node, shape)) if shape else Tensor(np.asarray(value),
                                                                       to_dtype(dtype))

    @staticmethod
    def zeros(shape: Sequence[int], dtype: Any = "float32") -> Tensor:
        return Tensor.full(shape, 0, dtype)

    @staticmethod
    def ones(shape: Sequence[int], dtype: Any = "float32") -> Tensor:
        return Tensor.full(shape, 1, dtype)

    # Introspection -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return self.node.ndim

    @property
    def numel(self) -> int:
        return self.node.numel

    def __repr__(self) -> str:
        state = "realized" if self._value is not None else "lazy"
        return f"<Tensor {self.dtype}{list(self.shape)} {self.node.op.name} {state}>"

    def __len__(self) -> int:
        return self.shape[0]

    # Running -------------------------------------------------------------------------------
    def graph(self, name: str = "out") -> Graph:
        return Tensor.to_graph({name: self})

    @staticmethod
    def to_graph(outputs: Mapping[str, Tensor]) -> Graph:
        """The IR Graph computing `outputs`, with every INPUT node they reach as an input."""
        roots = {name: t.node for name, t in outputs.items()}
        inputs: dict[str, Node] = {}
        for node in ir.toposort(roots.values()):
            if node.op is Op.INPUT:
                if node.arg in inputs and inputs[node.arg] is not node:
                    raise ir.IRError(f"two different graph inputs are named {node.arg!r}")
                inputs[node.arg] = node
        return Graph(inputs, roots)

    def realize(self, backend: str = "numpy", inputs: Mapping[str, np.ndarray] | None = None,
                **options: Any) -> Tensor:
        """Run the graph of this tensor on `backend` (see compiler.backends); returns self."""
        Tensor.realize_all([self], backend, inputs, **options)
        return self

    @staticmethod
    def realize_all(tensors: Sequence[Tensor], backend: str = "numpy",
                    inputs: Mapping[str, np.ndarray] | None = None, **options: Any) -> None:
        load_plugins("frontend")
        graph = Tensor.to_graph({f"out{i}": t for i, t in enumerate(tensors)})
        results = run_backend(backend, graph, dict(inputs or {}), **options)
        for i, t in enumerate(tensors):
            t._value = np.asarray(results[f"out{i}"])

    def numpy(self, backend: str = "numpy", inputs: Mapping[str, np.ndarray] | None = None,
              **options: Any) -> np.ndarray:
        """The value as a numpy array, realising on `backend` first if needed."""
        if self._value is None:
            self.realize(backend, inputs, **options)
        assert self._value is not None
        return self._value

    def item(self) -> Any:
        return self.numpy().item()

    # Elementwise ---------------------------------------------------------------------------
    def _const_like(self, value: Any, dtype: str | None = None) -> Tensor:
        dtype = dtype or self.dtype
        if isinstance(value, (bool, int, float, np.number)):
            if dtype != "float32" and isinstance(value, float) and not float(value).is_integer():
                dtype = "float32"
            return Tensor(np.asarray(value), dtype)
        return Tensor(value)

    def _pair(self, other: Any, reverse: bool = False) -> tuple[Tensor, Tensor]:
        other = other if isinstance(other, Tensor) else self._const_like(other)
        a, b = (other, self) if reverse else (self, other)
        dtype = max(a.dtype, b.dtype, key=_RANK.__getitem__)
        return a.cast(dtype), b.cast(dtype)

    def _binary(self, op: Op, other: Any, reverse: bool = False) -> Tensor:
        a, b = self._pair(other, reverse)
        return Tensor(ir.binary(op, a.node, b.node))

    def cast(self, dtype: Any) -> Tensor:
        return Tensor(ir.unary(Op.CAST, self.node, to_dtype(dtype)))

    def trunc_cast(self, dtype: Any) -> Tensor:
        """float -> int rounding toward zero (C, numpy and ONNX Cast), built on CAST's
        round-to-nearest-even: step back toward zero where rounding went past x."""
        dtype = to_dtype(dtype)
        if self.dtype != "float32" or dtype == "float32":
            return self.cast(dtype)
        r = self.cast("int32")
        past = r.float().abs() > self.abs()
        return (r - past * r.sign()).cast(dtype)

    def float(self) -> Tensor:
        return self.cast("float32")

    def add(self, other: Any) -> Tensor:
        return self._binary(Op.ADD, other)

    def __add__(self, other: Any) -> Tensor:
        return self._binary(Op.ADD, other)

    def __radd__(self, other: Any) -> Tensor:
        return self._binary(Op.ADD, other, True)

    def __sub__(self, other: Any) -> Tensor:
        return self._binary(Op.SUB, other)

    def __rsub__(self, other: Any) -> Tensor:
        return self._binary(Op.SUB, other, True)

    def __mul__(self, other: Any) -> Tensor:
        return self._binary(Op.MUL, other)

    def __rmul__(self, other: Any) -> Tensor:
        return self._binary(Op.MUL, other, True)

    def __truediv__(self, other: Any) -> Tensor:
        a, b = self._pair(other)
        if a.dtype != "float32":
            a, b = a.float(), b.float()
        if b.node.op is Op.CONST:  # x / c = x * (1/c), computed here in float32
            return Tensor(ir.binary(Op.MUL, a.node, ir.const(np.float32(1) / b.node.arg)))
        return Tensor(ir.binary(Op.DIV, a.node, b.node))

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._const_like(other, "float32") / self

    def idiv(self, other: Any) -> Tensor:
        """Integer division truncating toward zero (x/0 = 0), as the chip's DIV."""
        return self._binary(Op.DIV, other)

    def __neg__(self) -> Tensor:
        return Tensor(ir.unary(Op.NEG, self.node))

    def __lt__(self, other: Any) -> Tensor:
        return self._binary(Op.CMPLT, other)

    def __gt__(self, other: Any) -> Tensor:
        return self._binary(Op.CMPLT, other, True)

    def __le__(self, other: Any) -> Tensor:
        return 1 - self._binary(Op.CMPLT, other, True)

    def __ge__(self, other: Any) -> Tensor:
        return 1 - self._binary(Op.CMPLT, other)

    def eq(self, other: Any) -> Tensor:
        return self._binary(Op.CMPEQ, other)

    def ne(self, other: Any) -> Tensor:
        return 1 - self._binary(Op.CMPEQ, other)

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Tensor) -> Tensor:
        return Tensor(other).matmul(self)

    def maximum(self, other: Any) -> Tensor:
        return self._binary(Op.MAX, other)

    def minimum(self, other: Any) -> Tensor:
        return self._binary(Op.MIN, other)

    def where(self, a: Any, b: Any) -> Tensor:
        """self != 0 ? a : b, elementwise with broadcasting."""
        ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
        dtype = "float32" if ref is None else ref.dtype
        ta = a if isinstance(a, Tensor) else self._const_like(a, dtype)
        tb = b if isinstance(b, Tensor) else self._const_like(b, dtype)
        ta, tb = ta._pair(tb)
        return Tensor(ir.ternary(Op.WHERE, self.node, ta.node, tb.node))

    def relu(self) -> Tensor:
        return Tensor(ir.unary(Op.RELU, self.node))

    def _f(self) -> Tensor:
        return self if self.dtype == "float32" else self.float()

    def exp2(self) -> Tensor:
        return Tensor(ir.unary(Op.EXP2, self._f().node))

    def log2(self) -> Tensor:
        return Tensor(ir.unary(Op.LOG2, self._f().node))

    def exp(self) -> Tensor:
        return (self._f() * LOG2_E).exp2()

    def log(self) -> Tensor:
        return self.log2() * LN_2

    def sqrt(self) -> Tensor:
        return Tensor(ir.unary(Op.SQRT, self._f().node))

    def rsqrt(self) -> Tensor:
        return self.sqrt().reciprocal()

    def reciprocal(self) -> Tensor:
        return Tensor(ir.unary(Op.RECIP, self._f().node))

    def sin(self) -> Tensor:
        return Tensor(ir.unary(Op.SIN, self._f().node))

    def cos(self) -> Tensor:
        return (self._f() + math.pi / 2).sin()

    def abs(self) -> Tensor:
        return self.maximum(-self)

    def sign(self) -> Tensor:
        return (self > 0) - (self < 0)

    def square(self) -> Tensor:
        return self * self

    def pow(self, exponent: float) -> Tensor:
        """x ** p: exact forms for p in {0, 1, 2, 3, 0.5, -1, -0.5}; else exp2(p*log2(x)), x > 0."""
        special = {0: lambda x: x * 0 + 1, 1: lambda x: x, 2: lambda x: x * x,
                   3: lambda x: x * x * x, 0.5: Tensor.sqrt, -1: Tensor.reciprocal,
                   -0.5: Tensor.rsqrt}
        if exponent in special:
            return special[exponent](self)
        return (self.log2() * float(exponent)).exp2()

    def __pow__(self, exponent: float) -> Tensor:
        return self.pow(exponent)

    def sigmoid(self) -> Tensor:
        return (1 + (-self._f()).exp()).reciprocal()

    def tanh(self) -> Tensor:
        return 2 * (2 * self._f()).sigmoid() - 1

    def erf(self) -> Tensor:
        """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): enough for float32."""
        x = self._f()
        a = x.abs()
        t = (1 + 0.3275911 * a).reciprocal()
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (
            -1.453152027 + t * 1.061405429))))
        y = 1 - poly * (-(a * a)).exp()
        return x.sign() * y

    def gelu(self, approximate: str = "none") -> Tensor:
        x = self._f()
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
        return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())

    def clip(self, lo: float | None = None, hi: float | None = None) -> Tensor:
        out = self
        if lo is not None:
            out = out.maximum(lo)
        if hi is not None:
            out = out.minimum(hi)
        return out

    def leaky_relu(self, slope: float = 0.01) -> Tensor:
        return self.relu() - (-self).relu() * slope

    # Reductions ----------------------------------------------------------------------------
    def _axes(self, axis: int | Sequence[int] | None) -> tuple[int, ...]:
        if axis is None:
            return tuple(range(self.ndim))
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        for a in axes:
            if not -self.ndim <= a < self.ndim:
                raise ir.IRError(f"axis {a} out of range for shape {list(self.shape)}")
        return tuple(sorted({a % self.ndim for a in axes}))

    def _reduce(self, op: Op, axis: Any, keepdim: bool) -> Tensor:
        axes = self._axes(axis)
        out = Tensor(ir.reduce(op, self.node, axes))
        if keepdim:
            return out
        return out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))

    def sum(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        return self._reduce(Op.REDUCE_SUM, axis, keepdim)

    def max(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        return self._reduce(Op.REDUCE_MAX, axis, keepdim)

    def min(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        return -((-self).max(axis, keepdim))

    def mean(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        count = math.prod(self.shape[a] for a in self._axes(axis))
        return self._f().sum(axis, keepdim) * (1.0 / count)

    def var(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        x = self._f()
        return (x - x.mean(axis, keepdim=True)).square().mean(axis, keepdim)

    def softmax(self, axis: int = -1) -> Tensor:
        x = self._f()
        e = (x - x.max(axis, keepdim=True)).exp()
        return e * e.sum(axis, keepdim=True).reciprocal()

    def log_softmax(self, axis: int = -1) -> Tensor:
        x = self._f()
        m = x - x.max(axis, keepdim=True)
        return m - m.exp().sum(axis, keepdim=True).log()

    def layernorm(self, axis: int | Sequence[int] = -1, eps: float = 1e-5,
                  weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        x = self._f()
        centred = x - x.mean(axis, keepdim=True)
        out = centred * (centred.square().mean(axis, keepdim=True) + eps).rsqrt()
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out

    # Movement ------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return Tensor(ir.reshape(self.node, shape))

    def permute(self, *order: Any) -> Tensor:
        order = tuple(order[0]) if len(order) == 1 and not isinstance(order[0], int) else order
        return Tensor(ir.permute(self.node, order))

    def transpose(self, a: int = -2, b: int = -1) -> Tensor:
        order = list(range(self.ndim))
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    @property
    def T(self) -> Tensor:
        return self.permute(tuple(reversed(range(self.ndim))))

    def expand(self, *shape: Any) -> Tensor:
        """Broadcast to `shape` (numpy rules: leading axes may be added; -1 keeps a size)."""
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        lead = len(shape) - self.ndim
        if lead < 0:
            raise ir.IRError(f"cannot expand {list(self.shape)} to {list(shape)}")
        full = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return Tensor(ir.broadcast_to(self.node, full))

    def unsqueeze(self, axis: int) -> Tensor:
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis: int | Sequence[int] | None = None) -> Tensor:
        axes = [i for i, s in enumerate(self.shape) if s == 1] if axis is None \
            else list(self._axes(axis))
        for a in axes:
            if self.shape[a] != 1:
                raise ir.IRError(f"cannot squeeze axis {a} of size {self.shape[a]}")
        return self.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))

    def flatten(self, start: int = 0, end: int = -1) -> Tensor:
        start, end = start % self.ndim if self.ndim else 0, end % self.ndim if self.ndim else 0
        mid = math.prod(self.shape[start:end + 1])
        return self.reshape(self.shape[:start] + (mid,) + self.shape[end + 1:])

    def pad(self, widths: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
        """Pad with `value`; negative widths crop (ONNX allows both)."""
        widths = [(int(b), int(a)) for b, a in widths]
        if len(widths) != self.ndim:
            raise ir.IRError(f"pad {widths} needs one (before, after) pair per axis of "
                             f"{list(self.shape)}")
        crop = [(max(-b, 0), s - max(-a, 0)) for (b, a), s in zip(widths, self.shape, strict=True)]
        x = self.shrink(crop) if any(b < 0 or a < 0 for b, a in widths) else self
        grow = [(max(b, 0), max(a, 0)) for b, a in widths]
        out = Tensor(ir.pad(x.node, grow))
        if value == 0 or out.node is x.node:
            return out
        inside = Tensor(ir.pad(Tensor.ones(x.shape, x.dtype).node, grow))
        return inside.where(out, self._const_like(value))

    def shrink(self, bounds: Sequence[tuple[int, int] | None]) -> Tensor:
        full = [(0, s) if b is None else b for b, s in zip(bounds, self.shape, strict=True)]
        return Tensor(ir.shrink(self.node, full))

    def flip(self, axis: int | Sequence[int]) -> Tensor:
        return Tensor(ir.flip(self.node, self._axes(axis)))

    def __getitem__(self, index: Any) -> Tensor:
        """Basic indexing: ints, slices (any step), None and Ellipsis."""
        index = index if isinstance(index, tuple) else (index,)
        if Ellipsis in index:
            i = index.index(Ellipsis)
            fill = self.ndim - (len(index) - 1 - index.count(None))
            index = index[:i] + (slice(None),) * fill + index[i + 1:]
        x, axis, final = self, 0, []
        for item in index:
            if item is None:
                final.append(1)
                continue
            if axis >= x.ndim:
                raise ir.IRError(f"too many indices for shape {list(self.shape)}")
            size = x.shape[axis]
            if isinstance(item, (int, np.integer)):
                i = int(item) + size if item < 0 else int(item)
                if not 0 <= i < size:
                    raise ir.IRError(f"index {item} out of range for axis {axis} of size {size}")
                x = x._slice_axis(axis, i, i + 1, 1)
                x = x.reshape(x.shape[:axis] + x.shape[axis + 1:])
                continue
            if not isinstance(item, slice):
                raise ir.IRError(f"unsupported index {item!r}")
            start, stop, step = item.indices(size)
            x = x._slice_axis(axis, start, stop, step)
            final.append(x.shape[axis])
            axis += 1
        final += list(x.shape[axis:])
        return x.reshape(tuple(final)) if tuple(final) != x.shape else x

    def _slice_axis(self, axis: int, start: int, stop: int, step: int) -> Tensor:
        x = self
        if step < 0:
            x = x.flip(axis)
            size = x.shape[axis]
            start, stop, step = size - 1 - start, size - 1 - stop, -step
        count = max(0, -(-(stop - start) // step))
        if count == 0:
            raise ir.IRError("empty slices are not supported")
        bounds: list[tuple[int, int] | None] = [None] * x.ndim
        bounds[axis] = (start, min(start + count * step, x.shape[axis]))
        x = x.shrink(bounds)
        if step == 1:
            return x
        # take every step-th: pad to count*step, split, keep the first of each group
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, count * step - x.shape[axis])
        x = x.pad(widths)
        x = x.reshape(x.shape[:axis] + (count, step) + x.shape[axis + 1:])
        bounds = [None] * x.ndim
        bounds[axis + 1] = (0, 1)
        x = x.shrink(bounds)
        return x.reshape(x.shape[:axis + 1] + x.shape[axis + 2:])

    @staticmethod
    def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
        """Concatenate along `axis`: each part padded to full length, then summed."""
        if not tensors:
            raise ir.IRError("cat needs at least one tensor")
        dtype = max((t.dtype for t in tensors), key=_RANK.__getitem__)
        first = tensors[0]
        axis = axis % first.ndim
        for t in tensors:
            if t.ndim != first.ndim or any(a != b for i, (a, b) in
                                           enumerate(zip(t.shape, first.shape, strict=True))
                                           if i != axis):
                raise ir.IRError(f"cat: shapes {list(first.shape)} and {list(t.shape)} differ "
                                 f"outside axis {axis}")
        total = sum(t.shape[axis] for t in tensors)
        out, start = None, 0
        for t in tensors:
            widths = [(0, 0)] * first.ndim
            widths[axis] = (start, total - start - t.shape[axis])
            part = t.cast(dtype).pad(widths)
            out = part if out is None else out + part
            start += t.shape[axis]
        assert out is not None
        return out

    def repeat(self, reps: Sequence[int]) -> Tensor:
        """np.tile: the result's axis i is reps[i] copies of axis i."""
        reps = tuple(reps)
        x = self.reshape(tuple(d for s in self.shape for d in (1, s)))
        x = x.expand(tuple(d for r, s in zip(reps, self.shape, strict=True) for d in (r, s)))
        return x.reshape(tuple(r * s for r, s in zip(reps, self.shape, strict=True)))

    # Linear algebra and convolutions -------------------------------------------------------
    def _contract_operand(self, acc: str) -> Tensor:
        """int8 operands are widened *after* the movement ops (the matrix-unit pattern)."""
        return self.cast(acc) if self.dtype != acc else self

    def matmul(self, other: Tensor) -> Tensor:
        """numpy matmul semantics (1-D operands, batch broadcasting); int8 gives int32."""
        a, b = self, Tensor(other)
        if a.ndim == 0 or b.ndim == 0:
            raise ir.IRError("matmul needs at least 1-d operands")
        squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
        if squeeze_a:
            a = a.reshape((1, a.shape[0]))
        if squeeze_b:
            b = b.reshape((b.shape[0], 1))
        (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
        if k != k2:
            raise ir.IRError(f"matmul: shapes {list(self.shape)} and {list(b.shape)} do not "
                             f"agree on the inner dimension ({k} vs {k2})")
        batch = ir.broadcast_shape(a.shape[:-2], b.shape[:-2])
        acc = _acc_dtype(a.dtype, b.dtype)
        full = batch + (m, n, k)
        av = a.reshape(a.shape[:-2] + (m, 1, k)).expand(full)
        bv = b.transpose(-1, -2).reshape(b.shape[:-2] + (1, n, k)).expand(full)
        out = (av._contract_operand(acc) * bv._contract_operand(acc)).sum(-1)
        if squeeze_a:
            out = out.reshape(out.shape[:-2] + (n,))
        if squeeze_b:
            out = out.reshape(out.shape[:-1])
        return out

    def linear(self, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """x @ weight.T + bias, weight of shape (out, in) as torch stores it."""
        out = self.matmul(Tensor(weight).T)
        return out if bias is None else out + bias

    def pool_windows(self, kernel: Sequence[int], stride: Sequence[int],
                     dilation: Sequence[int]) -> Tensor:
        """Sliding windows over the trailing len(kernel) axes: (..., o1..on, k1..kn).

        tinygrad's construction (repeat, then shrink/reshape), which `compiler.view.fold`
        turns back into one strided View of the input: no im2col copy in the graph.
        """
        n = len(kernel)
        lead, spatial = self.shape[:-n], self.shape[-n:]
        outs = [(i - d * (k - 1) - 1) // s + 1
                for i, k, s, d in zip(spatial, kernel, stride, dilation, strict=True)]
        if any(o <= 0 for o in outs):
            raise ir.IRError(f"window {list(kernel)} (dilation {list(dilation)}) is larger than "
                             f"the input {list(spatial)}")
        noop = [None] * len(lead)
        reps = [math.ceil(k * (i + d) / i) for k, i, d in zip(kernel, spatial, dilation,
                                                                strict=True)]
        x = self.repeat([1] * len(lead) + reps)
        x = x.shrink(noop + [(0, k * (i + d)) for k, i, d in zip(kernel, spatial, dilation,
                                                                  strict=True)])
        x = x.reshape(lead + tuple(v for k, i, d in zip(kernel, spatial, dilation, strict=True)
                                   for v in (k, i + d)))
        # each (k, i+d) pair: keep o*s of the i+d columns (pad when the stride overshoots)
        widths = [(0, 0)] * len(lead)
        bounds: list[tuple[int, int] | None] = list(noop)
        for i, d, o, s in zip(spatial, dilation, outs, stride, strict=True):
            widths += [(0, 0), (0, max(0, o * s - (i + d)))]
            bounds += [None, (0, o * s)]
        x = x.pad(widths).shrink(bounds)
        x = x.reshape(lead + tuple(v for k, o, s in zip(kernel, outs, stride, strict=True)
                                   for v in (k, o, s)))
        x = x.shrink(noop + [b for k, o in zip(kernel, outs, strict=True)
                             for b in ((0, k), (0, o), (0, 1))])
        x = x.reshape(lead + tuple(v for k, o in zip(kernel, outs, strict=True) for v in (k, o)))
        nl = len(lead)
        order = list(range(nl)) + [nl + 2 * i + 1 for i in range(n)] + \
            [nl + 2 * i for i in range(n)]
        return x.permute(order)

    def conv2d(self, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
               padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
        """NCHW convolution, weight (Cout, Cin/groups, kh, kw); also 1-d/3-d by weight rank.

        padding: int, per-axis ints, or per-axis (before, after). int8 gives int32.
        """
        w = Tensor(weight)
        n = w.ndim - 2
        if self.ndim != n + 2:
            raise ir.IRError(f"conv: input {list(self.shape)} and weight {list(w.shape)} ranks "
                             "do not match")
        bs, cin = self.shape[:2]
        cout, cin_g = w.shape[:2]
        if cin % groups or cout % groups or cin // groups != cin_g:
            raise ir.IRError(f"conv: input has {cin} channels, weight expects {cin_g} per "
                             f"group x {groups} groups")
        kernel = w.shape[2:]
        x = self.pad([(0, 0), (0, 0)] + _pairs(padding, n))
        win = x.pool_windows(kernel, _tuple(stride, n), _tuple(dilation, n))
        outs = win.shape[2:2 + n]
        rcout = cout // groups
        acc = _acc_dtype(self.dtype, w.dtype)
        win = win.reshape((bs, groups, cin_g, 1) + outs + kernel)
        win = win.expand((bs, groups, cin_g, rcout) + outs + kernel)
        # (bs, g, rcout, o..., cin_g, k...)
        order = [0, 1, 3] + [4 + i for i in range(n)] + [2] + [4 + n + i for i in range(n)]
        win = win.permute(order)
        wv = w.reshape((1, groups, rcout) + (1,) * n + (cin_g,) + kernel)
        wv = wv.expand(win.shape)
        prod = win._contract_operand(acc) * wv._contract_operand(acc)
        out = prod.sum(tuple(range(-(n + 1), 0))).reshape((bs, cout) + outs)
        if bias is not None:
            out = out + Tensor(bias).reshape((1, cout) + (1,) * n)
        return out

    def max_pool2d(self, kernel: Any = 2, stride: Any = None, padding: Any = 0,
                   dilation: Any = 1, ceil_mode: bool = False) -> Tensor:
        n = 2 if isinstance(kernel, int) else len(kernel)
        k = _tuple(kernel, n)
        s = k if stride is None else _tuple(stride, n)
        d = _tuple(dilation, n)
        pads = self._ceil_pads(_pairs(padding, n), k, s, d, ceil_mode)
        low = float("-inf") if self.dtype == "float32" else _INT_LIMITS[self.dtype][0]
        x = self.pad([(0, 0)] * (self.ndim - n) + pads, value=low)
        return x.pool_windows(k, s, d).max(tuple(range(-n, 0)))

    def avg_pool2d(self, kernel: Any = 2, stride: Any = None, padding: Any = 0,
                   count_include_pad: bool = True, ceil_mode: bool = False) -> Tensor:
        n = 2 if isinstance(kernel, int) else len(kernel)
        k = _tuple(kernel, n)
        s = k if stride is None else _tuple(stride, n)
        d = (1,) * n
        given = _pairs(padding, n)
        pads = self._ceil_pads(given, k, s, d, ceil_mode)
        lead = [(0, 0)] * (self.ndim - n)
        x = self._f().pad(lead + pads)
        total = x.pool_windows(k, s, d).sum(tuple(range(-n, 0)))
        # count what each window covers (of the input, or of the input + explicit padding)
        area = self.shape[-n:]
        if count_include_pad:  # ceil-mode overhang never counts
            ones = Tensor(np.ones([a + b + c for a, (b, c) in zip(area, given, strict=True)],
                                  np.float32))
            ones = ones.pad([(0, p[1] - g[1]) for p, g in zip(pads, given, strict=True)])
        else:
            ones = Tensor(np.ones(area, np.float32)).pad(pads)
        counts = ones.pool_windows(k, s, d).sum(tuple(range(-n, 0)))
        counts_np = evaluate([counts.node], {})["0"]  # constant: folded right here
        return total * Tensor(np.float32(1) / counts_np)

    def _ceil_pads(self, pads: list[tuple[int, int]], k: Sequence[int], s: Sequence[int],
                   d: Sequence[int], ceil_mode: bool) -> list[tuple[int, int]]:
        if not ceil_mode:
            return pads
        out = []
        for (b, a), i, kk, ss, dd in zip(pads, self.shape[-len(k):], k, s, d, strict=True):
            span = i + b + a - dd * (kk - 1) - 1
            o = -(-span // ss) + 1
            if (o - 1) * ss >= i + b:  # the last window must start inside input or left pad
                o -= 1
            out.append((b, a + max(0, (o - 1) * ss + dd * (kk - 1) + 1 - (i + b + a))))
        return out

    def global_avg_pool(self) -> Tensor:
        return self.mean(tuple(range(2, self.ndim)), keepdim=True)


def _acc_dtype(a: str, b: str) -> str:
    """The contraction's dtype: int8 x int8 and int32 accumulate in int32; floats in float32."""
    return "float32" if "float32" in (a, b) else "int32"
