"""ONNX models built with onnx.helper and random weights, for tests, benchmarks and demos.

`resnet(...)` has ResNet-50's structure (conv/BN/ReLU bottlenecks with residual adds,
max pooling, global average pooling, a Gemm classifier: 53 convs, ~25.6 M parameters at
the defaults); `small_cnn()` is a tiny residual CNN; `transformer_block()` one pre-norm
encoder block (attention with softmax, layer norm, GELU MLP). All are deterministic in
`seed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OPSET = 17


class _Builder:
    def __init__(self, seed: int):
        import onnx

        self.onnx, self.h = onnx, onnx.helper
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def init(self, prefix: str, arr: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.name(op.lower() + "_")
        self.nodes.append(self.h.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True,
                bn: bool = True) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k)))
        y = self.node("Conv", [x, self.init("w", w.astype(np.float32))]
                      + ([] if bn else [self.init("b", self.vec(cout, 0.1))]),
                      kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        if bn:
            y = self.node("BatchNormalization", [
                y, self.init("gamma", 1 + self.vec(cout, 0.1)),
                self.init("beta", self.vec(cout, 0.1)),
                self.init("mean", self.vec(cout, 0.1)),
                self.init("var", (1 + np.abs(self.vec(cout, 0.2))).astype(np.float32))],
                epsilon=1e-5)
        return self.node("Relu", [y]) if relu else y

    def vec(self, n: int, scale: float) -> np.ndarray:
        return (self.rng.standard_normal(n) * scale).astype(np.float32)

    def model(self, inputs: list[Any], outputs: list[Any], name: str, opset: int = OPSET) -> Any:
        graph = self.h.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", opset)],
                                  producer_name="dozen")
        model.ir_version = 8
        return model


def resnet(blocks: Sequence[int] = (3, 4, 6, 3), width: int = 64, image: int = 224,
           classes: int = 1000, batch: int | str = 1, seed: int = 0) -> Any:
    """ResNet-50 v1.5 structure with random weights; smaller `blocks`/`width`/`image` scale it
    down for tests. Input "input" (batch, 3, image, image), output "logits"."""
    b = _Builder(seed)
    x = b.conv_bn("input", 3, width, 7, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, count in enumerate(blocks):
        mid = width * 2 ** stage
        cout = mid * 4
        for i in range(count):
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.conv_bn(x, cin, mid, 1)
            y = b.conv_bn(y, mid, mid, 3, stride=stride)
            y = b.conv_bn(y, mid, cout, 1, relu=False)
            short = x if i > 0 else b.conv_bn(x, cin, cout, 1, stride=stride, relu=False)
            x = b.node("Relu", [b.node("Add", [y, short])])
            cin = cout
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x], axis=1)
    w = (b.rng.standard_normal((classes, cin)) / np.sqrt(cin)).astype(np.float32)
    x = b.node("Gemm", [x, b.init("fc_w", w), b.init("fc_b", b.vec(classes, 0.1))], transB=1)
    b.nodes[-1].output[0] = "logits"
    h = b.h
    tp = b.onnx.TensorProto.FLOAT
    return b.model([h.make_tensor_value_info("input", tp, [batch, 3, image, image])],
                   [h.make_tensor_value_info("logits", tp, [batch, classes])], "resnet")


def small_cnn(image: int = 16, classes: int = 10, seed: int = 0) -> Any:
    """Conv/BN/ReLU, a residual block, max and average pooling, Gemm and Softmax."""
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 8, 3)
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    y = b.conv_bn(x, 8, 8, 3)
    y = b.conv_bn(y, 8, 8, 3, relu=False)
    x = b.node("Relu", [b.node("Add", [x, y])])
    x = b.conv_bn(x, 8, 16, 3, stride=2, bn=False)
    x = b.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x])
    w = (b.rng.standard_normal((16, classes)) / 4).astype(np.float32)
    x = b.node("Gemm", [x, b.init("fc_w", w), b.init("fc_b", b.vec(classes, 0.1))])
    x = b.node("Softmax", [x], axis=-1)
    b.nodes[-1].output[0] = "probs"
    h, tp = b.h, b.onnx.TensorProto.FLOAT
    return b.model([h.make_tensor_value_info("input", tp, [1, 3, image, image])],
                   [h.make_tensor_value_info("probs", tp, [1, classes])], "small_cnn")


def transformer_block(seq: int = 8, dim: int = 16, heads: int = 2, seed: int = 0) -> Any:
    """Pre-norm encoder block: LN -> multi-head attention -> residual -> LN -> GELU MLP."""
    b = _Builder(seed)
    hd = dim // heads

    def lin(x: str, din: int, dout: int) -> str:
        w = (b.rng.standard_normal((din, dout)) / np.sqrt(din)).astype(np.float32)
        return b.node("Add", [b.node("MatMul", [x, b.init("w", w)]),
                              b.init("b", b.vec(dout, 0.1))])

    def ln(x: str) -> str:
        return b.node("LayerNormalization", [x, b.init("g", 1 + b.vec(dim, 0.1)),
                                             b.init("beta", b.vec(dim, 0.1))], axis=-1,
                      epsilon=1e-5)

    def heads_of(x: str) -> str:
        shape = b.init("shape", np.array([1, seq, heads, hd], np.int64))
        return b.node("Transpose", [b.node("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    h0 = ln("input")
    q, k, v = (heads_of(lin(h0, dim, dim)) for _ in range(3))
    kt = b.node("Transpose", [k], perm=[0, 1, 3, 2])
    scores = b.node("Mul", [b.node("MatMul", [q, kt]),
                            b.init("scale", np.array(1 / np.sqrt(hd), np.float32))])
    att = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    att = b.node("Reshape", [b.node("Transpose", [att], perm=[0, 2, 1, 3]),
                             b.init("shape", np.array([1, seq, dim], np.int64))])
    x = b.node("Add", ["input", lin(att, dim, dim)])
    m = lin(ln(x), dim, 4 * dim)
    # GELU written out with Erf, as exporters do: 0.5 * x * (1 + erf(x / sqrt 2))
    e = b.node("Erf", [b.node("Div", [m, b.init("sqrt2", np.array(np.sqrt(2), np.float32))])])
    g = b.node("Mul", [b.node("Mul", [m, b.init("half", np.array(0.5, np.float32))]),
                       b.node("Add", [e, b.init("one", np.array(1, np.float32))])])
    out = b.node("Add", [x, lin(g, 4 * dim, dim)])
    b.nodes[-1].output[0] = "output"
    del out
    h, tp = b.h, b.onnx.TensorProto.FLOAT
    return b.model([h.make_tensor_value_info("input", tp, [1, seq, dim])],
                   [h.make_tensor_value_info("output", tp, [1, seq, dim])], "transformer")
