"""The example programs (examples/*.s and the GEMM generator) give numpy's answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from isa.asm import assemble, assemble_file
from isa.config import PRESETS
from simulator import Simulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from gemm_gen import gemm_program, gemm_source  # noqa: E402

RNG = np.random.default_rng(7)


def test_double_buffered_gemm_example_equals_numpy():
    program = assemble_file(EXAMPLES / "gemm_tiny.s")
    m, k = program.symbol("A").shape
    n = program.symbol("W").shape[1]
    a = RNG.integers(-128, 128, (m, k), dtype=np.int8)
    w = RNG.integers(-128, 128, (k, n), dtype=np.int8)
    r = Simulator(program).run({"A": a, "W": w})
    assert np.array_equal(r.outputs["C"], a.astype(np.int32) @ w.astype(np.int32))
    assert r.macs == m * k * n


@pytest.mark.parametrize("shape,config,mblk", [((64, 64, 32), "default", None),
                                              ((24, 8, 12), "tiny", 8)])
def test_generated_gemm_overlaps_and_is_exact(shape, config, mblk):
    m, k, n = shape
    cfg = PRESETS[config]
    program = gemm_program(m, k, n, cfg, mblk)
    assert assemble(gemm_source(program)).to_bytes() == program.to_bytes()
    a = RNG.integers(-128, 128, (m, k), dtype=np.int8)
    w = RNG.integers(-128, 128, (k, n), dtype=np.int8)
    r = Simulator(program).run({"A": a, "W": w})
    assert np.array_equal(r.outputs["C"], a.astype(np.int32) @ w.astype(np.int32))
    # Double buffering: loads run while the array works, so the run is far shorter than
    # the sum of all instruction latencies.
    c = r.counters
    assert c.cycles < c.busy[0] + c.busy[1] + c.busy[2]


def test_gemm_on_default_reaches_high_mac_utilisation():
    cfg = PRESETS["default"]
    program = gemm_program(512, 1024, 32, cfg)
    r = Simulator(program).run()
    rep = r.report()
    assert rep["mac_utilization"] > 0.9
    assert rep["roofline"]["bound"] == "compute"
    assert r.counters.tokens_left == [0, 2, 0, 2]  # the primed "buffer free" tokens remain


def test_elementwise_example_is_leaky_relu():
    program = assemble_file(EXAMPLES / "elementwise.s")
    x = RNG.standard_normal((256, 16)).astype(np.float32)
    r = Simulator(program).run({"X": x})
    want = np.where(x < 0, x * np.float32(0.1), x)
    assert np.array_equal(r.outputs["Y"], want)


def test_reduction_example_sums_and_maxima():
    program = assemble_file(EXAMPLES / "reduction.s")
    x = RNG.integers(-(2**20), 2**20, (256, 16)).astype(np.int32)
    x[5, 3] = -(2**31)
    r = Simulator(program).run({"X": x})
    assert np.array_equal(r.outputs["SUMS"], x.astype(np.int64).sum(axis=0).astype(np.int32))
    assert np.array_equal(r.outputs["MAXES"], x.max(axis=0))
    assert r.outputs["TOTAL"].tolist() == [int(x.astype(np.int64).sum()) % 2**32 - 2**32
                                           if x.astype(np.int64).sum() % 2**32 >= 2**31
                                           else int(x.astype(np.int64).sum()) % 2**32]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.s")), ids=lambda p: p.name)
def test_every_example_runs_to_completion(path):
    program = assemble_file(path)
    r = Simulator(program).run()
    assert r.cycles > 0 and set(r.outputs) == {s.name for s in program.outputs}


def test_inputs_are_checked():
    from isa.errors import InputError
    program = assemble_file(EXAMPLES / "elementwise.s")
    sim = Simulator(program)
    with pytest.raises(InputError, match="dtype"):
        sim.run({"X": np.zeros((256, 16), np.float64)})
    with pytest.raises(InputError, match="shape"):
        sim.run({"X": np.zeros((16, 256), np.float32)})
    with pytest.raises(InputError, match="no input named"):
        sim.run({"Z": np.zeros(1, np.float32)})
    assert sim.run().missing_inputs == ["X"]
