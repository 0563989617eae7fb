"""Verilog export of the core (Amaranth's Verilog back end, built-in yosys).

The top module `dozen_core` has the ports of `rtl.core.Core`: `clk` and `rst`
(synchronous, active high), `run`, the instruction port `imem_*` and `code_len`, the
DRAM port `dram__*`, `done`, `fault`, `fault_pc` and the performance counters.
"""

from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from isa.config import ChipConfig
from isa.container import write_atomic
from isa.errors import InputError
from rtl.core import Core

TOP = "dozen_core"
DEFAULT_IMEM_DEPTH = 1024


def verilog_text(cfg: ChipConfig, imem_depth: int = DEFAULT_IMEM_DEPTH, name: str = TOP) -> str:
    core = Core(cfg, imem_depth=imem_depth)
    return verilog.convert(core, name=name, emit_src=False)


def write_verilog(path: str | Path, cfg: ChipConfig, imem_depth: int = DEFAULT_IMEM_DEPTH) -> int:
    """Write the core's Verilog atomically; returns its size in bytes."""
    directory = Path(path).parent
    if not directory.is_dir():  # fail before the (slow) conversion
        raise InputError(f"cannot write {path}: directory {directory} does not exist")
    text = verilog_text(cfg, imem_depth).encode()
    write_atomic(Path(path), text)
    return len(text)
