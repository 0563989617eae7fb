"""Stride-1 convolutions with output pixels streamed through the matrix array
(`compiler.isa_conv_pixels`), bit-exact against the reference on the tiny and default
chips: kernel sizes 3 and 5, narrow and wide biases, REQUANT with and without ReLU, an
int32 output with no REQUANT, and images whose row blocks end part-way. The zero-padding
copy before each is skipped: the pixel-major copy reads the unpadded image."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

import compiler.isa_contraction as contraction
from compiler import ir
from compiler.ir import Op
from frontend.benchmarks._nets import conv2d, conv_layer

CASES = {  # config: [(cin, h, cout, k, bias_range)]
    "tiny": [(4, 20, 8, 3, 50), (8, 22, 4, 3, 5000), (4, 21, 4, 5, 50)],
    "default": [(16, 20, 32, 3, 50), (32, 29, 16, 3, 5000), (16, 23, 48, 5, 300)],
}


@pytest.fixture
def pixel_calls(monkeypatch):
    calls = []
    real = contraction.emit_pixel_conv

    def spy(*args, **kwargs):
        calls.append(args[8] if len(args) > 8 else kwargs.get("pad"))  # the unpadded source
        return real(*args, **kwargs)

    monkeypatch.setattr(contraction, "emit_pixel_conv", spy)
    return calls


@pytest.mark.parametrize("cfg, case", [(c, x) for c, xs in CASES.items() for x in xs])
def test_pixel_streamed_convs_match(cfg, case, pixel_calls) -> None:
    cin, h, cout, k, bias_range = case
    graph, xin = conv_layer(cin, h, cout, k, 1, np.random.default_rng(cin * h), bias_range)
    assert_matches(graph, {"x": xin}, cfg)
    assert pixel_calls, "the pixel-streamed path was not taken"
    assert pixel_calls[0] is not None, "the padding copy was not skipped"


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_pixel_streamed_conv_without_requant(cfg, pixel_calls) -> None:
    n = 4 if cfg == "tiny" else 16
    rng = np.random.default_rng(1)
    x = ir.input_("x", (1, n, 20, 20), "int8")
    w = ir.const(rng.integers(-64, 64, (2 * n, n, 3, 3)).astype(np.int8))
    bias = ir.const(rng.integers(-9999, 9999, (1, 2 * n, 1, 1)).astype(np.int32))
    y = ir.binary(Op.ADD, conv2d(x, w, 1, 1), bias)
    graph = ir.Graph({"x": x}, {"y": y})
    assert_matches(graph, {"x": rng.integers(-128, 128, (1, n, 20, 20)).astype(np.int8)}, cfg)
    assert pixel_calls


STRIDED = {  # config: [(cin, h, cout, k, bias_range)]: stride 2, `compiler.isa_conv_strided`
    "tiny": [(4, 24, 8, 3, 50), (8, 26, 4, 3, 5000), (4, 25, 4, 5, 50)],
    "default": [(16, 24, 32, 3, 50), (32, 30, 16, 3, 5000), (16, 28, 48, 5, 300)],
}


@pytest.mark.parametrize("cfg, case", [(c, x) for c, xs in STRIDED.items() for x in xs])
def test_phase_plane_strided_convs_match(cfg, case, monkeypatch) -> None:
    calls = []
    real = contraction.emit_strided_conv
    monkeypatch.setattr(contraction, "emit_strided_conv",
                        lambda *a: calls.append(a[1].pad) or real(*a))
    cin, h, cout, k, bias_range = case
    graph, xin = conv_layer(cin, h, cout, k, 2, np.random.default_rng(cin * h), bias_range)
    assert_matches(graph, {"x": xin}, cfg)
    assert calls, "the phase-plane path was not taken"
    assert calls[0] is not None, "the padding copy was not skipped"


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_phase_plane_strided_conv_reads_a_padded_image(cfg, monkeypatch) -> None:
    """The padded image is also read by a second consumer, so it is written and the
    strided convolution reads it padded; no REQUANT: an int32 output."""
    calls = []
    real = contraction.emit_strided_conv
    monkeypatch.setattr(contraction, "emit_strided_conv",
                        lambda *a: calls.append(a[1].pad) or real(*a))
    n = 4 if cfg == "tiny" else 16
    rng = np.random.default_rng(2)
    x = ir.input_("x", (1, n, 26, 26), "int8")
    w = ir.const(rng.integers(-64, 64, (2 * n, n, 3, 3)).astype(np.int8))
    padded = ir.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = ir.binary(Op.ADD, conv2d(padded, w, 2, 0),
                  ir.const(rng.integers(-999, 999, (1, 2 * n, 1, 1)).astype(np.int32)))
    graph = ir.Graph({"x": x}, {"y": y, "p": padded})
    assert_matches(graph, {"x": rng.integers(-128, 128, (1, n, 26, 26)).astype(np.int8)}, cfg)
    assert calls and calls[0] is None
