"""Zero-padding copies with channels as the DMA rows (`compiler.isa_pad`), bit-exact
against the reference: symmetric and lopsided padding, images narrower and wider than a
lane chunk, on the tiny and default chips."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

import compiler.lower as lower
from compiler import ir

CASES = {  # config: [(channels, h, w, (top, bottom), (left, right))]
    "tiny": [(40, 5, 5, (1, 1), (2, 2)), (12, 3, 9, (0, 2), (1, 0)), (9, 6, 2, (2, 1), (3, 3))],
    "default": [(64, 7, 9, (1, 1), (1, 1)), (100, 14, 30, (3, 0), (0, 5)),
                (48, 4, 4, (2, 2), (9, 2))],
}


@pytest.mark.parametrize("cfg, case", [(c, x) for c, xs in CASES.items() for x in xs])
def test_pad_copies_match(cfg, case, monkeypatch) -> None:
    calls = []
    real = lower.emit_pad_copy
    monkeypatch.setattr(lower, "emit_pad_copy", lambda *a: calls.append(a) or real(*a))
    c, h, w, py, px = case
    x = ir.input_("x", (1, c, h, w), "int8")
    y = ir.pad(x, ((0, 0), (0, 0), py, px))
    xin = np.random.default_rng(c).integers(-128, 128, (1, c, h, w)).astype(np.int8)
    assert_matches(ir.Graph({"x": x}, {"y": y}), {"x": xin}, cfg)
    assert calls, "the channel-row padding copy was not used"
