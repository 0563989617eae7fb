"""Int8 post-training quantisation of a float32 `compiler.ir.Graph`.

    from frontend.quantize import quantize
    qgraph = quantize(graph, [{"input": x1}, {"input": x2}], method="maxabs")

The result is a Graph in the same IR, with the same input and output names (float32 in,
float32 out), whose numpy reference result is what every backend must reproduce bit for
bit: everything between the first and the last op is integer except where noted below.

The scheme (symmetric, zero point 0 everywhere):
- **Weights**: every constant operand of a contraction (matmul, conv, Gemm) is quantised per
  output channel: s_w[c] = max|w[c, ...]| / 127, q = round(w / s_w) in [-127, 127].
  Where one weight element would feed channels of different scales, per tensor.
- **Activations**: one scale per tensor, s = A / 127, where A is the largest |x| seen over
  the calibration inputs (`method="maxabs"`) or the `percentile` of |x| (`"percentile"`).
- **Contractions** run as the int8 pattern REDUCE_SUM(MUL(CAST_int32(view(a_int8)),
  CAST_int32(view(w_int8)))) with an int32 result of scale s_a * s_w[c]. A bias that follows
  is added as int32 (round(b / (s_a s_w[c]))), ReLU runs on int32, and multiplying by a
  positive constant (average pooling, mean) only changes the scale.
- **Requantisation** from int32 to the next int8 activation is one REQUANT per channel with
  multiplier m and shift s such that m / 2^s ~ scale_in / scale_out (31 significant bits),
  exactly `isa.model.NUMERICS`; a ReLU right before it is fused by raising lo to 0.
- **Integer forms**: max/min, max pooling and REDUCE_MAX (monotonic), sums and residual adds
  (operands requantised to a common int8 scale, added in int32), movement ops (pad value 0
  is q = 0), WHERE.
- **No integer form** (exp/log/sigmoid/softmax/division, the product of two activations
  outside a contraction, ...): the operands are dequantised (CAST to float32 times the scale),
  the op runs in float32, and the next contraction quantises again (x / s, rounded to
  nearest even, clamped to [-128, 127]). Graph inputs are quantised the same way and outputs
  dequantised, each with a single float32 multiply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from compiler import ir
from compiler.ir import Graph, Node, Op, RequantArg
from compiler.reference import check_inputs, evaluate
from isa.errors import InputError

INT8_LO, INT8_HI = -128, 127
WEIGHT_MAX = 127


class QuantizeError(InputError):
    """Bad calibration data or a quantisation option that does not exist."""


@dataclass
class QValue:
    """A quantised stand-in for a float node: real value ~ node * scale.

    `scale` is None when `node` is itself float32 (the float domain); otherwise a float64
    array with one axis per node axis (size 1 where the scale does not vary)."""

    node: Node
    scale: np.ndarray | None

    @property
    def is_float(self) -> bool:
        return self.scale is None

    @property
    def scalar(self) -> bool:
        return self.scale is not None and self.scale.size == 1


Calibration = Iterable[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray]


def quantize(graph: Graph, calibration: Calibration, method: str = "maxabs",
             percentile: float = 99.99, io: str = "float") -> Graph:
    """The int8 version of float `graph`, calibrated on `calibration` (one input dict, or
    an iterable of them).

    io="float": float32 inputs and outputs, quantised and dequantised inside the graph.
    io="int8": int8 inputs and outputs (real = q * scale), so that a graph without ops of
    no integer form is integer from end to end (what the RTL runs);
    `graph.meta["input_scales"]` and `["output_scales"]` give the scales by name.
    """
    if method not in ("maxabs", "percentile"):
        raise QuantizeError(f"unknown calibration method {method!r} (maxabs, percentile)")
    if io not in ("float", "int8"):
        raise QuantizeError(f"unknown io {io!r} (float, int8)")
    batches = [calibration] if isinstance(calibration, Mapping) else list(calibration)
    if not batches:
        raise QuantizeError("quantisation needs at least one calibration input")
    ranges = calibrate(graph, batches, method, percentile)
    return _Quantizer(graph, ranges, io).run()


def calibrate(graph: Graph, batches: list[Mapping[str, np.ndarray]], method: str = "maxabs",
              percentile: float = 99.99) -> dict[int, float]:
    """Per non-movement float node (by id): the largest |x| (or its percentile) seen."""
    ranges: dict[int, float] = {}

    def observe(node: Node, value: np.ndarray) -> None:
        if node.dtype != "float32" or node.op in ir.MOVEMENT_OPS or node.op is Op.CONST:
            return
        v = np.asarray(value)
        if method == "maxabs" and v.size:
            hi, lo = float(np.max(v)), float(np.min(v))
            if math.isfinite(hi) and math.isfinite(lo):
                ranges[id(node)] = max(ranges.get(id(node), 0.0), hi, -lo)
                return
        a = np.abs(v.astype(np.float64))
        a = np.where(np.isfinite(a), a, 0.0)  # -inf pads of max pooling are not data
        if method == "percentile" and a.size > 1:
            flat = a.reshape(-1)
            if flat.size > 1 << 20:
                flat = flat[:: flat.size // (1 << 20) + 1]
            amax = float(np.percentile(flat, percentile))
        else:
            amax = float(np.max(a)) if a.size else 0.0
        if math.isfinite(amax):
            ranges[id(node)] = max(ranges.get(id(node), 0.0), amax)

    for batch in batches:
        evaluate(list(graph.outputs.values()), check_inputs(graph, batch), observe=observe)
    return ranges


def requant_params(ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier (int32) and shift (0..63) with m / 2^s ~ ratio, 31 significant bits."""
    ratio = np.asarray(ratio, np.float64).reshape(-1)
    frac, exp = np.frexp(ratio)  # ratio = frac * 2^exp, frac in [0.5, 1)
    mult = np.rint(frac * (1 << 31)).astype(np.int64)
    carry = mult == 1 << 31
    mult = np.where(carry, 1 << 30, mult)
    shift = 31 - exp + carry.astype(np.int64)
    if np.any(shift < 0):
        raise QuantizeError(f"requantisation ratio {float(ratio.max()):g} is too large")
    tiny = shift > 63  # ratio below 2^-32: keep as much as a shift of 63 allows
    mult = np.where(tiny, np.rint(np.where(tiny, ratio, 0.0) * 2.0 ** 63).astype(np.int64), mult)
    shift = np.minimum(shift, 63)
    return mult, shift


def _compact(arr: np.ndarray) -> np.ndarray:
    """Cut every axis along which `arr` does not vary down to size 1."""
    arr = np.asarray(arr)
    for axis in range(arr.ndim):
        if arr.shape[axis] > 1:
            first = np.take(arr, [0], axis=axis)
            if np.all(arr == first):
                arr = first
    return arr


def _scale_through(node: Node, scale: np.ndarray) -> np.ndarray:
    """The scale array of a movement node's result, given its source's."""
    if scale.size == 1:
        return scale.reshape((1,) * node.ndim)
    op, arg = node.op, node.arg
    if op is Op.PERMUTE:
        return np.transpose(scale, arg)
    if op is Op.EXPAND:
        return scale
    if op is Op.FLIP:
        return np.flip(scale, [a for a in arg if scale.shape[a] > 1])
    if op is Op.SHRINK:
        return scale[tuple(slice(s, e) if n > 1 else slice(None)
                           for (s, e), n in zip(arg, scale.shape, strict=True))]
    if op is Op.PAD:
        return np.pad(scale, [w if n > 1 else (0, 0) for w, n in zip(arg, scale.shape,
                                                                      strict=True)], mode="edge")
    full = np.broadcast_to(scale, node.srcs[0].shape).reshape(node.shape)
    return _compact(full)


class _Quantizer:
    def __init__(self, graph: Graph, ranges: dict[int, float], io: str = "float"):
        self.graph, self.ranges, self.io = graph, ranges, io
        self.order = graph.nodes()
        self.users: dict[int, int] = {}
        for n in self.order:
            for s in n.srcs:
                self.users[id(s)] = self.users.get(id(s), 0) + 1
        self.const = {id(n) for n in self.order if n.op is Op.CONST}
        for n in self.order:
            if n.srcs and all(id(s) in self.const for s in n.srcs):
                self.const.add(id(n))
        self.deferred = {id(n.srcs[0]) for n in self.order
                         if ir.is_contraction(n) and self.users[id(n.srcs[0])] == 1
                         and n.dtype == "float32"}
        self.memo: dict[int, QValue] = {}
        self.const_values: dict[int, np.ndarray] = {}

    # helpers -----------------------------------------------------------------------------------
    def amax(self, node: Node) -> float:
        while node.op in ir.MOVEMENT_OPS and id(node) not in self.ranges:
            node = node.srcs[0]
        if id(node) in self.const:
            return float(np.max(np.abs(self.const_value(node)), initial=0.0))
        return self.ranges.get(id(node), 0.0)

    def act_scale(self, node: Node) -> float:
        a = self.amax(node)
        return a / 127.0 if a > 0 else 1.0

    def const_value(self, node: Node) -> np.ndarray:
        if id(node) not in self.const_values:
            self.const_values[id(node)] = evaluate([node], {})["0"]
        return self.const_values[id(node)]

    def get(self, node: Node) -> QValue:
        """The QValue of `node` (movement nodes lazily: windows are rarely needed whole)."""
        if id(node) in self.memo:
            return self.memo[id(node)]
        if node.op not in ir.MOVEMENT_OPS:
            raise AssertionError(f"{node!r} used before it was quantised")
        src = self.get(node.srcs[0])
        new = Node(node.op, (src.node,), node.arg, node.shape, src.node.dtype)
        q = QValue(new, None if src.scale is None else _scale_through(node, src.scale))
        self.memo[id(node)] = q
        return q

    def dequantize(self, q: QValue) -> Node:
        if q.is_float:
            return q.node
        x = ir.unary(Op.CAST, q.node, "float32")
        assert q.scale is not None
        return ir.binary(Op.MUL, x, ir.const(q.scale.astype(np.float32)))

    def requant(self, q: QValue, target: float, relu: bool = False) -> Node:
        """int32 or int8 QValue -> int8 node of scalar scale `target` (one REQUANT)."""
        assert q.scale is not None
        x = q.node
        if x.op is Op.RELU and x.dtype == "int32":
            x, relu = x.srcs[0], True
        if x.dtype == "int8":
            if q.scalar and abs(float(q.scale.reshape(-1)[0]) - target) <= 1e-12 * target \
                    and not relu:
                return x
            x = ir.unary(Op.CAST, x, "int32")
        ratio = q.scale / target
        axes = [a for a, n in enumerate(ratio.shape) if n > 1]
        if len(axes) > 1:  # scales vary along two axes: go through float
            return self.quantize_float(self.dequantize(q), target)
        axis = axes[0] if axes else 0
        mult, shift = requant_params(ratio.reshape(-1))
        lo = 0 if relu else INT8_LO
        return ir.requant(x, RequantArg(mult, shift, zp=0, lo=lo, hi=INT8_HI, axis=axis))

    def quantize_float(self, x: Node, scale: float) -> Node:
        """float32 -> int8 in the graph: round(x / scale) clamped to [-128, 127]."""
        y = ir.binary(Op.MUL, x, ir.const(np.float32(1.0 / scale)))
        y = ir.unary(Op.CAST, y, "int32")
        y = ir.binary(Op.MAX, y, ir.const(np.int32(INT8_LO)))
        y = ir.binary(Op.MIN, y, ir.const(np.int32(INT8_HI)))
        return ir.unary(Op.CAST, y, "int8")

    def to_int8(self, node: Node, scale: float | None = None) -> tuple[Node, float]:
        """An int8 version of float node `node` (any domain) with a scalar scale: `scale`
        when given, else the value's own int8 scale or its calibrated one. Movement ops
        are replayed on the int8 base (pad value 0 is q = 0)."""
        if id(node) in self.const:
            value = self.const_value(node)
            if scale is None:
                amax = float(np.max(np.abs(value), initial=0.0))
                scale = amax / 127.0 if amax > 0 else 1.0
            q = np.clip(np.rint(value / scale), INT8_LO, INT8_HI)
            return ir.const(q.astype(np.int8), "int8"), scale
        base, chain = self._chain(node)
        q = self.get(base)
        if scale is None and q.scalar and q.node.dtype == "int8":
            assert q.scale is not None
            return self._replay(q.node, chain), float(q.scale.reshape(-1)[0])
        scale = self.act_scale(base) if scale is None else scale
        if q.is_float:
            return self._replay(self.quantize_float(q.node, scale), chain), scale
        return self._replay(self.requant(q, scale), chain), scale

    # the pass ------------------------------------------------------------------------------------
    def run(self) -> Graph:
        inputs, meta = dict(self.graph.inputs), {}
        if self.io == "int8":
            meta = {"input_scales": {}, "output_scales": {}}
            for name, node in self.graph.inputs.items():
                if node.dtype == "float32":
                    scale = self.act_scale(node)
                    inputs[name] = ir.input_(name, node.shape, "int8")
                    self.memo[id(node)] = QValue(inputs[name], np.full((1,) * node.ndim, scale))
                    meta["input_scales"][name] = scale
        for node in self.order:
            if id(node) in self.memo or id(node) in self.deferred or node.op in ir.MOVEMENT_OPS:
                continue
            self.memo[id(node)] = self.visit(node)
        outputs = {}
        for name, node in self.graph.outputs.items():
            q = self.get(node)
            if self.io == "int8" and node.dtype == "float32":
                outputs[name], meta["output_scales"][name] = self.to_int8(node)
                continue
            out = self.dequantize(q) if node.dtype == "float32" else q.node
            if out.dtype != node.dtype:
                out = ir.unary(Op.CAST, out, node.dtype)
            outputs[name] = out
        return Graph(inputs, outputs, meta)

    def visit(self, node: Node) -> QValue:
        if node.op in (Op.INPUT, Op.CONST) or id(node) in self.const or node.dtype != "float32":
            return QValue(self._float_copy(node), None)
        if ir.is_contraction(node) and id(node.srcs[0]) in self.deferred:
            return self.contraction(node)
        srcs = [self.get(s) for s in node.srcs]
        op = node.op
        if op is Op.RELU and not srcs[0].is_float:
            return QValue(ir.unary(Op.RELU, srcs[0].node), srcs[0].scale)
        if op in (Op.ADD, Op.SUB):
            return self.add(node, srcs)
        if op is Op.MUL:
            for i in (0, 1):
                other = node.srcs[1 - i]
                if not srcs[i].is_float and id(other) in self.const:
                    c = _compact(self.const_value(other))
                    if np.all(c > 0):
                        assert srcs[i].scale is not None
                        return QValue(srcs[i].node, _compact(srcs[i].scale * c))
        if op in (Op.MAX, Op.MIN, Op.REDUCE_MAX, Op.WHERE) and any(not s.is_float for s in srcs):
            return self.monotonic(node, srcs)
        if op is Op.REDUCE_SUM and not srcs[0].is_float:
            x, scale = self.to_int8(node.srcs[0])
            total = ir.reduce(Op.REDUCE_SUM, ir.unary(Op.CAST, x, "int32"), node.arg)
            return QValue(total, np.full((1,) * node.ndim, scale))
        # no integer form: run in float32 on dequantised operands
        new_srcs = tuple(self.dequantize(s) for s in srcs)
        return QValue(Node(op, new_srcs, node.arg, node.shape, node.dtype), None)

    def _float_copy(self, node: Node) -> Node:
        if not node.srcs:
            return node
        srcs = []
        for s in node.srcs:
            q = self.get(s)
            srcs.append(self.dequantize(q) if not q.is_float and s.dtype == "float32" else q.node)
        return Node(node.op, tuple(srcs), node.arg, node.shape, node.dtype)

    def contraction(self, node: Node) -> QValue:
        mul = node.srcs[0]
        a_node, b_node = mul.srcs
        if id(a_node) in self.const and id(b_node) not in self.const:
            a_node, b_node = b_node, a_node
        if id(a_node) in self.const and id(b_node) in self.const:  # fold it
            return QValue(ir.const(self.const_value(node)), None)
        qa, sa = self.operand(a_node)
        if id(b_node) in self.const:
            qb, sb = self.weight(b_node, node.arg)
        else:
            qb, sb = self.operand(b_node)
        prod = ir.binary(Op.MUL, ir.unary(Op.CAST, qa, "int32"), ir.unary(Op.CAST, qb, "int32"))
        acc = ir.reduce(Op.REDUCE_SUM, prod, node.arg)
        scale = _compact(np.broadcast_to(sa * sb, np.broadcast_shapes(sa.shape, sb.shape)))
        return QValue(acc, scale)

    def _chain(self, node: Node) -> tuple[Node, list[Node]]:
        chain = []
        while node.op in ir.MOVEMENT_OPS:
            chain.append(node)
            node = node.srcs[0]
        return node, chain[::-1]

    @staticmethod
    def _replay(base: Node, chain: list[Node]) -> Node:
        for step in chain:
            base = Node(step.op, (base,), step.arg, step.shape, base.dtype)
        return base

    def operand(self, node: Node) -> tuple[Node, np.ndarray]:
        """An activation operand: int8 at its base, then the same movement ops."""
        q, scale = self.to_int8(node)
        return q, np.full((1,) * node.ndim, scale)

    def weight(self, node: Node, axes: tuple[int, ...]) -> tuple[Node, np.ndarray]:
        """A constant operand: per output channel where the view allows, else per tensor."""
        base, chain = self._chain(node)
        w = np.asarray(self.const_value(base), np.float64)
        fake = ir.input_("w", base.shape)
        view_node = self._replay(fake, chain)
        from compiler.view import fold

        folded_base, view = fold(view_node)
        if folded_base is fake:
            # the view without its broadcast axes (they do not change which element is read)
            keep = [0 if st == 0 else n for n, st in zip(view.shape, view.strides, strict=True)]
            small = type(view)(tuple(1 if k == 0 else n for k, n in zip(keep, view.shape,
                                                                           strict=True)),
                               view.strides, view.offset,
                               None if view.mask is None else tuple(
                                   (0, 1) if k == 0 else m for k, m in zip(keep, view.mask,
                                                                           strict=True)))
            idx, valid = small.indices()
            vals = np.where(valid, np.abs(w.reshape(-1)[idx]), 0.0)
            amax = vals.max(axis=axes, keepdims=True) if axes else vals
            scale = np.where(amax > 0, amax / WEIGHT_MAX, 1.0)
            per_el = np.broadcast_to(scale, small.shape)
            hi = np.full(w.size, -np.inf)
            lo = np.full(w.size, np.inf)
            np.maximum.at(hi, idx[valid], per_el[valid])
            np.minimum.at(lo, idx[valid], per_el[valid])
            touched = np.isfinite(hi)
            if np.all(hi[touched] == lo[touched]):
                base_scale = np.where(touched, hi, 1.0).reshape(w.shape)
                q = np.clip(np.rint(w / base_scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
                return self._replay(ir.const(q, "int8"), chain), _compact(scale)
        amax = float(np.max(np.abs(w), initial=0.0))
        s = amax / WEIGHT_MAX if amax > 0 else 1.0
        q = np.clip(np.rint(w / s), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
        return self._replay(ir.const(q, "int8"), chain), np.full((1,) * node.ndim, s)

    def add(self, node: Node, srcs: list[QValue]) -> QValue:
        a, b = node.srcs
        qa, qb = srcs
        # int32 accumulator +/- a constant (bias): the constant joins the accumulator's scale
        for acc_i, const_node in ((0, b), (1, a)):
            acc = srcs[acc_i]
            if acc.is_float or acc.node.dtype != "int32" or id(const_node) not in self.const:
                continue
            assert acc.scale is not None
            c = np.asarray(self.const_value(const_node), np.float64)
            full = np.broadcast_to(c / acc.scale, node.shape)
            bias = _compact(np.clip(np.rint(full), -(1 << 31), (1 << 31) - 1).astype(np.int32))
            bias_node = ir.const(bias, "int32")
            if node.op is Op.SUB:
                args = (acc.node, bias_node) if acc_i == 0 else (bias_node, acc.node)
            else:
                args = (acc.node, bias_node)
            return QValue(ir.binary(node.op, *args), acc.scale)
        if qa.is_float and qb.is_float:
            return QValue(Node(node.op, (qa.node, qb.node), None, node.shape, "float32"), None)
        # two activations: both to int8 at one scale, added in int32
        scale = max(self.act_scale(a), self.act_scale(b))
        xa, _ = self.to_int8(a, scale)
        xb, _ = self.to_int8(b, scale)
        out = ir.binary(node.op, ir.unary(Op.CAST, xa, "int32"), ir.unary(Op.CAST, xb, "int32"))
        return QValue(out, np.full((1,) * node.ndim, scale))

    def monotonic(self, node: Node, srcs: list[QValue]) -> QValue:
        """MAX, MIN, REDUCE_MAX, WHERE: int8 operands at one common scale."""
        vals = list(node.srcs[1:]) if node.op is Op.WHERE else list(node.srcs)
        scale = max(self.act_scale(v) for v in vals if id(v) not in self.const) \
            if any(id(v) not in self.const for v in vals) else 1.0
        ints = [self.to_int8(v, scale)[0] for v in vals]
        if node.op is Op.WHERE:
            if id(node.srcs[0]) in self.const:  # a constant mask: int8 like the values
                mask = _compact(self.const_value(node.srcs[0]) != 0).astype(np.int8)
                cond = ir.const(mask, "int8")
            else:
                cond = self.get(node.srcs[0]).node
            out = ir.ternary(Op.WHERE, cond, ints[0], ints[1])
        elif node.op is Op.REDUCE_MAX:
            out = ir.reduce(Op.REDUCE_MAX, ints[0], node.arg)
        else:
            out = ir.binary(node.op, ints[0], ints[1])
        return QValue(out, np.full((1,) * node.ndim, scale))
