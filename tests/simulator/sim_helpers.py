"""Shared helpers for the simulator tests: small configs and one-line runners."""

from __future__ import annotations

import numpy as np

from isa.config import ChipConfig
from isa.encoding import Instruction, local_addr, make
from isa.table import Mem
from simulator import Result, Simulator
from simulator.semantics import Machine

# Small numbers so hand-computed timings stay readable: DMA latency = 4 + ceil(bytes / 4).
TIMING = ChipConfig(name="timing", n=4, sp_bytes=4096, acc_bytes=1024, dram_bytes=1 << 16,
                    dram_latency=4, dram_bw=4, queue_depth=2, token_depth=2, clock_mhz=100.0)
TINY = ChipConfig(name="t4", n=4, sp_bytes=4096, acc_bytes=1024, dram_bytes=1 << 16,
                  dram_latency=4, dram_bw=4, queue_depth=4, token_depth=4)

SP = lambda row: local_addr(Mem.SP, row)  # noqa: E731
ACC = lambda row: local_addr(Mem.ACC, row)  # noqa: E731
HALT = make("halt")


def run(code: list[Instruction], cfg: ChipConfig = TIMING, dram: np.ndarray | None = None,
        **kwargs) -> Result:
    if dram is not None and dram.size != cfg.dram_bytes:
        full = np.zeros(cfg.dram_bytes, np.uint8)
        full[:dram.size] = dram
        dram = full
    return Simulator(cfg, **kwargs).run_code(code, dram=dram)


def machine(cfg: ChipConfig = TINY, sp: np.ndarray | None = None,
            acc: np.ndarray | None = None) -> Machine:
    """A data path with SP/ACC rows preset (int32 or float32 arrays of shape (rows, n))."""
    m = Machine(cfg)
    for mem, rows in ((m.sp, sp), (m.acc, acc)):
        if rows is not None:
            rows = np.asarray(rows)
            mem[:rows.shape[0]] = rows.view(np.int32) if rows.dtype == np.float32 else rows
    return m


def execute(m: Machine, insn: Instruction) -> Machine:
    with np.errstate(all="ignore"):
        m.execute(insn.op.opcode, insn.values)
    return m


def f32(rows) -> np.ndarray:
    return np.asarray(rows, np.float32)


def i32(rows) -> np.ndarray:
    return np.asarray(rows, np.int64).astype(np.int32)
