"""Int8 post-training quantisation: REQUANT parameters, the shape of the quantised graph
(int8 contractions, int32 bias, per-channel REQUANT, fused ReLU), bit-exact reproducibility,
and closeness to float on inputs outside the calibration set: a small CNN within 0.02 on
softmax probabilities; a scaled-down ResNet's logits and a transformer block's outputs
within 15% relative L2 error (random weights; 8 calibration inputs)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.ir import Op
from compiler.reference import requantize, run
from frontend.onnx_import import import_model
from frontend.onnx_models import resnet, small_cnn, transformer_block
from frontend.quantize import QuantizeError, quantize, requant_params
from frontend.tensor import Tensor


def batches(shape, n=4, name="input", seed=0):
    """Seeded per call, so results do not depend on which tests ran before (xdist)."""
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e4))
def test_requant_params_approximate_the_ratio(ratio):
    m, s = requant_params(np.array([ratio]))
    assert 0 <= s[0] <= 63 and 0 <= m[0] < 1 << 31
    assert abs(m[0] / 2.0 ** s[0] - ratio) <= ratio * 2.0 ** -30 + 2.0 ** -64
    x = np.array([12345, -12345], np.int32)
    got = requantize(x, m, s, 0, -256, 255, "int32")
    want = np.clip(np.floor(x.astype(np.float64) * ratio + 0.5), -256, 255)
    assert np.all(np.abs(got - want) <= 1)


def _cnn_graph():
    return import_model(small_cnn())


def test_quantised_cnn_structure():
    q = quantize(_cnn_graph(), batches((1, 3, 16, 16)))
    nodes = q.nodes()
    contractions = [n for n in nodes if ir.is_contraction(n)]
    # 4 convs, the Gemm, and the global average pool (a sum over a product with 1/count)
    assert len(contractions) == 6
    for c in contractions:
        assert c.dtype == "int32"
        for operand in c.srcs[0].srcs:
            assert operand.op is Op.CAST and operand.srcs[0].dtype == "int8"
    requants = [n for n in nodes if n.op is Op.REQUANT]
    assert any(r.arg.multiplier.size > 1 for r in requants)  # per channel
    assert any(r.arg.lo == 0 for r in requants)  # fused ReLU
    biases = [n for n in nodes if n.op is Op.ADD and n.dtype == "int32"
              and any(s.op is Op.CONST or s.op in ir.MOVEMENT_OPS for s in n.srcs)]
    assert biases  # bias added in int32 before requantisation
    float_ops = {n.op for n in nodes if n.dtype == "float32"} - ir.MOVEMENT_OPS
    # only the input quantisation, the output dequantisation and the softmax stay float
    assert float_ops <= {Op.INPUT, Op.CONST, Op.MUL, Op.CAST, Op.REDUCE_MAX, Op.SUB, Op.EXP2,
                         Op.REDUCE_SUM, Op.RECIP}


def test_quantised_cnn_is_reproducible_and_close_to_float():
    g = _cnn_graph()
    q = quantize(g, batches((1, 3, 16, 16), n=8))
    for feed in batches((1, 3, 16, 16), n=3, seed=1):
        a, b = run(q, feed)["probs"], run(q, feed)["probs"]
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, run(g, feed)["probs"], atol=0.02)


@pytest.mark.parametrize("method", ["maxabs", "percentile"])
def test_quantised_resnet_close_to_float(method):
    g = import_model(resnet((1, 1, 1, 1), width=8, image=32, classes=10))
    q = quantize(g, batches((1, 3, 32, 32), n=8), method=method)
    for feed in batches((1, 3, 32, 32), n=2, seed=1):
        f, i = run(g, feed)["logits"], run(q, feed)["logits"]
        # random weights, 17 requantisations deep, 8 calibration inputs
        assert rel_l2(i, f) <= 0.15


def test_quantised_transformer_close_to_float():
    g = import_model(transformer_block())
    q = quantize(g, batches((1, 8, 16), n=8))
    assert sum(ir.is_contraction(n) and n.dtype == "int32" for n in q.nodes()) >= 6
    feed = batches((1, 8, 16), n=1, seed=1)[0]
    f, i = run(g, feed)["output"], run(q, feed)["output"]
    assert rel_l2(i, f) <= 0.15


def test_tensor_graph_matmul_and_pooling():
    x = Tensor.input("x", (2, 4, 8, 8))
    rng = np.random.default_rng(5)
    w = Tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3)
    y = x.conv2d(w, padding=1).relu().max_pool2d(2).avg_pool2d(2).flatten(1)
    y = y @ Tensor(rng.standard_normal((24, 5)).astype(np.float32))
    g = y.graph()
    q = quantize(g, batches((2, 4, 8, 8), name="x"))
    assert any(n.op is Op.REDUCE_MAX and n.dtype == "int8" for n in q.nodes())
    feed = batches((2, 4, 8, 8), n=1, name="x", seed=1)[0]
    f, i = run(g, feed)["out"], run(q, feed)["out"]
    assert rel_l2(i, f) <= 0.05


def test_bad_options():
    g = _cnn_graph()
    with pytest.raises(QuantizeError, match="at least one"):
        quantize(g, [])
    with pytest.raises(QuantizeError, match="unknown calibration method"):
        quantize(g, batches((1, 3, 16, 16), n=1), method="kl")
    with pytest.raises(ir.IRError, match="expects"):
        quantize(g, batches((1, 3, 8, 8), n=1))


@pytest.mark.parametrize("backend,io", [("llvm", "float"), ("sim", "float"), ("sim", "int8")])
def test_quantised_resnet_is_bit_exact_on_other_backends(backend, io):
    """The quantised reference is the contract: other backends reproduce it bit for bit."""
    from compiler.backends import available_backends, load_plugins, run_backend

    load_plugins("frontend")
    if backend not in available_backends():
        pytest.skip(f"no {backend} backend registered")
    g = import_model(resnet((1, 1, 1, 1), width=8, image=32, classes=10))
    q = quantize(g, batches((1, 3, 32, 32), n=2), io=io)
    feed = batches((1, 3, 32, 32), n=1, seed=1)[0]
    if io == "int8":
        feed = {"input": np.clip(np.rint(feed["input"] / q.meta["input_scales"]["input"]),
                                 -128, 127).astype(np.int8)}
    np.testing.assert_array_equal(run_backend(backend, q, feed)["logits"],
                                  run(q, feed)["logits"])


def test_int8_io_graph_is_integer_end_to_end():
    g = import_model(resnet((1, 1, 1, 1), width=8, image=32, classes=10))
    q = quantize(g, batches((1, 3, 32, 32), n=8), io="int8")
    assert q.inputs["input"].dtype == "int8" and q.outputs["logits"].dtype == "int8"
    assert [n for n in q.nodes() if n.dtype == "float32"] == []
    s_in, s_out = q.meta["input_scales"]["input"], q.meta["output_scales"]["logits"]
    feed = batches((1, 3, 32, 32), n=1, seed=1)[0]
    x8 = np.clip(np.rint(feed["input"] / s_in), -128, 127).astype(np.int8)
    got = run(q, {"input": x8})["logits"].astype(np.float32) * s_out
    assert rel_l2(got, run(g, feed)["logits"]) <= 0.15
    with pytest.raises(QuantizeError, match="unknown io"):
        quantize(g, batches((1, 3, 32, 32), n=1), io="int4")
