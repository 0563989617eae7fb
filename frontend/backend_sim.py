"""The `sim` backend: compile a Graph for a chip and run it on the cycle-level simulator.

    run_sim(graph, inputs, cfg=None, stats=None, trace=None) -> outputs

`cfg` is a ChipConfig, a preset name or a TOML path (default preset when None). When a
`stats` dict is given it receives the cycles, MAC utilisation and the full simulator
report; `trace` (a path) writes a Chrome/Perfetto trace. Other options are ignored, so
callers may pass one option set to every backend. The chip runs the whole graph: an
op it cannot run is a CompileError naming it, never a silent host fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler.backends import register_backend
from compiler.ir import NUMPY_DTYPES, Graph
from compiler.lower import compile_graph
from isa.config import ChipConfig, load_config
from isa.container import Program
from simulator import Simulator


def resolve_config(cfg: ChipConfig | str | None) -> ChipConfig:
    return cfg if isinstance(cfg, ChipConfig) else load_config(cfg)


def simulate(program: Program, inputs: dict[str, np.ndarray], stats: dict[str, Any] | None = None,
             trace: str | Path | None = None) -> dict[str, np.ndarray]:
    """Run a compiled program; inputs are cast to the symbols' dtypes."""
    typed = {}
    for sym in program.inputs:
        if sym.name in inputs:
            typed[sym.name] = np.asarray(inputs[sym.name]).astype(NUMPY_DTYPES.get(
                sym.dtype, sym.dtype), copy=False)
    result = Simulator(program, trace=trace is not None).run(typed)
    if trace is not None:
        result.write_trace(trace)
    if stats is not None:
        rep = result.report()
        stats.update(cycles=result.cycles, mac_utilisation=rep["mac_utilization"], report=rep,
                     instructions=len(program.code))
    return result.outputs


def run_sim(graph: Graph, inputs: dict[str, np.ndarray], cfg: ChipConfig | str | None = None,
            stats: dict[str, Any] | None = None, trace: str | Path | None = None,
            **_: Any) -> dict[str, np.ndarray]:
    program = compile_graph(graph, resolve_config(cfg))
    return simulate(program, inputs, stats, trace)


register_backend("sim", run_sim)
