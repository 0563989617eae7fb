"""Random valid, race-free integer programs for the tiny chip, and the RTL-vs-simulator check.

A program is built instruction by instruction. Each instruction's footprint (SRAM rows
and DRAM bytes read and written, LOOP iterations unrolled) is compared with every
earlier instruction of another unit that is not yet known to have finished before it;
on a conflict a token hand-off (SYNC pushes, the instruction or a SYNC pops; through a
compute relay between load and store) orders them. Vector clocks track what each unit
knows has finished, so independent work still overlaps across the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from isa.asm import format_instruction
from isa.config import PRESETS, ChipConfig
from isa.container import Program, Segment
from isa.encoding import Instruction, local_addr, make
from isa.table import (
    Axis,
    BinaryFn,
    Fault,
    Fmt,
    Mem,
    MoveFn,
    ReduceFn,
    SyncUnit,
    TernaryFn,
    UnaryFn,
    Unit,
    esize,
)

TINY = PRESETS["tiny"]
SP_WINDOW = 24  # rows of each memory the programs use: small, so instructions interact
ACC_WINDOW = 16
DRAM_WINDOW = 768
INT_UNARY = [UnaryFn.NEG, UnaryFn.ABS, UnaryFn.RELU, UnaryFn.NOT]
INT_BINARY = list(BinaryFn)
UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)


@dataclass
class Footprint:
    reads: set = field(default_factory=set)
    writes: set = field(default_factory=set)

    def conflicts(self, other: Footprint) -> bool:
        return bool(self.writes & (other.reads | other.writes) or self.reads & other.writes)

    def __ior__(self, other: Footprint) -> Footprint:
        self.reads |= other.reads
        self.writes |= other.writes
        return self


def _rows(local: int, first: int, count: int, step: int = 1) -> set:
    mem, row = local >> 16, local & 0xFFFF
    return {(mem, row + first + i * step) for i in range(count)}


def footprint(insn: Instruction, n: int) -> Footprint:
    v, name = insn.values, insn.mnemonic
    fp = Footprint()
    if name in ("load", "store"):
        width = v["cols"] * esize(v["fmt"])
        dram = {("d", v["dram"] + r * v["stride"] + b) for r in range(v["rows"])
                for b in range(width)}
        sram = _rows(v["sram"], 0, v["rows"])
        fp.reads, fp.writes = (dram, sram) if name == "load" else (sram, dram)
    elif name == "matmul":
        fp.reads = _rows(v["inp"], 0, v["rows"]) | _rows(v["wgt"], 0, n)
        fp.writes = _rows(local_addr(Mem.ACC, v["dst"]), 0, v["rows"])
        if v["acc"]:
            fp.reads |= fp.writes
    elif name in ("unary", "binary", "ternary", "requant"):
        c = v["count"]
        fp.writes = _rows(v["dst"], 0, c)
        fp.reads = _rows(v["src1"], 0, c, v.get("step1", 1))
        if name == "binary" and not v["imm_mode"]:
            fp.reads |= _rows(v["src2"], 0, c, v["step2"])
        if name == "ternary":
            fp.reads |= _rows(v["src2"], 0, c, v["step2"]) | _rows(v["src3"], 0, c, v["step3"])
        if name == "requant":
            fp.reads |= _rows(v["src2"], 0, 2 * c if v["step2"] else 2)
    elif name == "reduce":
        c = v["count"]
        fp.reads = _rows(v["src1"], 0, c)
        fp.writes = _rows(v["dst"], 0, c if v["axis"] == Axis.LANES else 1)
        if v["acc"]:
            fp.reads |= fp.writes
    elif name == "move":
        ext = n if v["fn"] == MoveFn.TRANSPOSE else 1
        for r in range(v["count"]):
            fp.writes |= _rows(v["dst"], r * v["dstride"], ext)
            if v["fn"] != MoveFn.FILL:
                fp.reads |= _rows(v["src1"], r * v["sstride"], ext)
    return fp


def _local(draw, mem: int | None = None, count: int = 1, step: int = 1) -> int:
    mem = draw(st.sampled_from([Mem.SP, Mem.ACC])) if mem is None else mem
    window = SP_WINDOW if mem == Mem.SP else ACC_WINDOW
    span = (count - 1) * step + 1
    return local_addr(mem, draw(st.integers(0, window - span)))


def _fits(insn: Instruction, n: int) -> bool:
    """Reject instructions whose source and destination rows overlap unless they coincide:
    the streaming datapath reads ahead of its writes by two rows, so only exact in-place
    updates are defined the same way on every implementation."""
    v, name = insn.values, insn.mnemonic
    if name in ("unary", "binary", "ternary", "requant", "reduce", "move"):
        fp_w = footprint(insn, n).writes
        for src, step in (("src1", "step1"), ("src2", "step2"), ("src3", "step3")):
            if src not in v or (name == "binary" and src == "src2" and v["imm_mode"]):
                continue
            if name == "move" and v["fn"] == MoveFn.FILL:
                continue
            count = v["count"]
            if name == "requant" and src == "src2":
                count = 2 * v["count"] if v["step2"] else 2
            if name == "move":
                srows = footprint(insn, n).reads
            else:
                srows = _rows(v[src], 0, count, v.get(step, 1))
            if not srows & fp_w:
                continue
            same = (v[src] == v["dst"] and v.get(step, 1) == 1 and name not in ("move",)
                    and not (name == "requant" and src == "src2")
                    and not (name == "reduce" and v["axis"] == Axis.ROWS))
            if name == "reduce" and v["axis"] == Axis.ROWS:
                same = True  # reads all rows before its one write
            if not same:
                return False
    return True


@st.composite
def unit_instruction(draw, n: int = TINY.n) -> Instruction:
    kind = draw(st.sampled_from(["load", "load", "store", "store", "matmul", "unary", "binary",
                                 "binary", "ternary", "reduce", "requant", "move"]))
    if kind in ("load", "store"):
        fmt = draw(st.sampled_from(list(Fmt)))
        rows = draw(st.integers(1, 6))
        cols = draw(st.integers(1, n))
        width = cols * esize(fmt)
        stride = draw(st.sampled_from([width, width, n * esize(fmt), width + 3, 0]))
        if rows == 1:
            stride = width
        span = (rows - 1) * stride + width
        dram = draw(st.integers(0, DRAM_WINDOW - span))
        sram = _local(draw, count=rows)
        return make(kind, sram=sram, dram=dram, stride=stride, rows=rows, cols=cols, fmt=fmt)
    if kind == "matmul":
        rows = draw(st.integers(1, 6))
        return make("matmul", dst=draw(st.integers(0, ACC_WINDOW - rows)),
                    inp=draw(st.integers(0, SP_WINDOW - rows)),
                    wgt=draw(st.integers(0, SP_WINDOW - n)), rows=rows,
                    acc=draw(st.integers(0, 1)), dtype=0)
    count = draw(st.integers(1, 5))
    step = {k: draw(st.integers(0, 1)) for k in ("step1", "step2", "step3")}
    dst = _local(draw, count=count)

    def src(k):
        return _local(draw, count=count, step=step[k])

    if kind == "unary":
        return make("unary", dst=dst, src1=src("step1"), count=count,
                    fn=draw(st.sampled_from(INT_UNARY)), dtype=0, step1=step["step1"])
    if kind == "binary":
        imm = draw(st.sampled_from([0, 1, 3, 31, 0xFFFFFFFF, 0x80000000, 7, 0x12345678]))
        return make("binary", dst=dst, src1=src("step1"), src2=src("step2"), count=count,
                    fn=draw(st.sampled_from(INT_BINARY)), dtype=0, step1=step["step1"],
                    step2=step["step2"], imm_mode=draw(st.integers(0, 1)), imm=imm)
    if kind == "ternary":
        return make("ternary", dst=dst, src1=src("step1"), src2=src("step2"), src3=src("step3"),
                    count=count, fn=draw(st.sampled_from(list(TernaryFn))), dtype=0, **step)
    if kind == "reduce":
        axis = draw(st.sampled_from(list(Axis)))
        return make("reduce", dst=_local(draw, count=count if axis == Axis.LANES else 1),
                    src1=_local(draw, count=count), count=count,
                    fn=draw(st.sampled_from(list(ReduceFn))), axis=axis, dtype=0,
                    acc=draw(st.integers(0, 1)))
    if kind == "requant":
        lo = draw(st.integers(-128, 0))
        per_row = draw(st.integers(0, 1))
        return make("requant", dst=dst, src1=src("step1"),
                    src2=_local(draw, count=2 * count if per_row else 2), count=count,
                    zp=draw(st.integers(-20, 20)), lo=lo, hi=draw(st.integers(lo, 127)),
                    step1=step["step1"], step2=per_row)
    fn = draw(st.sampled_from(list(MoveFn)))
    if fn == MoveFn.TRANSPOSE:
        count = draw(st.integers(1, 2))
        mem_d, mem_s = draw(st.sampled_from(list(Mem))), draw(st.sampled_from(list(Mem)))
        dstride = n * draw(st.sampled_from([1, 2]))
        sstride = n * draw(st.sampled_from([1, 2]))
        return make("move", dst=_local(draw, mem_d, count=count * 2, step=n),
                    src1=_local(draw, mem_s, count=count * 2, step=n), count=count, fn=fn,
                    dstride=dstride, sstride=sstride)
    dstride = draw(st.sampled_from([1, 1, 2, -1, 0]))
    sstride = draw(st.sampled_from([1, 1, 2, -1, 0]))
    first_d = _local(draw, count=count * 2, step=1)
    first_s = _local(draw, count=count * 2, step=1)
    dst = first_d + (count - 1 if dstride < 0 else 0)
    src1 = first_s + (count - 1 if sstride < 0 else 0)
    imm = draw(st.integers(0, n - 1)) if fn == MoveFn.BCAST else draw(
        st.sampled_from([0, 5, 0xFFFFFFFF, 0x7FFFFFFF]))
    return make("move", dst=dst, src1=src1, count=count, fn=fn, dstride=dstride,
                sstride=sstride, imm=imm)


_PUSH = {(Unit.LOAD, Unit.COMPUTE): "push_next", (Unit.COMPUTE, Unit.LOAD): "push_prev",
         (Unit.COMPUTE, Unit.STORE): "push_next", (Unit.STORE, Unit.COMPUTE): "push_prev"}
_POP = {(Unit.LOAD, Unit.COMPUTE): "pop_prev", (Unit.COMPUTE, Unit.LOAD): "pop_next",
        (Unit.COMPUTE, Unit.STORE): "pop_prev", (Unit.STORE, Unit.COMPUTE): "pop_next"}


class Builder:
    """Appends instructions, inserting token hand-offs wherever two units would race."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.code: list[Instruction] = []
        # Per unit: the list of (footprint) of its instructions so far, in order.
        self.history: dict[Unit, list[Footprint]] = {u: [] for u in UNITS}
        # known[u][v]: how many of v's instructions u's next instruction surely follows.
        self.known = {u: {v: 0 for v in UNITS} for u in UNITS}

    def _sync(self, unit: Unit, flags: tuple[str, ...]) -> None:
        self.code.append(make("sync", flags=flags, unit=SyncUnit(unit)))
        self.history[unit].append(Footprint())

    def _handoff(self, src: Unit, dst: Unit, pending_flags: list[str],
                 relay_pops: tuple[str, ...] = ()) -> None:
        """Order everything `src` has issued before `dst`'s next instruction."""
        if {src, dst} == {Unit.LOAD, Unit.STORE}:
            relay: list[str] = []
            self._handoff(src, Unit.COMPUTE, relay)
            self._handoff(Unit.COMPUTE, dst, pending_flags, tuple(relay))
            return
        clock = dict(self.known[src])
        clock[src] = len(self.history[src]) + 1  # the SYNC itself
        self._sync(src, (*relay_pops, _PUSH[(src, dst)]))
        pending_flags.append(_POP[(src, dst)])
        for v in UNITS:
            self.known[dst][v] = max(self.known[dst][v], clock[v])

    def add(self, insns: list[Instruction], unit: Unit, fp: Footprint, pop_on_first: bool,
            loops: list[Instruction] | None = None) -> None:
        pending: list[str] = []
        for other in UNITS:
            if other is unit:
                continue
            since = self.history[other][self.known[unit][other]:]
            if any(fp.conflicts(prev) for prev in since):
                self._handoff(other, unit, pending)
        if pending and (loops or not pop_on_first or len(set(pending)) < len(pending)):
            # One SYNC pops a channel once: a token from each hand-off, so a channel with two
            # (a direct one and one relayed through compute) takes two.
            while pending:
                flags = sorted(set(pending))
                self._sync(unit, tuple(flags))
                for flag in flags:
                    pending.remove(flag)
        self.code.extend(loops or [])
        first = insns[0]
        if pending:
            first = Instruction(first.op, first.values, frozenset(pending))
        self.code.extend([first, *insns[1:]])
        for _ in insns:
            self.history[unit].append(fp)

    def program(self, segments: list[Segment]) -> Program:
        code = [*self.code, make("halt")]
        return Program(self.cfg, code, segments)


def _unrolled(levels: list[tuple[int, dict[str, int]]], insns: list[Instruction],
              n: int) -> Footprint | None:
    """The union footprint of a (nested) LOOP body over all its iterations, offsets of every
    level added up; None if some iteration leaves the window the programs use."""
    import itertools

    total = Footprint()
    for index in itertools.product(*[range(count) for count, _ in levels]):
        offsets = {role: sum(i * deltas[role] for i, (_, deltas) in zip(index, levels,
                                                                        strict=True))
                   for role in ("dram", "dst", "src1", "src2", "src3")}
        for insn in insns:
            vals = dict(insn.values)
            for f in insn.op.fields:
                if f.role is None:
                    continue
                delta = offsets[f.role]
                if f.kind.value == "local":
                    mem, row = vals[f.name] >> 16, (vals[f.name] & 0xFFFF) + delta
                    limit = SP_WINDOW if mem == Mem.SP else ACC_WINDOW
                    if not 0 <= row < limit:
                        return None
                    vals[f.name] = (mem << 16) | row
                else:
                    vals[f.name] += delta
                    if vals[f.name] < 0:
                        return None
            moved = Instruction(insn.op, vals, insn.flags)
            fp = footprint(moved, n)
            if any(k[0] == "d" and k[1] >= DRAM_WINDOW for k in fp.reads | fp.writes):
                return None
            if any(k[0] != "d" and not 0 <= k[1] < (SP_WINDOW if k[0] == Mem.SP else ACC_WINDOW)
                   for k in fp.reads | fp.writes):
                return None
            total |= fp
    return total


def _loop_level(draw) -> tuple[int, dict[str, int]]:
    return (draw(st.integers(1, 3)),
            {"dram": draw(st.sampled_from([0, 16, 32])), "dst": draw(st.sampled_from([0, 1, 4])),
             "src1": draw(st.sampled_from([0, 1])), "src2": 0, "src3": 0})


@st.composite
def programs(draw, cfg: ChipConfig = TINY, max_items: int = 8) -> Program:
    n = cfg.n
    b = Builder(cfg)
    for _ in range(draw(st.integers(1, max_items))):
        insn = draw(unit_instruction(n))
        if not _fits(insn, n):
            continue
        unit = insn.unit
        if draw(st.integers(0, 4)) == 0:  # one or two LOOPs around this instruction
            levels = [_loop_level(draw) for _ in range(draw(st.integers(1, 2)))]
            fp = _unrolled(levels, [insn], n)
            writes_once = all(d["dst"] or count == 1 for count, d in levels)
            if fp is None or not (writes_once or insn.mnemonic == "store"):
                continue
            loops = [make("loop", count=count, body=len(levels) - i, d_dram=d["dram"],
                          d_dst=d["dst"], d_src1=d["src1"], d_src2=0, d_src3=0)
                     for i, (count, d) in enumerate(levels)]
            b.add([insn], unit, fp, pop_on_first=False, loops=loops)
        else:
            b.add([insn], unit, footprint(insn, n), pop_on_first=draw(st.booleans()))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, DRAM_WINDOW, dtype=np.uint8)
    return b.program([Segment(0, data.tobytes())])


def compare(program: Program, rtl_result, sim_result_or_fault) -> None:
    """Assert the RTL did what the simulator did: same cycles and DRAM, or the same fault."""
    try:
        _compare(rtl_result, sim_result_or_fault)
    except AssertionError as exc:
        listing = "\n".join(f"{pc:3d} {format_instruction(i)}" for pc, i in enumerate(program.code))
        raise AssertionError(f"{exc}\n{listing}") from None


def _compare(rtl_result, sim_result_or_fault) -> None:
    if isinstance(sim_result_or_fault, Fault):
        assert rtl_result.fault == sim_result_or_fault, (rtl_result.fault, sim_result_or_fault)
        return
    sim = sim_result_or_fault
    assert rtl_result.fault == Fault.NONE, (rtl_result.fault, rtl_result.fault_pc)
    # The compute unit always finishes within the table's latency (it never holds the core).
    assert rtl_result.counters["overruns"] == 0
    assert rtl_result.cycles == sim.cycles, (rtl_result.cycles, sim.cycles)
    diff = np.flatnonzero(rtl_result.dram != sim.dram)
    assert diff.size == 0, f"DRAM differs at {diff[:8]} (of {diff.size} bytes)"
    # The performance counters count the same events as the simulator's.
    units = ("load", "compute", "store")
    c = sim.counters
    mine = ([rtl_result.counters[f"{u}_busy"] for u in units],
            [rtl_result.counters[f"{u}_token_stall"] for u in units],
            rtl_result.counters["dispatch_stall"], rtl_result.counters["dispatched"])
    theirs = (list(c.busy), list(c.stalled), c.dispatch_stalled, sum(c.unit_instructions))
    assert mine == theirs, f"counters (busy, stalls, dispatch stalls, issued): {mine} vs {theirs}"
