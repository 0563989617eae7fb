"""Graph builders and the compile-simulate-compare check shared by the ISA lowering tests."""

from __future__ import annotations

import numpy as np

from compiler import ir, reference
from compiler.lower import compile_graph
from isa.config import ChipConfig, preset
from simulator import Simulator

FLOAT_TOL = 1e-4  # relative to the largest reference magnitude


def run_both(graph: ir.Graph, inputs: dict[str, np.ndarray], cfg: ChipConfig | str = "tiny"):
    """Compile for `cfg`, simulate; return (simulated outputs, reference outputs, result)."""
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    program = compile_graph(graph, cfg)
    result = Simulator(program).run(inputs)
    return result.outputs, reference.run(graph, inputs), result


def assert_matches(graph: ir.Graph, inputs: dict[str, np.ndarray],
                   cfg: ChipConfig | str = "tiny", tol: float = FLOAT_TOL):
    got, want, result = run_both(graph, inputs, cfg)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape and out.dtype == ref.dtype, name
        if ref.dtype == np.float32:
            scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
            err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
            assert err <= tol * scale, f"{name}: max error {err} > {tol * scale}"
        else:
            assert np.array_equal(out, ref), f"{name}: int outputs differ " \
                f"({int(np.sum(out != ref))} of {ref.size} elements)"
    return result
