"""The testbench DRAM: a byte array behind the core's row-wide DRAM port.

The Amaranth-simulator harness (`rtl/testbench.py`) serves the port from it every
clock: a write of the clock that just ended lands first, then a read returns its row.
The cocotb bench (`rtl/cocotb_bench.py`) loads its initial image into a byte array in the
Verilog that does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.config import ChipConfig
from isa.container import Program


@dataclass
class DramModel:
    cfg: ChipConfig
    data: np.ndarray  # uint8, dram_bytes long

    @classmethod
    def for_program(cls, program: Program, inputs: dict[str, np.ndarray] | None = None,
                    cfg: ChipConfig | None = None) -> DramModel:
        """DRAM as a program starts: its data segments, then the named inputs written over them."""
        cfg = cfg or program.config
        data = np.zeros(cfg.dram_bytes, np.uint8)
        for seg in program.segments:
            data[seg.addr:seg.end] = np.frombuffer(seg.data, np.uint8)
        for name, value in (inputs or {}).items():
            sym = program.symbol(name)
            raw = np.ascontiguousarray(value).view(np.uint8).ravel()
            data[sym.addr:sym.addr + raw.size] = raw
        return cls(cfg, data)

    def read_row(self, addr: int) -> int:
        """`row_bytes` bytes from `addr` as a little-endian integer (bytes past the end are 0)."""
        width = self.cfg.row_bytes
        chunk = self.data[addr:addr + width].tobytes()
        return int.from_bytes(chunk.ljust(width, b"\0"), "little")

    def write(self, addr: int, length: int, value: int) -> None:
        raw = value.to_bytes(self.cfg.row_bytes, "little")[:length]
        end = min(addr + length, self.data.size)
        self.data[addr:end] = np.frombuffer(raw[:end - addr], np.uint8)


def with_inputs(program: Program, inputs: dict[str, np.ndarray]) -> Program:
    """The program with its named inputs baked in as data segments (for benches that take
    programs only); inputs are cast to their symbols' dtypes and must have their shapes."""
    from isa.container import SYMBOL_DTYPES, Segment
    from isa.errors import InputError

    extra = []
    for name, value in inputs.items():
        sym = program.symbol(name)
        array = np.asarray(value)
        if array.shape != tuple(sym.shape):
            raise InputError(f"input {name!r}: shape {array.shape}, the program expects "
                             f"{tuple(sym.shape)}")
        raw = np.ascontiguousarray(array.astype(SYMBOL_DTYPES[sym.dtype])).tobytes()
        extra.append(Segment(sym.addr, raw))
    covered = [(s.addr, s.end) for s in extra]
    kept = [s for s in program.segments
            if not any(a < s.end and s.addr < e for a, e in covered)]
    return Program(program.config, program.code, kept + extra, program.symbols, program.meta)
