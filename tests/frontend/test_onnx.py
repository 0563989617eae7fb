"""ONNX import against onnxruntime: every supported op on its own (float32 within 1e-5
relative / 1e-5 absolute, unless stated), whole models (a residual CNN, a transformer
block, a scaled-down ResNet-50), BatchNormalization folding, and one-line errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from compiler.ir import Op
from frontend.onnx_import import OnnxError, import_model, load_onnx
from frontend.onnx_models import resnet, small_cnn, transformer_block
from frontend.tensor import Tensor

rng = np.random.default_rng(7)
F = TensorProto.FLOAT


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def model_of(op: str, inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray] | None = None,
             opset: int = 17, out_type: int = F, extra_nodes: list | None = None,
             **attrs) -> onnx.ModelProto:
    inits = inits or {}
    names = list(inputs) + list(inits)
    nodes = list(extra_nodes or []) + [helper.make_node(op, names, ["y"], name="the_node",
                                                        **attrs)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, F, a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info("y", out_type, None)],
        [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol=1e-5, atol=1e-5) -> None:
    want = ort_run(model, feeds)
    graph = import_model(model)
    got = Tensor.to_graph({k: Tensor(v) for k, v in graph.outputs.items()})
    from compiler.reference import run
    outs = run(got, feeds)
    for (name, value), ref in zip(outs.items(), want, strict=True):
        assert value.shape == ref.shape, (name, value.shape, ref.shape)
        np.testing.assert_allclose(value.astype(np.float64), ref.astype(np.float64), rtol=rtol,
                                   atol=atol)


X4 = {"x": randn(2, 4, 7, 7)}
CASES = {
    "conv": (lambda: model_of("Conv", X4, {"w": randn(6, 4, 3, 3), "b": randn(6)},
                              pads=[1, 0, 1, 2], strides=[2, 1])),
    "conv_dilated_grouped": (lambda: model_of("Conv", X4, {"w": randn(6, 2, 3, 3)},
                                              dilations=[2, 2], group=2)),
    "conv_same_upper": (lambda: model_of("Conv", X4, {"w": randn(3, 4, 2, 2)},
                                         auto_pad="SAME_UPPER", strides=[2, 2])),
    "conv1d": (lambda: model_of("Conv", {"x": randn(2, 3, 9)}, {"w": randn(4, 3, 3)},
                                pads=[1, 1])),
    "gemm": (lambda: model_of("Gemm", {"a": randn(4, 3)}, {"b": randn(5, 3), "c": randn(5)},
                              transB=1, alpha=0.5, beta=2.0)),
    "gemm_transA": (lambda: model_of("Gemm", {"a": randn(3, 4)}, {"b": randn(3, 5)},
                                     transA=1)),
    "matmul_batched": (lambda: model_of("MatMul", {"a": randn(2, 3, 4, 5)}, {"b": randn(5, 6)})),
    "add": (lambda: model_of("Add", {"a": randn(2, 3, 4)}, {"b": randn(3, 1)})),
    "sub": (lambda: model_of("Sub", {"a": randn(2, 3, 4), "b": randn(4)})),
    "mul": (lambda: model_of("Mul", {"a": randn(2, 1, 4), "b": randn(3, 1)})),
    "div": (lambda: model_of("Div", {"a": randn(2, 3)}, {"b": 1.5 + np.abs(randn(3))})),
    "sum": (lambda: model_of("Sum", {"a": randn(2, 3), "b": randn(3), "c": randn(2, 1)})),
    "relu": (lambda: model_of("Relu", {"x": randn(3, 5)})),
    "clip": (lambda: model_of("Clip", {"x": randn(3, 5)},
                              {"lo": np.array(-0.5, np.float32), "hi": np.array(0.3, np.float32)})),
    "sigmoid": (lambda: model_of("Sigmoid", {"x": randn(3, 5)})),
    "tanh": (lambda: model_of("Tanh", {"x": randn(3, 5)})),
    "softmax": (lambda: model_of("Softmax", {"x": randn(2, 3, 5)}, axis=1)),
    "softmax_opset11": (lambda: model_of("Softmax", {"x": randn(2, 3, 5)}, opset=11, axis=1)),
    "maxpool": (lambda: model_of("MaxPool", X4, kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 1, 1])),
    "maxpool_ceil": (lambda: model_of("MaxPool", X4, kernel_shape=[2, 2], strides=[2, 2],
                                      ceil_mode=1)),
    "avgpool": (lambda: model_of("AveragePool", X4, kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 1, 1])),
    "avgpool_include_pad": (lambda: model_of("AveragePool", X4, kernel_shape=[3, 3],
                                             pads=[1, 1, 1, 1], count_include_pad=1)),
    "global_avgpool": (lambda: model_of("GlobalAveragePool", X4)),
    "batchnorm": (lambda: model_of("BatchNormalization", X4, {
        "s": randn(4), "b": randn(4), "m": randn(4), "v": 1 + np.abs(randn(4))}, epsilon=1e-3)),
    "lrn": (lambda: model_of("LRN", X4, size=3, alpha=1e-3, beta=0.75, bias=2.0)),
    "dropout": (lambda: model_of("Dropout", {"x": randn(3, 4)})),
    "reshape": (lambda: model_of("Reshape", {"x": randn(2, 3, 4)},
                                 {"s": np.array([0, -1, 2], np.int64)})),
    "flatten": (lambda: model_of("Flatten", X4, axis=2)),
    "transpose": (lambda: model_of("Transpose", X4, perm=[0, 2, 3, 1])),
    "concat": (lambda: model_of("Concat", {"a": randn(2, 3), "b": randn(2, 1)},
                                {"c": randn(2, 2)}, axis=1)),
    "unsqueeze": (lambda: model_of("Unsqueeze", {"x": randn(3, 4)},
                                   {"axes": np.array([0, -1], np.int64)})),
    "squeeze": (lambda: model_of("Squeeze", {"x": randn(3, 1, 4, 1)},
                                 {"axes": np.array([1], np.int64)})),
    "pad": (lambda: model_of("Pad", {"x": randn(2, 3)}, {"p": np.array([1, 0, 0, 2], np.int64),
                                                         "v": np.array(1.5, np.float32)})),
    "identity": (lambda: model_of("Identity", {"x": randn(3)})),
    "erf": (lambda: model_of("Erf", {"x": randn(20)})),
    "gelu": (lambda: model_of("Gelu", {"x": randn(20)}, opset=20)),
    "gelu_tanh": (lambda: model_of("Gelu", {"x": randn(20)}, opset=20, approximate="tanh")),
    "layernorm": (lambda: model_of("LayerNormalization", {"x": randn(2, 3, 8)},
                                   {"g": randn(8), "b": randn(8)}, axis=-1)),
    "reducemean": (lambda: model_of("ReduceMean", X4, axes=[2, 3], keepdims=1)),
    "reducesum": (lambda: model_of("ReduceSum", X4, {"axes": np.array([1], np.int64)},
                                   keepdims=0)),
    "reducemax": (lambda: model_of("ReduceMax", X4, axes=[-1], keepdims=0)),
    "exp": (lambda: model_of("Exp", {"x": randn(10)})),
    "log": (lambda: model_of("Log", {"x": 0.1 + np.abs(randn(10))})),
    "sqrt": (lambda: model_of("Sqrt", {"x": np.abs(randn(10))})),
    "pow2": (lambda: model_of("Pow", {"x": randn(10)}, {"e": np.array(2, np.float32)})),
    "pow_half": (lambda: model_of("Pow", {"x": np.abs(randn(10))},
                                  {"e": np.array(0.5, np.float32)})),
    "slice": (lambda: model_of("Slice", X4, {"s": np.array([1, 6], np.int64),
                                             "e": np.array([3, -100], np.int64),
                                             "a": np.array([1, 3], np.int64),
                                             "st": np.array([1, -2], np.int64)})),
    "where": (lambda: model_of("Where", {"a": randn(3), "b": randn(3)},
                               extra_nodes=[helper.make_node("Greater", ["a", "b"], ["c"])]))
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op(case):
    model = CASES[case]()
    if case == "where":  # Where(a > b, a, b): rewire its inputs
        node = model.graph.node[-1]
        del node.input[:]
        node.input.extend(["c", "a", "b"])
    feeds = {i.name: a for i in model.graph.input
             for a in [_feed(model, i.name)] if a is not None}
    check(model, feeds, rtol=2e-5, atol=2e-5)


def _feed(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    inits = {i.name for i in model.graph.initializer}
    if name in inits:
        return None
    dims = [d.dim_value for d in model.graph.input[[i.name for i in model.graph.input]
                                                   .index(name)].type.tensor_type.shape.dim]
    return randn(*dims) + (1.5 if "log" in name else 0)


def test_cast_shape_constant_folding():
    """Shape -> Gather -> Concat -> Reshape, Constant, ConstantOfShape and Cast all fold."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["idx"], value=numpy_helper.from_array(
            np.array([0], np.int64))),
        helper.make_node("Gather", ["shape", "idx"], ["n"], axis=0),
        helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
        helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("ConstantOfShape", ["target_pos"], ["ones"],
                         value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Mul", ["flat", "ones"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["y"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(np.array([2, 12], np.int64),
                                                       "target_pos")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = randn(2, 3, 4) * 4
    want = ort_run(model, {"x": x})[0]
    g = import_model(model)
    from compiler.reference import run
    got = run(g, {"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    assert not any(n.op is Op.INPUT and n.arg != "x" for n in g.nodes())


@pytest.mark.parametrize("build,shape,tol", [
    (small_cnn, (1, 3, 16, 16), 1e-5),
    (transformer_block, (1, 8, 16), 2e-5),
    (lambda: resnet((1, 1, 1, 1), width=8, image=32, classes=10), (1, 3, 32, 32), 1e-4),
])
def test_models_match_onnxruntime(build, shape, tol):
    model = build()
    x = randn(*shape)
    check(model, {"input": x}, rtol=tol, atol=tol)


def test_batchnorm_after_conv_is_folded():
    model = small_cnn()
    graph = import_model(model)
    ops = [n.op for n in graph.nodes()]
    bns = sum(1 for n in model.graph.node if n.op_type == "BatchNormalization")
    assert bns == 3
    # folded: no per-channel scale after the convs; the MULs are the contractions (4 convs
    # + Gemm), softmax's exp scale and normalisation, and the two average poolings' scales
    assert ops.count(Op.MUL) == 9


def test_resnet50_imports(tmp_path):
    model = resnet()
    assert sum(1 for n in model.graph.node if n.op_type == "Conv") == 53
    path = tmp_path / "resnet50.onnx"
    onnx.save(model, str(path))
    graph = load_onnx(path)
    assert graph.outputs["logits"].shape == (1, 1000)
    assert graph.inputs["input"].shape == (1, 3, 224, 224)


def test_symbolic_batch_and_input_shapes(tmp_path):
    model = resnet((1, 1, 1, 1), width=4, image=32, classes=3, batch="N")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert load_onnx(path, batch=2).inputs["input"].shape == (2, 3, 32, 32)
    g = load_onnx(path, input_shapes={"input": (1, 3, 64, 64)})
    assert g.outputs["logits"].shape == (1, 3)


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf\xff\xff")
    with pytest.raises(OnnxError, match="not a valid ONNX model"):
        load_onnx(bad)
    with pytest.raises(OnnxError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(OnnxError, match=r"node 'the_node' \(NonZero\): unsupported ONNX op"):
        import_model(model_of("NonZero", {"x": randn(3)}))
    with pytest.raises(OnnxError, match=r"the_node.*\(Add\).*do not broadcast"):
        import_model(model_of("Add", {"a": randn(2, 3), "b": randn(4)}))
    with pytest.raises(OnnxError, match=r"\(MatMul\).*inner dimension"):
        import_model(model_of("MatMul", {"a": randn(2, 3), "b": randn(4, 2)}))
    with pytest.raises(OnnxError, match="must be a constant"):
        import_model(model_of("Reshape", {"a": randn(2, 3), "b": randn(2)}))


def test_corrupted_files_give_one_line_errors(tmp_path):
    """Truncated or bit-flipped models either import or fail with an InputError."""
    from isa.errors import InputError

    data = small_cnn().SerializeToString()
    fuzz = np.random.default_rng(11)
    path = tmp_path / "m.onnx"
    for trial in range(40):
        blob = bytearray(data)
        if trial % 2:
            blob = blob[: int(fuzz.integers(1, len(blob)))]
        else:
            for pos in fuzz.integers(0, len(blob), 4):
                blob[pos] ^= int(fuzz.integers(1, 256))
        path.write_bytes(bytes(blob))
        try:
            load_onnx(path)
        except InputError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=20, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_side=1, max_side=4),
       st.sampled_from(["Add", "Sub", "Mul", "Max", "Min"]))
def test_broadcasting_binary_ops_match_onnxruntime(shapes, op):
    a_shape, b_shape = shapes.input_shapes
    model = model_of(op, {"a": randn(*a_shape), "b": randn(*b_shape)})
    check(model, {"a": randn(*a_shape), "b": randn(*b_shape)})


@settings(max_examples=20, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), st.data(),
       st.sampled_from(["ReduceSum", "ReduceMax", "ReduceMean"]), st.booleans())
def test_reductions_match_onnxruntime(shape, data, op, keep):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1,
                              max_size=len(shape), unique_by=lambda a: a % len(shape)))
    x = randn(*shape)
    if op == "ReduceSum":  # axes became an input in opset 13
        model = model_of(op, {"x": x}, {"axes": np.array(axes, np.int64)}, keepdims=int(keep))
    else:
        model = model_of(op, {"x": x}, axes=axes, keepdims=int(keep))
    check(model, {"x": x})


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pooling_attribute_sweep(op):
    """kernel, stride, padding, ceil_mode, dilation / count_include_pad against onnxruntime."""
    import itertools

    ort.set_default_logger_severity(3)
    checked = 0
    for k, s, p, ceil, extra, size in itertools.product([2, 3], [1, 2, 3], [0, 1], [0, 1],
                                                        [1, 2], [7, 8]):
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=ceil)
        if op == "MaxPool":
            attrs["dilations"] = [extra, extra]
        else:
            attrs["count_include_pad"] = extra - 1
        x = randn(1, 2, size, size)
        model = model_of(op, {"x": x}, **attrs)
        want = ort_run(model, {"x": x})[0]
        from compiler.reference import run
        got = run(import_model(model), {"x": x})["y"]
        assert got.shape == want.shape, attrs
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str(attrs))
        checked += 1
    assert checked == 96


def test_conv_attribute_sweep():
    """kernel, stride, asymmetric pads, dilation, groups and auto_pad against onnxruntime."""
    import itertools

    from compiler.reference import run

    for k, s, pads, d, g, auto in itertools.product(
            [1, 3], [1, 2], [(0, 0, 0, 0), (1, 0, 2, 1)], [1, 2], [1, 2],
            ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]):
        attrs = dict(kernel_shape=[k, k], strides=[s, s], dilations=[d, d], group=g)
        if auto == "NOTSET":
            attrs["pads"] = list(pads)
        elif pads != (0, 0, 0, 0) or d != 1:
            continue
        else:
            attrs["auto_pad"] = auto
        x = randn(1, 4, 8, 7)
        model = model_of("Conv", {"x": x}, {"w": randn(6, 4 // g, k, k), "b": randn(6)}, **attrs)
        want = ort_run(model, {"x": x})[0]
        got = run(import_model(model), {"x": x})["y"]
        assert got.shape == want.shape, attrs
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(attrs))
