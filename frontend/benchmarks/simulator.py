"""Simulator speed and the double-buffered int8 GEMM's MAC utilisation.

The figure of merit is simulated cycles per wall-clock second on one core. The
reference, measured side by side in the same process, is the naive per-cycle model
(`simulator.ticking`, the way SCALE-Sim-style simulators tick) over a prefix of the
same program; the event schedule's advantage is the ratio. SCALE-Sim's published rate
(about 1,200 cycles/s) is shown as a second, external reference.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from frontend.benchmarks import row
from isa.config import ChipConfig
from isa.errors import InputError
from simulator import Simulator
from simulator.semantics import Machine
from simulator.ticking import run_ticks

GEN = Path(__file__).resolve().parents[2] / "examples" / "gemm_gen.py"
TARGET_CYCLES_PER_S = 1_000_000
TARGET_UTILISATION = 0.90
SCALE_SIM_CYCLES_PER_S = 1_200  # pure-Python per-cycle simulation, as reported for SCALE-Sim


def _generator() -> ModuleType:
    if not GEN.exists():
        raise InputError(f"the GEMM generator {GEN} is missing (run from a source checkout)")
    spec = importlib.util.spec_from_file_location("dozen_gemm_gen", GEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def gemm_speed(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """Simulate the double-buffered int8 GEMM (1024^3; 512^3 with --quick)."""
    size = 512 if quick else 1024
    name = f"sim int8 GEMM {size}^3 ({cfg.name})"
    program = _generator().gemm_program(size, size, size, cfg)
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (size, size), dtype=np.int8)
    w = rng.integers(-128, 128, (size, size), dtype=np.int8)

    start, cpu = time.perf_counter(), time.process_time()
    result = Simulator(program).run({"A": a, "W": w})
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rep = result.report()
    cycles_per_s = result.cycles / wall

    prefix = 20_000 if quick else 100_000
    machine = Machine(cfg)
    start = time.perf_counter()
    ticked, _ = run_ticks(program.code, cfg, machine, stop_after=prefix)
    tick_rate = ticked / (time.perf_counter() - start)

    exact = np.array_equal(result.outputs["C"], (a.astype(np.float64) @ w.astype(np.float64))
                           .astype(np.int64).astype(np.int32))
    return [
        row(name, "simulated cycles / s", cycles_per_s, reference=tick_rate,
            target=TARGET_CYCLES_PER_S),
        row(name, "per-cycle reference: cycles / s", tick_rate),
        row(name, "cycles / s vs SCALE-Sim's published rate", cycles_per_s,
            reference=SCALE_SIM_CYCLES_PER_S),
        row(name, "simulated cycles / CPU second", result.cycles / cpu),
        row(name, "instructions / s", result.counters.instructions / wall),
        row(name, "wall time (s)", wall),
        row(name, "simulated cycles", result.cycles),
        row(name, "MAC utilisation", rep["mac_utilization"], target=TARGET_UTILISATION),
        row(name, "roofline: fraction of bound", rep["roofline"]["fraction_of_bound"]),
        row(name, "C equals numpy A @ W", exact),
    ]


BENCHMARKS = [gemm_speed]
