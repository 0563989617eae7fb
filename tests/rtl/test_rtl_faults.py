# amaranth: UnusedElaboratable=no
"""Faults on the RTL: each bad program stops the core with the simulator's fault cause.

All cases run in one Amaranth session. Deadlock and the cycle limit are simulator-only
(the RTL simply never finishes), so they are absent here.
"""

from __future__ import annotations

import pytest

from isa.config import PRESETS
from isa.container import Program
from isa.encoding import Instruction, local_addr, make
from isa.table import BY_OPCODE, FUNC_DTYPES, DType, Fault, Mem, MoveFn, Op
from rtl.support import supported
from rtl.testbench import run_programs
from simulator import SimulationError, Simulator

TINY = PRESETS["tiny"]
HALT = make("halt")
SP, ACC = Mem.SP, Mem.ACC


def _unsupported_cases() -> list[tuple[str, list[Instruction]]]:
    """One program per function/dtype pair the ISA defines and the RTL leaves out."""
    cases = []
    for mnemonic, table in FUNC_DTYPES.items():
        op = BY_OPCODE[Op[mnemonic.upper()]]
        for fn, dtypes in table.items():
            for dtype in dtypes:
                if supported(op, fn, dtype):
                    continue
                insn = make(mnemonic, dst=local_addr(SP, 0), src1=local_addr(SP, 4), fn=fn,
                            dtype=dtype, count=1)
                cases.append((f"{mnemonic}-{fn.name.lower()}-{DType(dtype).name.lower()}",
                              [insn, HALT]))
    cases.append(("matmul-f32", [make("matmul", dst=0, inp=0, wgt=0, rows=1, dtype=1), HALT]))
    return cases


CASES: list[tuple[str, list[Instruction], Fault]] = [
    ("no-halt", [make("sync", unit=1)], Fault.PC_OUT_OF_RANGE),
    ("sram-oob-load", [make("load", sram=local_addr(ACC, TINY.acc_rows - 1), dram=0, stride=4,
                            rows=2, cols=4, fmt=0), HALT], Fault.SRAM_OUT_OF_BOUNDS),
    ("cols-beyond-n", [make("store", sram=0, dram=0, stride=8, rows=1, cols=TINY.n + 1,
                            fmt=0), HALT], Fault.SRAM_OUT_OF_BOUNDS),
    ("dram-oob", [make("load", sram=0, dram=TINY.dram_bytes - 3, stride=4, rows=1, cols=4,
                       fmt=0), HALT], Fault.DRAM_OUT_OF_BOUNDS),
    ("matmul-wgt-oob", [make("matmul", dst=0, inp=0, wgt=TINY.sp_rows - 2, rows=1), HALT],
     Fault.SRAM_OUT_OF_BOUNDS),
    ("loop-moves-below-zero", [make("loop", count=3, body=1, d_dst=-2),
                               make("unary", dst=local_addr(SP, 2), src1=local_addr(SP, 8),
                                    count=1, fn=0), HALT], Fault.SRAM_OUT_OF_BOUNDS),
    ("bcast-lane", [make("move", dst=0, src1=8, count=1, fn=MoveFn.BCAST, imm=TINY.n), HALT],
     Fault.ILLEGAL_INSTRUCTION),
    ("loop-too-deep", [*[make("loop", count=1, body=6 - i) for i in range(5)],
                       make("sync", unit=1), HALT], Fault.LOOP_NESTING),
    ("loop-past-end", [make("loop", count=2, body=3), make("sync", unit=1), HALT],
     Fault.LOOP_NESTING),
    ("token-overflow", [*[make("sync", unit=0, flags=("push_next",))
                          for _ in range(TINY.token_depth + 1)], HALT], Fault.TOKEN_OVERFLOW),
] + [(name, code, Fault.ILLEGAL_INSTRUCTION) for name, code in _unsupported_cases()]


def _sim_fault(program: Program) -> Fault:
    try:
        Simulator(program).run({})
    except SimulationError as exc:
        return exc.fault
    return Fault.NONE


@pytest.fixture(scope="module")
def rtl_faults():
    programs = [Program(TINY, code) for _, code, _ in CASES]
    return {name: r for (name, _, _), r in zip(CASES, run_programs(programs, max_clocks=2000),
                                                  strict=True)}


@pytest.mark.parametrize("name,code,fault", CASES, ids=[c[0] for c in CASES])
def test_fault_cause(rtl_faults, name, code, fault):
    result = rtl_faults[name]
    assert result.fault == fault, (result.fault, result.fault_pc)
    program = Program(TINY, code)
    if not name.startswith(("unary", "binary", "ternary", "reduce", "matmul-f32")):
        assert _sim_fault(program) == fault  # the simulator agrees on the cause


def test_fault_pc_names_the_instruction(rtl_faults):
    assert rtl_faults["dram-oob"].fault_pc == 0
    assert rtl_faults["no-halt"].fault_pc == 1
    assert rtl_faults["loop-too-deep"].fault_pc == 4
