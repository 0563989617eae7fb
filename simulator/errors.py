"""The simulator's one error type: a fault of the simulated chip, located in the program."""

from __future__ import annotations

from typing import Any

from isa.errors import DozenError
from isa.table import Fault


class SimulationError(DozenError):
    """The chip faulted: names the Fault, the cycle, the pc and the instruction.

    Exit code 1 (a failed simulation), unlike bad input (2).
    """

    exit_code = 1
    partial: Any = None  # the Result up to the fault (counters, DRAM, trace), when known

    def __init__(self, fault: Fault, message: str, pc: int | None = None,
                 cycle: int | None = None, insn: str | None = None):
        self.fault, self.pc, self.cycle, self.insn, self.detail = fault, pc, cycle, insn, message
        where = []
        if cycle is not None:
            where.append(f"cycle {cycle}")
        if pc is not None:
            where.append(f"pc {pc}")
        text = f"{fault.name}"
        if where:
            text += f" at {', '.join(where)}"
        if insn:
            text += f" ({' '.join(insn.split())})"
        super().__init__(f"{text}: {message}")


class FaultSignal(Exception):
    """Raised by the data path; the scheduler adds pc, cycle and disassembly."""

    def __init__(self, fault: Fault, message: str):
        super().__init__(message)
        self.fault, self.message = fault, message
