# amaranth: UnusedElaboratable=no
"""The `rtl` backend: a Tensor graph compiled for the tiny chip and realised on the RTL."""

from __future__ import annotations

import numpy as np

from frontend.tensor import Tensor
from isa.config import PRESETS
from rtl.dram import DramModel, with_inputs


def test_tensor_realises_on_the_rtl_like_numpy():
    rng = np.random.default_rng(5)
    a = Tensor.input("a", (5, 8), "int8")
    w = Tensor(rng.integers(-7, 7, (8, 4)).astype(np.int8))
    out = (a.cast("int32") @ w.cast("int32")).maximum(0)
    value = rng.integers(-128, 128, (5, 8)).astype(np.int8)
    stats: dict = {}
    got = out.numpy("rtl", {"a": value}, stats=stats)  # checks cycles and DRAM vs the simulator
    want = Tensor.to_graph({"o": out})
    from compiler.backends import run_backend

    assert np.array_equal(got, run_backend("numpy", want, {"a": value})["o"])
    assert stats["cycles"] > 0 and stats["clocks"] >= stats["cycles"]


def test_inputs_baked_into_segments_give_the_same_dram():
    from compiler.lower import compile_graph

    x = Tensor.input("x", (3, 4), "int32")
    program = compile_graph((x + 1).graph(), PRESETS["tiny"])
    value = np.arange(12, dtype=np.int32).reshape(3, 4)
    baked = with_inputs(program, {"x": value})
    assert np.array_equal(DramModel.for_program(baked).data,
                          DramModel.for_program(program, {"x": value}).data)
