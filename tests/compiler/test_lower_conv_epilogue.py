"""Convolutions with a per-channel bias and REQUANT epilogue, bit-exact against the
reference: the paths that start the accumulator from the bias, read column-shifted (and,
for strided convolutions, row-phase-split) copies of the image, and requantise whole
n-row blocks with transposed per-channel params."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lower_helpers import assert_matches

from compiler import ir
from compiler.ir import Op
from frontend.benchmarks._nets import conv2d, conv_layer


@st.composite
def conv_layers(draw):
    """A conv layer (bias, optional per-channel REQUANT) and its int8 input."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.sampled_from([1, 2]))
    cin = draw(st.integers(1, 40))
    cout = draw(st.sampled_from([1, 7, 16, 24, 33, 48]))
    h = draw(st.integers(max(k, 3), 14))
    batch = draw(st.sampled_from([1, 1, 2]))
    bias_range = draw(st.sampled_from([50, 5000]))  # fits int8 or not
    epilogue = draw(st.sampled_from(["bias", "requant"]))
    x = ir.input_("x", (batch, cin, h, h), "int8")
    w = ir.const(rng.integers(-64, 64, (cout, cin, k, k)).astype(np.int8))
    bias = rng.integers(-bias_range, bias_range, (1, cout, 1, 1)).astype(np.int32)
    y = ir.binary(Op.ADD, conv2d(x, w, stride, k // 2), ir.const(bias))
    if epilogue == "requant":
        y = ir.requant(y, ir.RequantArg(rng.integers(1 << 10, 1 << 15, cout),
                                        rng.integers(10, 20, cout),
                                        lo=draw(st.sampled_from([0, -128])), axis=1))
    xin = rng.integers(-128, 128, (batch, cin, h, h)).astype(np.int8)
    return ir.Graph({"x": x}, {"y": y}), {"x": xin}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_layers(), cfg=st.sampled_from(["tiny", "default"]))
def test_conv_epilogues_match_the_reference(case, cfg) -> None:
    graph, inputs = case
    assert_matches(graph, inputs, cfg)


def test_resnet_shaped_layers_default_chip() -> None:
    """Layer shapes that take each new path on the default chip: 7x7 stride-1 3x3 (tiles
    across output rows), a strided 3x3 (phase-split copies), a 1x1 with 64 channels."""
    rng = np.random.default_rng(0)
    for cin, h, cout, k, stride in ((32, 7, 32, 3, 1), (32, 14, 48, 3, 2), (64, 14, 64, 1, 1)):
        graph, xin = conv_layer(cin, h, cout, k, stride, rng, bias_range=300)
        assert_matches(graph, {"x": xin}, "default")
