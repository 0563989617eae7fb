"""The simulator's Python API: run a program, get outputs, counters, DRAM and a trace.

    from simulator import Simulator
    result = Simulator(program).run({"A": a, "W": w})
    result.outputs["C"], result.cycles, result.report()["mac_utilization"]
    result.dram            # final DRAM bytes (uint8), what the RTL must reproduce
    result.write_trace("out.json")   # with Simulator(program, trace=True)

For hand-written instruction lists (tests, the RTL's checks) use
`Simulator(cfg).run_code(code, dram=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isa.config import ChipConfig
from isa.container import SYMBOL_DTYPES, Program, Segment, Symbol
from isa.encoding import Instruction
from isa.errors import InputError
from simulator.errors import SimulationError
from simulator.races import Race
from simulator.report import report
from simulator.semantics import Machine
from simulator.timing import DEFAULT_MAX_CYCLES, Counters, Schedule, TraceLog
from simulator.trace import chrome_trace, write_trace


@dataclass
class Result:
    """Everything one run produced."""

    cfg: ChipConfig
    counters: Counters
    dram: np.ndarray  # final DRAM contents, uint8, dram_bytes long (no copy: it is yours)
    sp: np.ndarray  # final scratchpad rows, int32 (rows, n)
    acc: np.ndarray  # final accumulator rows, int32 (rows, n)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    missing_inputs: list[str] = field(default_factory=list)  # inputs left zero
    macs: int = 0
    dram_bytes_read: int = 0
    dram_bytes_written: int = 0
    log: TraceLog | None = None
    code: list[Instruction] = field(default_factory=list)
    races: list[Race] | None = None  # with check_races=True: conflicting overlaps found

    @property
    def cycles(self) -> int:
        return self.counters.cycles

    def report(self) -> dict[str, Any]:
        """Counters and derived figures (utilisation, bandwidth, roofline) as plain data."""
        return report(self)

    def trace_events(self) -> list[dict[str, Any]]:
        """Chrome trace events (needs `trace=True`)."""
        if self.log is None:
            raise InputError("no trace was recorded: run the Simulator with trace=True")
        return chrome_trace(self)["traceEvents"]

    def write_trace(self, path: str | Path) -> None:
        """Write Chrome trace JSON (opens in ui.perfetto.dev), atomically."""
        if self.log is None:
            raise InputError("no trace was recorded: run the Simulator with trace=True")
        write_trace(self, Path(path))


class Simulator:
    """Cycle-level simulator of one chip: `Simulator(program)` or `Simulator(cfg)`."""

    def __init__(self, program_or_cfg: Program | ChipConfig, *,
                 max_cycles: int = DEFAULT_MAX_CYCLES, trace: bool = False,
                 progress: Callable[[int, int], None] | None = None,
                 check_races: bool = False):
        """`progress(instructions, cycle)`, if given, is called now and then while running
        (the command line feeds a progress bar with it). `check_races` records in
        `Result.races` every pair of instructions on different units that touch the same
        memory while both are busy (see simulator/races.py)."""
        if isinstance(program_or_cfg, Program):
            self.program: Program | None = program_or_cfg
            self.cfg = program_or_cfg.config
        elif isinstance(program_or_cfg, ChipConfig):
            self.program, self.cfg = None, program_or_cfg
        else:
            raise TypeError("Simulator takes a Program or a ChipConfig")
        self.max_cycles = max_cycles
        self.trace = trace
        self.progress = progress
        self.check_races = check_races

    def run(self, inputs: dict[str, np.ndarray] | None = None) -> Result:
        """Run the program with named inputs (missing ones stay zero); outputs by name."""
        if self.program is None:
            raise InputError("this Simulator was made from a config: use run_code(code)")
        program = self.program
        inputs = dict(inputs or {})
        known = {s.name for s in program.inputs}
        for name in inputs:
            if name not in known:
                raise InputError(f"no input named {name!r} (inputs: "
                                 f"{', '.join(sorted(known)) or 'none'})")
        dram = np.zeros(self.cfg.dram_bytes, np.uint8)
        _place_segments(dram, program.segments)
        missing = []
        for sym in program.inputs:
            if sym.name in inputs:
                _place_input(dram, sym, inputs[sym.name])
            else:
                missing.append(sym.name)
        result = self.run_code(program.code, dram=dram)
        result.missing_inputs = missing
        result.outputs = {s.name: read_symbol(result.dram, s) for s in program.outputs}
        return result

    def run_code(self, code: list[Instruction], dram: np.ndarray | None = None,
                 segments: list[Segment] | None = None) -> Result:
        """Run a bare instruction list; `dram` (uint8, dram_bytes) is used in place."""
        if dram is not None and (dram.dtype != np.uint8 or dram.shape != (self.cfg.dram_bytes,)
                                 or not dram.flags.c_contiguous or not dram.flags.writeable):
            raise InputError(f"dram must be a writeable, contiguous uint8 array of shape "
                             f"({self.cfg.dram_bytes},)")
        machine = Machine(self.cfg, dram)
        if segments:
            _place_segments(machine.dram, segments)
        schedule = Schedule(list(code), machine, self.max_cycles, self.trace, self.progress,
                            self.check_races)
        try:
            with np.errstate(all="ignore"):
                counters = schedule.run()
        except SimulationError as exc:
            # Keep what happened up to the fault (a trace of a deadlock shows who waits).
            schedule.counters.cycles = exc.cycle or 0
            exc.partial = self._result(schedule, machine, schedule.counters, code)
            raise
        return self._result(schedule, machine, counters, code)

    def _result(self, schedule: Schedule, machine: Machine, counters: Counters,
                code: list[Instruction]) -> Result:
        return Result(self.cfg, counters, machine.dram, machine.sp, machine.acc,
                      macs=machine.macs, dram_bytes_read=machine.dram_read,
                      dram_bytes_written=machine.dram_written, log=schedule.log,
                      code=list(code), races=schedule.races)


def _place_segments(dram: np.ndarray, segments: list[Segment]) -> None:
    for seg in segments:
        dram[seg.addr:seg.end] = np.frombuffer(seg.data, np.uint8)


def _place_input(dram: np.ndarray, sym: Symbol, value: Any) -> None:
    array = np.asarray(value)
    want = np.dtype(SYMBOL_DTYPES[sym.dtype])
    if array.dtype != want:
        raise InputError(f"input {sym.name!r}: dtype {array.dtype} given, the program expects "
                         f"{sym.dtype}")
    if tuple(array.shape) != tuple(sym.shape):
        raise InputError(f"input {sym.name!r}: shape {tuple(array.shape)} given, the program "
                         f"expects {tuple(sym.shape)}")
    raw = np.ascontiguousarray(array).astype(want.newbyteorder("<"), copy=False)
    dram[sym.addr:sym.addr + sym.nbytes] = raw.view(np.uint8).ravel()


def read_symbol(dram: np.ndarray, sym: Symbol) -> np.ndarray:
    """A symbol's bytes from DRAM as a shaped, typed array (a copy)."""
    dtype = np.dtype(SYMBOL_DTYPES[sym.dtype]).newbyteorder("<")
    raw = dram[sym.addr:sym.addr + sym.nbytes]
    return raw.view(dtype).reshape(sym.shape).astype(dtype.newbyteorder("="), copy=True)
