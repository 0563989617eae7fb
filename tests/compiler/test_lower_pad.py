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


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_bare_copies_store_from_their_load_rows(cfg) -> None:
    """Elementwise copies (a 2-D pad with masked lanes, a strided slice, int32 data) are
    stored from the rows they were loaded into."""
    rng = np.random.default_rng(3)
    a = ir.input_("a", (37, 29), "int8")
    b = ir.input_("b", (3, 40, 21), "int32")
    outs = {"p": ir.pad(a, ((2, 1), (3, 5))),
            "s": ir.shrink(b, ((0, 3), (5, 33), (1, 20)))}
    inputs = {"a": rng.integers(-128, 128, (37, 29)).astype(np.int8),
              "b": rng.integers(-2**31, 2**31, (3, 40, 21)).astype(np.int32)}
    assert_matches(ir.Graph({"a": a, "b": b}, outs), inputs, cfg)
