"""Race detection: two units touching the same memory while both are busy.

isa/model.py leaves a program undefined when units touch the same rows without a token
ordering between them: hardware reads and writes anywhere inside an instruction's busy
cycles, while the simulator applies each effect at the start cycle. Two instructions on
different units whose busy intervals overlap and whose footprints conflict (one writes
what the other reads or writes) are exactly the cases where the RTL and the simulator
may disagree; instructions that never overlap in time cannot. `Simulator(...,
check_races=True)` records every such pair in `Result.races`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.config import ChipConfig
from isa.table import Axis, MoveFn, Op, esize

MAX_RACES = 100  # stop recording after this many: one is enough to fix a program

_SP, _ACC = 0, 1
_SPACES = ("sp", "acc", "dram")


@dataclass(frozen=True)
class Footprint:
    """Keys touched: SRAM rows as mem << 20 | row, DRAM as byte addresses."""

    sram_reads: np.ndarray
    sram_writes: np.ndarray
    dram_reads: np.ndarray
    dram_writes: np.ndarray


@dataclass(frozen=True)
class Race:
    cycle: int  # when the later of the two started
    pcs: tuple[int, int]  # (earlier-started, later-started)
    units: tuple[str, str]
    space: str  # sp, acc or dram
    address: int  # the first conflicting row (SRAM) or byte (DRAM)
    kind: str  # "write/write" or "read/write"

    def __str__(self) -> str:
        unit = "row" if self.space != "dram" else "byte"
        return (f"cycle {self.cycle}: {self.units[0]} pc {self.pcs[0]} and {self.units[1]} "
                f"pc {self.pcs[1]} both busy on {self.space} {unit} {self.address:#x} "
                f"({self.kind}) with no token ordering them")


_EMPTY = np.zeros(0, np.int64)


def _rows(local_or_row: int, count: int, mem: int | None = None) -> np.ndarray:
    if mem is None:
        mem, row = local_or_row >> 16, local_or_row & 0xFFFF
    else:
        row = local_or_row
    return (mem << 20) + row + np.arange(count, dtype=np.int64)


def _dram(addr: int, stride: int, rows: int, width: int) -> np.ndarray:
    return (addr + np.arange(rows, dtype=np.int64)[:, None] * stride
            + np.arange(width, dtype=np.int64)).ravel()


def footprint(opcode: int, v: dict[str, int], cfg: ChipConfig) -> Footprint | None:
    """What one instruction reads and writes (None: nothing, e.g. SYNC)."""
    n = cfg.n
    cat = np.concatenate
    if opcode == Op.LOAD:
        width = v["cols"] * esize(v["fmt"])
        return Footprint(_EMPTY, _rows(v["sram"], v["rows"]),
                         _dram(v["dram"], v["stride"], v["rows"], width), _EMPTY)
    if opcode == Op.STORE:
        width = v["cols"] * esize(v["fmt"])
        return Footprint(_rows(v["sram"], v["rows"]), _EMPTY, _EMPTY,
                         _dram(v["dram"], v["stride"], v["rows"], width))
    if opcode == Op.MATMUL:
        dst = _rows(v["dst"], v["rows"], _ACC)
        reads = [_rows(v["inp"], v["rows"], _SP), _rows(v["wgt"], n, _SP)]
        if v["acc"]:
            reads.append(dst)
        return Footprint(cat(reads), dst, _EMPTY, _EMPTY)
    if opcode in (Op.UNARY, Op.BINARY, Op.TERNARY, Op.REQUANT):
        count = v["count"]
        reads = [_rows(v["src1"], count if v.get("step1", 1) else 1)]
        if opcode == Op.BINARY and not v["imm_mode"]:
            reads.append(_rows(v["src2"], count if v["step2"] else 1))
        if opcode == Op.TERNARY:
            reads += [_rows(v["src2"], count if v["step2"] else 1),
                      _rows(v["src3"], count if v["step3"] else 1)]
        if opcode == Op.REQUANT:
            reads.append(_rows(v["src2"], 2 * count if v["step2"] else 2))
        return Footprint(cat(reads), _rows(v["dst"], count), _EMPTY, _EMPTY)
    if opcode == Op.REDUCE:
        count = v["count"]
        dst = _rows(v["dst"], count if v["axis"] == Axis.LANES else 1)
        reads = [_rows(v["src1"], count)] + ([dst] if v["acc"] else [])
        return Footprint(cat(reads), dst, _EMPTY, _EMPTY)
    if opcode == Op.MOVE:
        items = np.arange(v["count"], dtype=np.int64)
        block = n if v["fn"] == MoveFn.TRANSPOSE else 1
        src_mem, src_row = v["src1"] >> 16, v["src1"] & 0xFFFF
        dst_mem, dst_row = v["dst"] >> 16, v["dst"] & 0xFFFF
        span = np.arange(block, dtype=np.int64)
        writes = ((dst_mem << 20) + dst_row + (items * v["dstride"])[:, None] + span).ravel()
        reads = _EMPTY if v["fn"] == MoveFn.FILL else \
            ((src_mem << 20) + src_row + (items * v["sstride"])[:, None] + span).ravel()
        return Footprint(reads, writes, _EMPTY, _EMPTY)
    return None


def conflict(a: Footprint, b: Footprint) -> tuple[str, int, str] | None:
    """(space, first address, kind) of a conflict between two footprints, or None."""
    for a_w, b_w, b_r, a_r, dram in (
            (a.sram_writes, b.sram_writes, b.sram_reads, a.sram_reads, False),
            (a.dram_writes, b.dram_writes, b.dram_reads, a.dram_reads, True)):
        for x, y, kind in ((a_w, b_w, "write/write"), (a_w, b_r, "read/write"),
                           (b_w, a_r, "read/write")):
            if x.size and y.size:
                common = np.intersect1d(x, y)
                if common.size:
                    key = int(common[0])
                    if dram:
                        return "dram", key, kind
                    return _SPACES[key >> 20], key & 0xFFFFF, kind
    return None
