"""Tensor-level ops (conv2d with stride/dilation/groups, pooling, softmax, layernorm, gelu,
concatenation, int8 matmul) realised on llvm and opencl against the numpy reference: the
views that sliding windows and pooling produce, through the same scheduled Kernels."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.backends import run_backend
from frontend.tensor import Tensor

RNG = np.random.default_rng(11)


def _opencl_available() -> bool:
    try:
        from compiler.opencl_runtime import list_devices

        return bool(list_devices())
    except Exception:
        return False


@pytest.fixture(params=["llvm", "opencl"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "opencl" and not _opencl_available():
        pytest.skip("no OpenCL device")
    return request.param


def f32(*shape: int) -> Tensor:
    return Tensor(RNG.standard_normal(shape).astype(np.float32))


def agree(backend: str, outputs: dict[str, Tensor]) -> None:
    graph = Tensor.to_graph(outputs)
    want = run_backend("numpy", graph, {})
    got = run_backend(backend, graph, {})
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype and g.shape == w.shape, name
        if w.dtype == np.float32:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_cnn_layers(backend: str) -> None:
    x = f32(2, 4, 9, 9)
    conv = x.conv2d(f32(6, 4, 3, 3), f32(6), stride=2, padding=1)
    dil = x.conv2d(f32(4, 2, 3, 3), padding=2, dilation=2, groups=2)
    agree(backend, {
        "conv": conv.relu(),
        "dilated_grouped": dil,
        "maxpool": x.max_pool2d(3, stride=2, padding=1),
        "avgpool": x.avg_pool2d(2),
        "mean": conv.mean((2, 3)),
    })


def test_transformer_pieces(backend: str) -> None:
    x, w = f32(3, 7, 16), f32(16, 16)
    h = (x @ w).gelu()
    agree(backend, {"softmax": x.softmax(-1), "layernorm": x.layernorm(-1), "gelu_mm": h,
                    "cat": Tensor.cat([x, h], axis=1), "sigmoid_tanh": x.sigmoid() * x.tanh()})


def test_int8_matmul_realises_bit_exact(backend: str) -> None:
    a = Tensor(RNG.integers(-128, 128, (9, 33)).astype(np.int8))
    b = Tensor(RNG.integers(-128, 128, (33, 10)).astype(np.int8))
    agree(backend, {"mm": a.cast("int32") @ b.cast("int32")})
