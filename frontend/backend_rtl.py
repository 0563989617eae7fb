"""The `rtl` backend: compile a Graph for a chip and run it on the chip's Amaranth RTL.

    run_rtl(graph, inputs, cfg="tiny", rtl_sim="amaranth", check=True, stats=None) -> outputs

The RTL runs in an HDL simulator (Amaranth's, or Verilator through cocotb), thousands of
clocks per second, so the default chip is the `tiny` preset. With `check` (the default)
the same program also runs on the cycle-level simulator and any difference in final DRAM
bytes or cycle count is an error: the RTL is a second opinion, never a silent one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.backends import register_backend
from compiler.ir import NUMPY_DTYPES, Graph
from compiler.lower import compile_graph
from frontend.backend_sim import resolve_config
from isa.config import ChipConfig
from isa.container import Program
from isa.errors import DozenError
from isa.table import Fault
from simulator import Simulator
from simulator.api import read_symbol


class RtlBackendError(DozenError):
    """The RTL faulted, or disagreed with the simulator (exit code 1)."""

    exit_code = 1


def run_on_rtl(program: Program, inputs: dict[str, np.ndarray], rtl_sim: str = "amaranth",
               check: bool = True, stats: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    from rtl.dram import with_inputs

    typed = {s.name: np.asarray(inputs[s.name]).astype(NUMPY_DTYPES.get(s.dtype, s.dtype))
             for s in program.inputs if s.name in inputs}
    if rtl_sim == "amaranth":
        from rtl.testbench import run_programs

        result = run_programs([program], inputs=[typed])[0]
    else:
        from rtl.cocotb_bench import run_verilog

        result = run_verilog([with_inputs(program, typed)], simulator=rtl_sim)[0]
    if result.fault is not Fault.NONE:
        raise RtlBackendError(f"the RTL stopped with {result.fault.name} at pc {result.fault_pc}")
    if check:
        reference = Simulator(program).run(typed)
        if reference.cycles != result.cycles or not np.array_equal(reference.dram, result.dram):
            raise RtlBackendError(f"the RTL disagrees with the simulator: {result.cycles} vs "
                                  f"{reference.cycles} cycles, DRAM identical: "
                                  f"{np.array_equal(reference.dram, result.dram)}")
    if stats is not None:
        stats.update(cycles=result.cycles, clocks=result.clocks, counters=result.counters,
                     instructions=len(program.code))
    return {s.name: read_symbol(result.dram, s) for s in program.outputs}


def run_rtl(graph: Graph, inputs: dict[str, np.ndarray], cfg: ChipConfig | str | None = "tiny",
            rtl_sim: str = "amaranth", check: bool = True, stats: dict[str, Any] | None = None,
            **_: Any) -> dict[str, np.ndarray]:
    program = compile_graph(graph, resolve_config(cfg if cfg is not None else "tiny"))
    return run_on_rtl(program, inputs, rtl_sim, check, stats)


register_backend("rtl", run_rtl)
