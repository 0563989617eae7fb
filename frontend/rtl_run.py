"""A compiled program on the chip's RTL, for `dozen run --backend rtl` and `dozen compare`.

The RTL implements the integer datapath only (isa/SPEC.md lists what it lacks), so a
program is checked before the slow HDL simulation starts: an fp32 instruction is one
clear error naming it, not an ILLEGAL_INSTRUCTION fault at some pc. The run itself is
`frontend.backend_rtl.run_on_rtl`, which holds the RTL's final DRAM bytes and cycle count
to the cycle-level simulator's; because they must match, the simulator's report of the
same binary (MAC utilisation, DRAM traffic, roofline) describes the RTL run too, and is
printed beside the RTL's own hardware counters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from frontend.backend_rtl import run_on_rtl
from frontend.backend_sim import simulate
from isa.asm import format_operand
from isa.container import Program
from isa.errors import InputError


class RtlUnsupported(InputError):
    """The program needs a part of the chip the RTL does not implement yet (exit code 2)."""


def unsupported_instruction(program: Program) -> tuple[int, str] | None:
    """(pc, description) of the first instruction the RTL cannot execute, or None."""
    from rtl.support import matmul_supported, supported

    for pc, insn in enumerate(program.code):
        v = insn.values
        if insn.mnemonic == "matmul":
            ok = matmul_supported(v["dtype"])
        elif "fn" in v and "dtype" in v:
            ok = supported(insn.op, v["fn"], v["dtype"])
        else:
            continue
        if not ok:
            fields = {f.name: f for f in insn.op.fields}
            shown = [format_operand(fields[k], v[k]) for k in ("fn", "dtype") if k in v]
            return pc, f"{insn.mnemonic} {' '.join(shown)}"
    return None


def check_runs_on_rtl(program: Program, what: str) -> None:
    """Raise RtlUnsupported when `program` uses the float datapath."""
    found = unsupported_instruction(program)
    if found is not None:
        pc, text = found
        raise RtlUnsupported(
            f"{what}: instruction {pc} ({text}) needs the fp32 datapath, which the RTL does not "
            "implement yet (it runs integer programs, e.g. int8 models with integer inputs); "
            "the simulator (backend sim) runs it")


def run_program_on_rtl(program: Program, inputs: dict[str, np.ndarray], what: str,
                       stats: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Outputs of `program` on the RTL (checked against the simulator). `stats` receives the
    RTL's cycles, clocks and hardware counters, and the simulator's report of the binary."""
    check_runs_on_rtl(program, what)
    sim_stats: dict[str, Any] = {}
    simulate(program, inputs, sim_stats)
    rtl_stats: dict[str, Any] = {}
    outputs = run_on_rtl(program, inputs, check=True, stats=rtl_stats)
    if stats is not None:
        stats.update(report=sim_stats["report"], mac_utilisation=sim_stats["mac_utilisation"],
                     cycles=rtl_stats["cycles"], clocks=rtl_stats["clocks"],
                     rtl_counters=rtl_stats["counters"], instructions=len(program.code))
    return outputs


def counter_rows(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    """The RTL's hardware counters, as (counter, value) rows."""
    rows: list[tuple[str, Any]] = [("clocks (with program load)", stats["clocks"])]
    rows += list(stats["rtl_counters"].items())
    return rows
