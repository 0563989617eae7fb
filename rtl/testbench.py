"""Run .dzn programs on the core in Amaranth's simulator, with the testbench DRAM.

One simulator session runs a whole batch of programs (elaborating the design is the
slow part): for each, the bench writes the code through the instruction port, raises
`run`, serves DRAM requests every clock until `done` or a fault, reads the counters,
and lowers `run` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from isa.config import ChipConfig
from isa.container import Program
from isa.encoding import encode_program
from isa.table import INSN_BYTES, Fault, Mem
from rtl.core import PERF_COUNTERS, Core
from rtl.dram import DramModel

DEFAULT_MAX_CLOCKS = 200_000


@dataclass
class RtlResult:
    """What one program did on the RTL."""

    cycles: int
    dram: np.ndarray
    fault: Fault = Fault.NONE
    fault_pc: int | None = None
    counters: dict[str, int] = field(default_factory=dict)
    clocks: int = 0  # clock cycles the run took, clearing and holds included
    run_seconds: float = 0.0  # wall-clock time of the run alone, where the bench measures it

    @property
    def finished(self) -> bool:
        return self.fault is Fault.NONE


def code_words(program: Program) -> list[int]:
    """The CODE section as 128-bit little-endian words: what the instruction port takes."""
    blob = encode_program(program.code)
    return [int.from_bytes(blob[i:i + INSN_BYTES], "little")
            for i in range(0, len(blob), INSN_BYTES)]


def imem_depth_for(programs: list[Program]) -> int:
    longest = max((len(p.code) for p in programs), default=1)
    return max(16, 1 << (longest - 1).bit_length())


def run_programs(programs: list[Program], cfg: ChipConfig | None = None,
                 inputs: list[dict[str, np.ndarray]] | None = None,
                 max_clocks: int = DEFAULT_MAX_CLOCKS, vcd: str | None = None,
                 array_dsps: int | None = None,
                 sram_slices: dict[Mem, int] | None = None) -> list[RtlResult]:
    """Run every program (all on one ChipConfig) and return their results in order
    (`array_dsps`, `sram_slices`: see `Core`)."""
    if not programs:
        return []
    cfg = cfg or programs[0].config
    dut = Core(cfg, imem_depth=imem_depth_for(programs), array_dsps=array_dsps,
               sram_slices=sram_slices)
    results: list[RtlResult] = []

    async def bench(ctx) -> None:
        for index, program in enumerate(programs):
            dram = DramModel.for_program(program, (inputs or [None] * len(programs))[index], cfg)
            ctx.set(dut.run, 0)
            for addr, word in enumerate(code_words(program)):
                ctx.set(dut.imem_we, 1)
                ctx.set(dut.imem_addr, addr)
                ctx.set(dut.imem_data, word)
                await ctx.tick()
            ctx.set(dut.imem_we, 0)
            ctx.set(dut.code_len, len(program.code))
            ctx.set(dut.run, 1)
            clocks = 0
            while clocks < max_clocks:
                if ctx.get(dut.done) or ctx.get(dut.fault):
                    break
                rd = ctx.get(dut.dram.rd_en)
                rd_addr = ctx.get(dut.dram.rd_addr)
                wr = ctx.get(dut.dram.wr_en)
                if wr:
                    wr_req = (ctx.get(dut.dram.wr_addr), ctx.get(dut.dram.wr_len),
                              ctx.get(dut.dram.wr_data))
                await ctx.tick()
                clocks += 1
                if wr:
                    dram.write(*wr_req)
                if rd:
                    ctx.set(dut.dram.rd_data, dram.read_row(rd_addr))
            fault = Fault(ctx.get(dut.fault))
            if clocks >= max_clocks and fault is Fault.NONE and not ctx.get(dut.done):
                fault = Fault.CYCLE_LIMIT
            counters = {name: ctx.get(getattr(dut, name)) for name in PERF_COUNTERS}
            results.append(RtlResult(
                cycles=counters["cycles"], dram=dram.data, fault=fault,
                fault_pc=ctx.get(dut.fault_pc) if fault is not Fault.NONE else None,
                counters=counters, clocks=clocks))
            ctx.set(dut.run, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results


def run_program(program: Program, inputs: dict[str, np.ndarray] | None = None,
                **kwargs) -> RtlResult:
    return run_programs([program], inputs=[inputs or {}], **kwargs)[0]
