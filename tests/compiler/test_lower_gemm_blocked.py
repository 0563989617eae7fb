"""Constant A operands laid out chunk-major per M block (one DMA per step's K chunks):
partial last M blocks, A resident or streamed, plain and windowed convolutions; per-row
REQUANT tables double-buffered across M blocks and loaded ahead in pieces."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

from frontend.benchmarks._nets import conv_layer

CASES = {  # config: [(cin, h, cout, k, stride)]
    "tiny": [(50, 4, 40, 1, 1), (9, 5, 37, 3, 1), (20, 6, 70, 3, 2), (64, 3, 100, 1, 1)],
    "default": [(1024, 4, 600, 1, 1), (96, 6, 530, 3, 1), (600, 3, 20, 1, 1),
                (512, 7, 2048, 1, 1)],
}


@pytest.mark.parametrize("cfg, case", [(c, x) for c, xs in CASES.items() for x in xs])
def test_blocked_constant_a_matches(cfg, case) -> None:
    cin, h, cout, k, stride = case
    graph, xin = conv_layer(cin, h, cout, k, stride, np.random.default_rng(cin + cout), 300)
    assert_matches(graph, {"x": xin}, cfg)
