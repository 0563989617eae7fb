"""Strided convolutions whose image columns are gathered by selection MATMULs
(`compiler.isa_gather`), bit-exact against the reference: a stem-like 7x7 with few
channels (gathered rows stored to several im2col rows), narrow 3x3 and 1x1 subsamples
whose phases continue across channels (even padded heights, one gather job per phase) or
do not (odd heights, one job per channel)."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

from compiler.isa_gather import _weights, gather_fits
from frontend.benchmarks._nets import conv_layer
from isa.config import preset

CASES = [  # cin, h, cout, k, stride
    (3, 20, 8, 7, 2),  # stem-like: gathered straight into im2col rows (flat K chunks)
    (2, 17, 5, 5, 2),  # the same with an odd image: rows clipped per kernel row
    (5, 15, 6, 3, 2),  # odd padded height: one job per channel
    (6, 16, 5, 3, 2),  # even padded height: one job per phase
    (7, 15, 9, 1, 2),  # plain subsample, odd height
    (20, 12, 17, 1, 2),  # plain subsample, even height
    (4, 11, 3, 5, 3),  # stride 3
]


@pytest.mark.parametrize("cfg", ["tiny", "default"])
@pytest.mark.parametrize("case", CASES)
def test_gathered_strided_convs_match(case, cfg) -> None:
    cin, h, cout, k, stride = case
    graph, xin = conv_layer(cin, h, cout, k, stride, np.random.default_rng(sum(case)), 300)
    assert_matches(graph, {"x": xin}, cfg)


def test_selection_matrices_pick_every_stride_th_lane() -> None:
    n, shifts, stride, width = 4, [0, 1, 2], 2, 7
    table, index = _weights(n, shifts, stride, width)
    src = np.arange(64)
    for (si, q, d), row in index.items():
        w = table[row:row + n].astype(np.int64)
        picked = src[(stride * q + d) * n:(stride * q + d) * n + n] @ w
        for j in range(min(n, width - q * n)):
            if w[:, j].any():
                assert picked[j] == shifts[si] + stride * (q * n + j)


def test_gather_refuses_what_the_scratchpad_cannot_hold() -> None:
    assert gather_fits(preset("default"), list(range(7)), 2, 112)
    assert not gather_fits(preset("tiny"), list(range(7)), 2, 4000)
