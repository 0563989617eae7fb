"""ONNX import: an .onnx model becomes a `compiler.ir.Graph` through the Tensor API.

    from frontend.onnx_import import load_onnx
    graph = load_onnx("model.onnx")                   # -> compiler.ir.Graph
    outputs = compiler.backends.run_backend("numpy", graph, {"input": x})

`load_onnx(path, input_shapes=None, batch=1)`: symbolic dimensions become `batch` (or what
`input_shapes={"name": shape}` says). `import_model(model_proto)` does the same for an
in-memory `onnx.ModelProto`. Graph inputs/outputs keep their ONNX names; int64 tensors
become int32 (shapes and indices only), bool becomes int32 (0/1).

Shapes are inferred op by op; anything computed only from constants (Shape, Gather on
shapes, Concat of shapes, ...) is folded to a constant here. BatchNormalization directly
after a Conv whose output nothing else reads is folded into the conv's weights and bias;
elsewhere it becomes a per-channel scale and shift. Dropout is the identity (inference).
Every failure is an `OnnxError` (exit code 2) of one line naming the node and op: a
malformed file, an unsupported op or attribute, a shape mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compiler import ir
from compiler.ir import Graph
from frontend.tensor import Tensor
from isa.errors import InputError


class OnnxError(InputError):
    """A model Dozen cannot import: malformed, unsupported op, or shapes that do not fit."""


def _onnx() -> Any:
    import onnx  # imported lazily: the CLI starts fast without it

    return onnx


# ONNX TensorProto data types we accept, to IR dtypes
_ELEM = {1: "float32", 3: "int8", 6: "int32", 7: "int32", 9: "int32", 10: "float32",
         11: "float32", 2: "int32", 5: "int32", 12: "int32"}
# 1 FLOAT, 2 UINT8, 3 INT8, 5 INT16, 6 INT32, 7 INT64, 9 BOOL, 10 FLOAT16, 11 DOUBLE, 12 UINT32


def load_onnx(path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None,
              batch: int = 1) -> Graph:
    """Read and import an .onnx file; a missing or malformed file is an OnnxError."""
    onnx = _onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise OnnxError(f"{path}: no such file") from None
    except Exception as exc:  # protobuf raises its own DecodeError, or a RuntimeWarning
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OnnxError(f"{path}: not a valid ONNX model ({first})") from None
    if not model.graph.node and not model.graph.output:
        raise OnnxError(f"{path}: not a valid ONNX model (no graph)")
    return import_model(model, input_shapes, batch)


def import_model(model: Any, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 batch: int = 1) -> Graph:
    return _Importer(model, dict(input_shapes or {}), batch).run()


class _Value:
    """A value in the importer: a Tensor, and its numpy data when it is a known constant."""

    __slots__ = ("tensor", "const")

    def __init__(self, tensor: Tensor | None, const: np.ndarray | None = None):
        self.tensor, self.const = tensor, const

    def as_tensor(self) -> Tensor:
        if self.tensor is None:
            assert self.const is not None
            arr = self.const
            if arr.dtype == np.int64 or arr.dtype == np.bool_ or arr.dtype.kind == "u":
                arr = arr.astype(np.int32)
            elif arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            self.tensor = Tensor(arr)
        return self.tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return self.tensor.shape if self.tensor is not None else tuple(self.const.shape)


class _Importer:
    def __init__(self, model: Any, input_shapes: dict[str, Sequence[int]], batch: int):
        self.model, self.graph = model, model.graph
        self.input_shapes, self.batch = input_shapes, batch
        self.env: dict[str, _Value] = {}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        self.node: Any = None

    # Helpers -------------------------------------------------------------------------------
    def fail(self, message: str) -> OnnxError:
        n = self.node
        where = f"node {n.name or '(unnamed)'!r} ({n.op_type}): " if n is not None else ""
        return OnnxError(where + message)

    def attrs(self) -> dict[str, Any]:
        onnx = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in self.node.attribute}

    def value(self, i: int) -> _Value | None:
        names = self.node.input
        if i >= len(names) or not names[i]:
            return None
        try:
            return self.env[names[i]]
        except KeyError:
            raise self.fail(f"input {names[i]!r} is not defined before use") from None

    def tensor(self, i: int) -> Tensor:
        v = self.value(i)
        if v is None:
            raise self.fail(f"input {i} is required")
        return v.as_tensor()

    def const(self, i: int, what: str) -> np.ndarray | None:
        v = self.value(i)
        if v is None:
            return None
        if v.const is None:
            raise self.fail(f"{what} (input {i}) must be a constant")
        return v.const

    # Driver ------------------------------------------------------------------------------------
    def run(self) -> Graph:
        onnx = _onnx()
        init_names = set()
        for init in self.graph.initializer:
            try:
                arr = onnx.numpy_helper.to_array(init)
            except Exception as exc:
                raise OnnxError(f"initializer {init.name!r} cannot be read ({exc})") from None
            self.env[init.name] = _Value(None, np.asarray(arr))
            init_names.add(init.name)
        inputs: dict[str, Tensor] = {}
        for vi in self.graph.input:
            if vi.name in init_names:
                continue
            shape, dtype = self._input_spec(vi)
            t = Tensor.input(vi.name, shape, dtype)
            inputs[vi.name] = t
            self.env[vi.name] = _Value(t)
        fold = self._bn_folds()
        for index, node in enumerate(self.graph.node):
            self.node = node
            if index in fold.skip:
                self.env[node.output[0]] = self.env[fold.skip[index]]
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise self.fail(f"unsupported ONNX op {node.op_type!r}"
                                + (f" in domain {node.domain!r}" if node.domain else ""))
            try:
                outs = handler(self, fold.convs.get(index))
            except OnnxError:
                raise
            except InputError as exc:
                raise self.fail(str(exc)) from None
            except (ValueError, IndexError, TypeError, KeyError, AssertionError,
                    AttributeError) as exc:
                raise self.fail(f"bad attributes or inputs ({exc})") from None
            outs = outs if isinstance(outs, list) else [outs]
            for name, out in zip(node.output, outs, strict=False):
                if name:
                    self.env[name] = out if isinstance(out, _Value) else _Value(out)
            if len(node.output) > len(outs) and any(node.output[len(outs):]):
                raise self.fail(f"output {len(outs)} ({node.output[len(outs)]!r}) is not "
                                "supported")
        self.node = None
        outputs = {}
        for vi in self.graph.output:
            if vi.name not in self.env:
                raise OnnxError(f"graph output {vi.name!r} is never computed")
            outputs[vi.name] = self.env[vi.name].as_tensor()
        graph = Tensor.to_graph(outputs)
        graph.inputs = {name: t.node for name, t in inputs.items()}
        return graph

    def _input_spec(self, vi: Any) -> tuple[tuple[int, ...], str]:
        tt = vi.type.tensor_type
        dtype = _ELEM.get(tt.elem_type)
        if dtype is None:
            raise OnnxError(f"graph input {vi.name!r}: unsupported element type {tt.elem_type}")
        if vi.name in self.input_shapes:
            return tuple(int(d) for d in self.input_shapes[vi.name]), dtype
        shape = []
        for d in tt.shape.dim:
            shape.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                         else self.batch)
        return tuple(shape), dtype

    def _bn_folds(self) -> _Folds:
        """Find BatchNormalization nodes that directly follow a single-use constant Conv."""
        folds = _Folds()
        nodes = list(self.graph.node)
        producers = {out: i for i, n in enumerate(nodes) for out in n.output}
        uses: dict[str, int] = {}
        for n in self.graph.node:
            for name in n.input:
                uses[name] = uses.get(name, 0) + 1
        graph_outputs = {o.name for o in self.graph.output}
        for bn_index, bn in enumerate(nodes):
            if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1 \
                    or not bn.input:
                continue
            conv_index = producers.get(bn.input[0])
            conv = None if conv_index is None or conv_index > bn_index else nodes[conv_index]
            if conv is None or conv.op_type != "Conv" or uses.get(bn.input[0], 0) != 1 \
                    or bn.input[0] in graph_outputs:
                continue
            folded = self._fold_bn(bn, conv)
            if folded is None:
                continue
            new_w, new_b = folded
            folds.convs[conv_index] = (new_w, new_b, bn.output[0])
            folds.skip[bn_index] = conv.output[0]
        return folds


    def _fold_bn(self, bn: Any, conv: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Conv weights and bias with the BatchNormalization applied, when all are constant
        and consistent (otherwise the two import separately and report their own errors)."""
        if len(bn.input) != 5 or len(conv.input) < 2:
            return None
        names = list(bn.input[1:5]) + [conv.input[1]]
        values = [self.env.get(name) for name in names]
        if any(v is None or v.const is None for v in values):
            return None
        gamma, beta, mean, var, w = (v.const.astype(np.float64) for v in values)  # type: ignore
        channels = w.shape[0] if w.ndim >= 3 else -1
        if any(p.shape != (channels,) for p in (gamma, beta, mean, var)):
            return None
        bias = np.zeros(channels)
        if len(conv.input) > 2 and conv.input[2]:
            b = self.env.get(conv.input[2])
            if b is None or b.const is None or b.const.shape != (channels,):
                return None
            bias = b.const.astype(np.float64)
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        with np.errstate(all="ignore"):
            scale = gamma / np.sqrt(var + eps)
        new_w = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        return new_w, ((bias - mean) * scale + beta).astype(np.float32)


class _Folds:
    """BatchNormalization folds, by node index: new conv weights, and BNs to skip."""

    def __init__(self) -> None:
        self.convs: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
        self.skip: dict[int, str] = {}


# Op handlers ----------------------------------------------------------------------------------
Handler = Callable[[_Importer, Any], Any]
_HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return deco


def _all_const(imp: _Importer) -> list[np.ndarray] | None:
    vals = [imp.value(i) for i in range(len(imp.node.input))]
    if all(v is not None and v.const is not None for v in vals):
        return [v.const for v in vals]  # type: ignore[union-attr]
    return None


def _spatial_pads(imp: _Importer, attrs: dict[str, Any], spatial: Sequence[int],
                  kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> list[tuple[int, int]]:
    n = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-i // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - i)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * n
    if auto != "NOTSET":
        raise imp.fail(f"unsupported auto_pad {auto!r}")
    p = list(attrs.get("pads", [0] * (2 * n)))
    return [(p[i], p[i + n]) for i in range(n)]


@handles("Conv")
def _conv(imp: _Importer, fold: Any) -> Any:
    a = imp.attrs()
    x = imp.tensor(0)
    if fold is not None:
        w_np, b_np, _ = fold
        w, b = Tensor(w_np), Tensor(b_np)
    else:
        w = imp.tensor(1)
        bv = imp.value(2)
        b = bv.as_tensor() if bv is not None else None
    n = w.ndim - 2
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    if kernel != w.shape[2:]:
        raise imp.fail(f"kernel_shape {list(kernel)} does not match weight {list(w.shape)}")
    strides = tuple(a.get("strides", [1] * n))
    dil = tuple(a.get("dilations", [1] * n))
    pads = _spatial_pads(imp, a, x.shape[2:], kernel, strides, dil)
    return x.conv2d(w, b, stride=strides, padding=pads, dilation=dil, groups=a.get("group", 1))


@handles("Gemm")
def _gemm(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    x, w = imp.tensor(0), imp.tensor(1)
    if a.get("transA", 0):
        x = x.T
    if a.get("transB", 0):
        w = w.T
    y = x @ w
    if a.get("alpha", 1.0) != 1.0:
        y = y * a["alpha"]
    c = imp.value(2)
    if c is not None:
        ct = c.as_tensor()
        y = y + (ct * a["beta"] if a.get("beta", 1.0) != 1.0 else ct)
    return y


@handles("MatMul")
def _matmul(imp: _Importer, _: Any) -> Any:
    return imp.tensor(0) @ imp.tensor(1)


def _elementwise(fn: Callable[[Any, Any], Any], tfn: Callable[[Tensor, Tensor], Tensor]) -> Handler:
    def handler(imp: _Importer, _: Any) -> Any:
        consts = _all_const(imp)
        if consts is not None and len(consts) == 2:
            return _Value(None, np.asarray(fn(consts[0], consts[1])))
        return tfn(imp.tensor(0), imp.tensor(1))
    return handler


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return a / b
    return np.trunc(a / b).astype(np.result_type(a, b))


def _tdiv(a: Tensor, b: Tensor) -> Tensor:
    if a.dtype == "float32" or b.dtype == "float32":
        return a / b
    return a.idiv(b)


_HANDLERS["Add"] = _elementwise(np.add, lambda a, b: a + b)
_HANDLERS["Sub"] = _elementwise(np.subtract, lambda a, b: a - b)
_HANDLERS["Mul"] = _elementwise(np.multiply, lambda a, b: a * b)
_HANDLERS["Div"] = _elementwise(_int_div, _tdiv)
_HANDLERS["Less"] = _elementwise(np.less, lambda a, b: a < b)
_HANDLERS["Greater"] = _elementwise(np.greater, lambda a, b: a > b)
_HANDLERS["Equal"] = _elementwise(np.equal, lambda a, b: a.eq(b))


@handles("Sum", "Max", "Min", "Mean")
def _variadic(imp: _Importer, _: Any) -> Any:
    ts = [imp.tensor(i) for i in range(len(imp.node.input))]
    out = ts[0]
    for t in ts[1:]:
        out = {"Sum": out.__add__, "Mean": out.__add__, "Max": out.maximum,
               "Min": out.minimum}[imp.node.op_type](t)
    return out * (1.0 / len(ts)) if imp.node.op_type == "Mean" else out


_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Relu": Tensor.relu, "Sigmoid": Tensor.sigmoid, "Tanh": Tensor.tanh, "Exp": Tensor.exp,
    "Log": Tensor.log, "Sqrt": Tensor.sqrt, "Neg": lambda t: -t, "Abs": Tensor.abs,
    "Reciprocal": Tensor.reciprocal, "Erf": Tensor.erf, "Sin": Tensor.sin, "Cos": Tensor.cos,
    "Softplus": lambda t: (t.exp() + 1).log(),
}


@handles(*_UNARY)
def _unary(imp: _Importer, _: Any) -> Any:
    return _UNARY[imp.node.op_type](imp.tensor(0))


@handles("Identity", "Dropout")
def _identity(imp: _Importer, _: Any) -> Any:
    if imp.node.op_type == "Dropout" and len(imp.node.output) > 1 and imp.node.output[1]:
        raise imp.fail("the mask output of Dropout is not supported")
    return imp.value(0)


@handles("LeakyRelu")
def _leaky(imp: _Importer, _: Any) -> Any:
    return imp.tensor(0).leaky_relu(imp.attrs().get("alpha", 0.01))


@handles("HardSigmoid")
def _hard_sigmoid(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    return (imp.tensor(0) * a.get("alpha", 0.2) + a.get("beta", 0.5)).clip(0.0, 1.0)


@handles("Gelu")
def _gelu(imp: _Importer, _: Any) -> Any:
    approx = imp.attrs().get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return imp.tensor(0).gelu(approx)


@handles("Clip")
def _clip(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    lo, hi = a.get("min"), a.get("max")
    if imp.opset >= 11:
        lo_c, hi_c = imp.const(1, "min"), imp.const(2, "max")
        lo = None if lo_c is None else float(lo_c)
        hi = None if hi_c is None else float(hi_c)
    return imp.tensor(0).clip(lo, hi)


def _softmax_axis(imp: _Importer, x: Tensor) -> tuple[Tensor, int, tuple[int, ...] | None]:
    axis = imp.attrs().get("axis", -1 if imp.opset >= 13 else 1)
    if imp.opset >= 13:
        return x, axis, None
    axis %= x.ndim  # older opsets: softmax over the flattened trailing axes
    return x.reshape((math.prod(x.shape[:axis]), -1)), 1, x.shape


@handles("Softmax", "LogSoftmax")
def _softmax(imp: _Importer, _: Any) -> Any:
    x, axis, restore = _softmax_axis(imp, imp.tensor(0))
    y = x.softmax(axis) if imp.node.op_type == "Softmax" else x.log_softmax(axis)
    return y if restore is None else y.reshape(restore)


def _pool_args(imp: _Importer, x: Tensor) -> tuple[tuple[int, ...], tuple[int, ...],
                                                   tuple[int, ...], list[tuple[int, int]],
                                                   dict[str, Any]]:
    a = imp.attrs()
    kernel = tuple(a["kernel_shape"])
    n = len(kernel)
    strides = tuple(a.get("strides", [1] * n))
    dil = tuple(a.get("dilations", [1] * n))
    pads = _spatial_pads(imp, a, x.shape[2:], kernel, strides, dil)
    return kernel, strides, dil, pads, a


@handles("MaxPool")
def _maxpool(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    kernel, strides, dil, pads, a = _pool_args(imp, x)
    if len(imp.node.output) > 1 and imp.node.output[1]:
        raise imp.fail("the Indices output of MaxPool is not supported")
    return x.max_pool2d(kernel, strides, pads, dil, bool(a.get("ceil_mode", 0)))


@handles("AveragePool")
def _avgpool(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    kernel, strides, dil, pads, a = _pool_args(imp, x)
    if any(d != 1 for d in dil):
        raise imp.fail("dilated AveragePool is not supported")
    return x.avg_pool2d(kernel, strides, pads, bool(a.get("count_include_pad", 0)),
                        bool(a.get("ceil_mode", 0)))


@handles("GlobalAveragePool")
def _gap(imp: _Importer, _: Any) -> Any:
    return imp.tensor(0).global_avg_pool()


@handles("GlobalMaxPool")
def _gmp(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    return x.max(tuple(range(2, x.ndim)), keepdim=True)


@handles("BatchNormalization")
def _batchnorm(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    params = [imp.const(i, name) for i, name in
              enumerate(("scale", "bias", "mean", "var"), start=1)]
    if any(p is None for p in params):
        raise imp.fail("BatchNormalization needs scale, bias, mean and var")
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
    eps = imp.attrs().get("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * Tensor(scale.astype(np.float32).reshape(shape)) + \
        Tensor(shift.astype(np.float32).reshape(shape))


@handles("LRN")
def _lrn(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    x = imp.tensor(0)
    sq = (x * x).permute([0] + list(range(2, x.ndim)) + [1])  # channels last
    lead = [(0, 0)] * (x.ndim - 1)
    sq = sq.pad(lead + [((size - 1) // 2, size - 1 - (size - 1) // 2)])
    window = sq.pool_windows((size,), (1,), (1,)).sum(-1)
    window = window.permute([0, x.ndim - 1] + list(range(1, x.ndim - 1)))
    return x * (window * (alpha / size) + bias).pow(-beta)


@handles("LayerNormalization")
def _layernorm(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    x = imp.tensor(0)
    axis = a.get("axis", -1) % x.ndim
    scale = imp.value(1)
    bias = imp.value(2)
    return x.layernorm(tuple(range(axis, x.ndim)), a.get("epsilon", 1e-5),
                       None if scale is None else scale.as_tensor(),
                       None if bias is None else bias.as_tensor())


def _reduce_axes(imp: _Importer, ndim: int) -> tuple[int, ...] | None:
    a = imp.attrs()
    axes = a.get("axes")
    if axes is None and len(imp.node.input) > 1:
        c = imp.const(1, "axes")
        axes = None if c is None else [int(v) for v in c.reshape(-1)]
    if not axes:
        return () if a.get("noop_with_empty_axes", 0) else None
    return tuple(int(v) % ndim for v in axes)


@handles("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare")
def _reduce(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    axes = _reduce_axes(imp, x.ndim)
    if axes == ():
        return x
    keep = bool(imp.attrs().get("keepdims", 1))
    op = imp.node.op_type
    if op == "ReduceSumSquare":
        return (x * x).sum(axes, keepdim=keep)
    return getattr(x, {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max",
                       "ReduceMin": "min"}[op])(axes, keepdim=keep)


@handles("Pow")
def _pow(imp: _Importer, _: Any) -> Any:
    e = imp.const(1, "exponent")
    if e is None or e.size != 1:
        raise imp.fail("Pow needs a scalar constant exponent")
    return imp.tensor(0).pow(float(e.reshape(-1)[0]))


@handles("Cast")
def _cast(imp: _Importer, _: Any) -> Any:
    to = imp.attrs()["to"]
    v = imp.value(0)
    np_types = {1: np.float32, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}
    if v is not None and v.const is not None and to in np_types:
        return _Value(None, v.const.astype(np_types[to]))
    if to not in _ELEM:
        raise imp.fail(f"Cast to element type {to} is not supported")
    return imp.tensor(0).trunc_cast(_ELEM[to])


@handles("Shape")
def _shape(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    a = imp.attrs()
    shape = np.array(v.shape, np.int64)
    return _Value(None, shape[a.get("start", 0):a.get("end", len(shape))])


@handles("Size")
def _size(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    return _Value(None, np.array(math.prod(v.shape), np.int64))


@handles("Constant")
def _constant(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    onnx = _onnx()
    if "value" in a:
        return _Value(None, onnx.numpy_helper.to_array(a["value"]))
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return _Value(None, np.array(a[key], dtype))
    raise imp.fail(f"unsupported Constant attributes {sorted(a)}")


@handles("ConstantOfShape")
def _constant_of_shape(imp: _Importer, _: Any) -> Any:
    shape = imp.const(0, "shape")
    a = imp.attrs()
    value = _onnx().numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    full = np.full(tuple(int(s) for s in shape.reshape(-1)), value.reshape(-1)[0],  # type: ignore
                   value.dtype)
    return _Value(None, full)


@handles("Reshape")
def _reshape(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    target = [int(s) for s in imp.const(1, "shape").reshape(-1)]  # type: ignore[union-attr]
    if not imp.attrs().get("allowzero", 0):
        target = [v.shape[i] if s == 0 else s for i, s in enumerate(target)]
    if v.const is not None and v.tensor is None:
        return _Value(None, v.const.reshape(target))
    return v.as_tensor().reshape(target)


@handles("Flatten")
def _flatten(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    axis = imp.attrs().get("axis", 1) % (x.ndim + 1) if x.ndim else 0
    return x.reshape((math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@handles("Transpose")
def _transpose(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    perm = imp.attrs().get("perm", list(reversed(range(len(v.shape)))))
    if v.const is not None and v.tensor is None:
        return _Value(None, np.transpose(v.const, perm))
    return v.as_tensor().permute(perm)


@handles("Concat")
def _concat(imp: _Importer, _: Any) -> Any:
    axis = imp.attrs()["axis"]
    consts = _all_const(imp)
    if consts is not None:
        return _Value(None, np.concatenate(consts, axis))
    return Tensor.cat([imp.tensor(i) for i in range(len(imp.node.input))], axis)


def _axes_arg(imp: _Importer) -> list[int] | None:
    axes = imp.attrs().get("axes")
    if axes is None and len(imp.node.input) > 1:
        c = imp.const(1, "axes")
        axes = None if c is None else [int(a) for a in c.reshape(-1)]
    return None if axes is None else list(axes)


@handles("Unsqueeze")
def _unsqueeze(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    axes = _axes_arg(imp)
    if axes is None:
        raise imp.fail("Unsqueeze needs axes")
    shape = list(v.shape)
    out_rank = len(shape) + len(axes)
    for a in sorted(a % out_rank for a in axes):
        shape.insert(a, 1)
    if v.const is not None and v.tensor is None:
        return _Value(None, v.const.reshape(shape))
    return v.as_tensor().reshape(shape)


@handles("Squeeze")
def _squeeze(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    axes = _axes_arg(imp)
    rank = len(v.shape)
    drop = {i for i, s in enumerate(v.shape) if s == 1} if axes is None else \
        {a % rank for a in axes}
    if any(v.shape[a] != 1 for a in drop):
        raise imp.fail(f"cannot squeeze axes {sorted(drop)} of shape {list(v.shape)}")
    shape = [s for i, s in enumerate(v.shape) if i not in drop]
    if v.const is not None and v.tensor is None:
        return _Value(None, v.const.reshape(shape))
    return v.as_tensor().reshape(shape)


@handles("Pad")
def _pad(imp: _Importer, _: Any) -> Any:
    a = imp.attrs()
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise imp.fail(f"Pad mode {mode!r} is not supported (only constant)")
    x = imp.tensor(0)
    if imp.opset >= 11:
        pads = [int(p) for p in imp.const(1, "pads").reshape(-1)]  # type: ignore[union-attr]
        cv = imp.const(2, "constant_value")
        value = 0.0 if cv is None or cv.size == 0 else float(cv.reshape(-1)[0])
        axes = imp.const(3, "axes")
    else:
        pads, value, axes = list(a["pads"]), a.get("value", 0.0), None
    axes_l = list(range(x.ndim)) if axes is None else [int(v) % x.ndim for v in axes.reshape(-1)]
    n = len(axes_l)
    widths = [(0, 0)] * x.ndim
    for i, ax in enumerate(axes_l):
        widths[ax] = (pads[i], pads[i + n])
    return x.pad(widths, value)


@handles("Gather")
def _gather(imp: _Importer, _: Any) -> Any:
    axis = imp.attrs().get("axis", 0)
    consts = _all_const(imp)
    if consts is not None:
        return _Value(None, np.take(consts[0], consts[1], axis=axis))
    idx = imp.const(1, "indices")
    x = imp.tensor(0)
    axis %= x.ndim
    assert idx is not None
    flat = [int(i) % x.shape[axis] for i in idx.reshape(-1)]
    parts = [x.shrink([None] * axis + [(i, i + 1)] + [None] * (x.ndim - axis - 1))
             for i in flat]
    out = parts[0] if len(parts) == 1 else Tensor.cat(parts, axis)
    return out.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


@handles("Slice")
def _slice(imp: _Importer, _: Any) -> Any:
    v = imp.value(0)
    assert v is not None
    starts = [int(s) for s in imp.const(1, "starts").reshape(-1)]  # type: ignore[union-attr]
    ends = [int(s) for s in imp.const(2, "ends").reshape(-1)]  # type: ignore[union-attr]
    axes_c, steps_c = imp.const(3, "axes"), imp.const(4, "steps")
    rank = len(v.shape)
    axes = list(range(len(starts))) if axes_c is None else [int(a) % rank for a in axes_c]
    steps = [1] * len(starts) if steps_c is None else [int(s) for s in steps_c]
    index: list[Any] = [slice(None)] * rank
    for ax, st, en, sp in zip(axes, starts, ends, steps, strict=True):
        big = 1 << 62
        index[ax] = slice(max(min(st, big), -big), max(min(en, big), -big), sp)
    if v.const is not None and v.tensor is None:
        return _Value(None, v.const[tuple(index)])
    return v.as_tensor()[tuple(index)]


@handles("Expand")
def _expand(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    shape = [int(s) for s in imp.const(1, "shape").reshape(-1)]  # type: ignore[union-attr]
    target = ir.broadcast_shape(x.shape, shape)
    return x.expand(target)


@handles("Where")
def _where(imp: _Importer, _: Any) -> Any:
    return imp.tensor(0).where(imp.tensor(1), imp.tensor(2))


@handles("Split")
def _split(imp: _Importer, _: Any) -> Any:
    x = imp.tensor(0)
    a = imp.attrs()
    axis = a.get("axis", 0) % x.ndim
    sizes = a.get("split")
    if sizes is None and len(imp.node.input) > 1 and imp.node.input[1]:
        sizes = [int(s) for s in imp.const(1, "split").reshape(-1)]  # type: ignore[union-attr]
    if sizes is None:
        n = len(imp.node.output)
        sizes = [-(-x.shape[axis] // n)] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    outs, start = [], 0
    for s in sizes:
        outs.append(x.shrink([None] * axis + [(start, start + s)] + [None] * (x.ndim - axis - 1)))
        start += s
    return outs


SUPPORTED_OPS = tuple(sorted(_HANDLERS))  # every ONNX op type `import_model` understands
