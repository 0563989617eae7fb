"""Convolutions with output pixels streamed through the matrix array, stride 1
(`compiler.isa_conv_pixels`) and stride 2 from phase planes (`compiler.isa_conv_strided`),
bit-exact against the reference on the tiny and default chips: kernel sizes 3 and 5,
narrow and wide biases, REQUANT with and without ReLU, an int32 output with no REQUANT,
and images whose row blocks end part-way. The zero-padding copy before each is skipped:
the pixel-major copy reads the unpadded image, unless a second consumer needs it written."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

import compiler.isa_contraction as contraction
from compiler import ir
from compiler.ir import Op
from frontend.benchmarks._nets import conv2d, conv_layer

CASES = {  # (stride, config): [(cin, h, cout, k, bias_range)]
    (1, "tiny"): [(4, 20, 8, 3, 50), (8, 22, 4, 3, 5000), (4, 21, 4, 5, 50)],
    (1, "default"): [(16, 20, 32, 3, 50), (32, 29, 16, 3, 5000), (16, 23, 48, 5, 300)],
    (2, "tiny"): [(4, 24, 8, 3, 50), (8, 26, 4, 3, 5000), (4, 25, 4, 5, 50)],
    (2, "default"): [(16, 24, 32, 3, 50), (32, 30, 16, 3, 5000), (16, 28, 48, 5, 300)],
}


def _spy(monkeypatch, name: str, pad_of) -> list:
    """Record, per call of `contraction.<name>`, the unpadded source it was given (None
    when it reads a padded image)."""
    calls = []
    real = getattr(contraction, name)

    def spy(*args, **kwargs):
        calls.append(pad_of(args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(contraction, name, spy)
    return calls


@pytest.fixture
def pixel_calls(monkeypatch) -> list:
    return _spy(monkeypatch, "emit_pixel_conv",
                lambda args, kwargs: args[8] if len(args) > 8 else kwargs.get("pad"))


@pytest.fixture
def strided_calls(monkeypatch) -> list:
    return _spy(monkeypatch, "emit_strided_conv", lambda args, kwargs: args[1].pad)


def _wide_bias_conv(cfg: str, seed: int, size: int, stride: int, bias_range: int,
                    pad_apart: bool = False) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """A 3 x 3 convolution from n to 2n channels plus an int32 bias, no REQUANT (an int32
    output), and its input. With `pad_apart` the zero padding is its own node and a second
    output, so the padded image is written and the convolution reads it padded."""
    n = 4 if cfg == "tiny" else 16
    rng = np.random.default_rng(seed)
    x = ir.input_("x", (1, n, size, size), "int8")
    w = ir.const(rng.integers(-64, 64, (2 * n, n, 3, 3)).astype(np.int8))
    padded = ir.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))) if pad_apart else None
    bias = ir.const(rng.integers(-bias_range, bias_range, (1, 2 * n, 1, 1)).astype(np.int32))
    conv = conv2d(padded, w, stride, 0) if padded is not None else conv2d(x, w, stride, 1)
    outputs = {"y": ir.binary(Op.ADD, conv, bias)} | ({"p": padded} if padded is not None else {})
    xin = rng.integers(-128, 128, (1, n, size, size)).astype(np.int8)
    return ir.Graph({"x": x}, outputs), {"x": xin}


@pytest.mark.parametrize("stride, cfg, case",
                         [(s, c, x) for (s, c), xs in CASES.items() for x in xs])
def test_pixel_streamed_convs_match(stride, cfg, case, pixel_calls, strided_calls) -> None:
    cin, h, cout, k, bias_range = case
    graph, xin = conv_layer(cin, h, cout, k, stride, np.random.default_rng(cin * h), bias_range)
    assert_matches(graph, {"x": xin}, cfg)
    calls = pixel_calls if stride == 1 else strided_calls
    assert calls, "the pixel-streamed path was not taken"
    assert calls[0] is not None, "the padding copy was not skipped"


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_pixel_streamed_conv_without_requant(cfg, pixel_calls) -> None:
    assert_matches(*_wide_bias_conv(cfg, 1, 20, 1, 9999), cfg)
    assert pixel_calls


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_phase_plane_strided_conv_reads_a_padded_image(cfg, strided_calls) -> None:
    """The padded image is also read by a second consumer, so it is written and the
    strided convolution reads it padded; no REQUANT: an int32 output."""
    assert_matches(*_wide_bias_conv(cfg, 2, 26, 2, 999, pad_apart=True), cfg)
    assert strided_calls and strided_calls[0] is None
