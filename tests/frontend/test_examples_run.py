"""The hand-written ISA examples compute what their comments say (checked on the simulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from isa.asm import assemble_file

simulator = pytest.importorskip("simulator")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return simulator.Simulator(assemble_file(EXAMPLES / name)).run(inputs).outputs


def test_matmul_tiny():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, size=(8, 4), dtype=np.int8)
    w = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, -1, 2, -2]], dtype=np.int32)
    np.testing.assert_array_equal(run("matmul_tiny.s", {"A": a})["C"], a.astype(np.int32) @ w)


def test_vector_fill_binary():
    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(4, 16)
    expected = np.maximum(x * np.float32(2) + np.float32(0.5), np.float32(0))
    np.testing.assert_array_equal(run("vector_fill_binary.s", {"X": x})["Y"], expected)


def test_loop_scale():
    x = np.arange(-512, 512, dtype=np.int32).reshape(64, 16)
    np.testing.assert_array_equal(run("loop_scale.s", {"X": x})["Y"], 3 * x)
