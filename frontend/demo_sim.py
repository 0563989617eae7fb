"""The simulator's step of `make demo`: run every example and the 1024^3 GEMM, show counters."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frontend.tables import format_table
from isa.asm import assemble_file
from isa.container import SYMBOL_DTYPES, Program
from isa.errors import DozenError
from simulator import Simulator

if TYPE_CHECKING:
    from frontend.demo import DemoContext

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
HEADERS = ["program", "chip", "instructions", "cycles", "time (us)", "MAC util", "DRAM bytes",
           "bound", "sim wall (s)"]


def random_inputs(program: Program, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random values of each input's shape and dtype."""
    rng = np.random.default_rng(seed)
    out = {}
    for sym in program.inputs:
        dtype = np.dtype(SYMBOL_DTYPES[sym.dtype])
        if dtype.kind == "f":
            out[sym.name] = rng.standard_normal(sym.shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            lo, hi = max(info.min, -128), min(info.max, 127)
            out[sym.name] = rng.integers(lo, hi + 1, sym.shape).astype(dtype)
    return out


def _row(name: str, program: Program, trace: bool = False) -> tuple[list[Any], Any]:
    start = time.perf_counter()
    result = Simulator(program, trace=trace).run(random_inputs(program))
    wall = time.perf_counter() - start
    rep = result.report()
    return [name, program.config.name, rep["instructions"], rep["cycles"],
            round(rep["time_us"], 2), f"{rep['mac_utilization']:.1%}",
            rep["dram_bytes_read"] + rep["dram_bytes_written"], rep["roofline"]["bound"],
            round(wall, 3)], result


def step_simulate(ctx: DemoContext) -> None:
    """Simulate each example with random inputs; then the double-buffered 1024^3 int8 GEMM."""
    rows = []
    trace_path = None
    for source in sorted(EXAMPLES_DIR.glob("*.s")):
        program = assemble_file(source)
        row, result = _row(source.name, program, trace=source.stem == "gemm_tiny")
        rows.append(row)
        if result.log is not None:
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            trace_path = ctx.out_dir / f"{source.stem}.trace.json"
            result.write_trace(trace_path)
    gen = EXAMPLES_DIR / "gemm_gen.py"
    if gen.exists():
        spec = importlib.util.spec_from_file_location("dozen_gemm_gen", gen)
        if spec is None or spec.loader is None:
            raise DozenError(f"cannot load {gen}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        from isa.config import PRESETS
        program = module.gemm_program(1024, 1024, 1024, PRESETS["default"])
        row, result = _row("gemm_gen.py 1024^3", program)
        rows.append(row)
        ctx.results["gemm1024_cycles"] = result.cycles
    print(format_table(HEADERS, rows, title="Examples on the cycle-level simulator"))
    if trace_path is not None:
        print(f"Perfetto trace of gemm_tiny.s: {trace_path} (open it in ui.perfetto.dev)")
