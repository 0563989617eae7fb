"""Parts of the core to synthesise alone, so timing work need not wait for the whole chip.

Each unit is a `wiring.Component`; `UnitPins` puts it behind a dozen pins with a
register on every input bit and every output bit, so nextpnr times exactly the unit's
own paths (register to register, or through its combinational logic). Lane units are
one lane of the n-lane datapath: the n lanes are copies side by side, so one lane's
depth is the datapath's.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import INSN_BITS, Op
from rtl import lanes as L
from rtl.fields import LATENCY_BITS, Predecoder
from rtl.queue import InstructionQueue


class UnitPins(wiring.Component):
    """Any component behind a serial input and an 8-bit XOR-folded, registered output."""

    def __init__(self, unit: wiring.Component):
        self.unit = unit
        super().__init__({"sin": In(1), "sout": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        ins, outs = [], []
        for _path, member, value in unit.signature.flatten(unit):
            (ins if member.flow == In else outs).append(value)
        in_bits = max(1, sum(len(v) for v in ins))
        shift = Signal(in_bits)
        m.d.sync += shift.eq(Cat(self.sin, shift[:-1]))
        pos = 0
        for value in ins:
            m.d.comb += value.eq(shift[pos:pos + len(value)])
            pos += len(value)
        held = Signal(sum(len(v) for v in outs))
        m.d.sync += held.eq(Cat(*outs))
        fold = Signal(8)
        acc = held[0:8]
        for i in range(8, len(held), 8):
            acc = acc ^ held[i:i + 8]
        m.d.sync += fold.eq(acc)
        m.d.comb += self.sout.eq(fold)
        return m


class RequantLane(wiring.Component):
    """One lane of REQUANT: 64-bit product, rounding shift, zero point, clamp."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({"x": In(32), "mult": In(32), "shift": In(32), "zp": In(32),
                          "lo": In(32), "hi": In(32), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(L.requant(self.x.as_signed(), self.mult.as_signed(), self.shift,
                                        self.zp.as_signed(), self.lo.as_signed(),
                                        self.hi.as_signed()))
        return m


class VectorLane(wiring.Component):
    """One lane of UNARY, BINARY (but DIV) and TERNARY, chosen by opcode and fn."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({"opcode": In(4), "fn": In(5), "a": In(32), "b": In(32), "c": In(32),
                          "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        a, b, c = self.a.as_signed(), self.b.as_signed(), self.c.as_signed()
        m.d.comb += self.y.eq(L.select(self.opcode, {
            Op.UNARY: L.unary(self.fn, a),
            Op.BINARY: L.binary(self.fn, a, b),
            Op.TERNARY: L.ternary(self.fn, a, b, c),
        }, a))
        return m


class DotColumn(wiring.Component):
    """One output lane of MATMUL: n int8 products summed, plus the old sum when accumulating."""

    def __init__(self, cfg: ChipConfig):
        self.n = cfg.n
        super().__init__({"inp": In(32 * cfg.n), "wgt": In(32 * cfg.n), "old": In(32),
                          "acc": In(1), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        inp, wgt = L.split(self.inp, self.n), L.split(self.wgt, self.n)
        total = sum(L.int8(x) * L.int8(w) for x, w in zip(inp, wgt, strict=True))
        m.d.comb += self.y.eq(Mux(self.acc, total + self.old.as_signed(), total))
        return m


class ReduceTree(wiring.Component):
    """REDUCE over the lanes of a row: the log2(n)-deep combine tree."""

    def __init__(self, cfg: ChipConfig):
        self.n = cfg.n
        super().__init__({"fn": In(2), "row": In(32 * cfg.n), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(L.reduce_tree(self.fn, L.split(self.row, self.n)))
        return m


def _queue(cfg: ChipConfig) -> wiring.Component:
    from rtl.core import PC_BITS

    return InstructionQueue(INSN_BITS + LATENCY_BITS + PC_BITS, cfg.queue_depth)


def _compute(cfg: ChipConfig) -> wiring.Component:
    from rtl.compute import ComputeUnit

    return ComputeUnit(cfg)


UNITS: dict[str, tuple[Callable[[ChipConfig], wiring.Component], str]] = {
    "compute": (_compute, "the whole compute unit (matrix array, vector unit, requantiser)"),
    "requant": (RequantLane, "one requantiser lane"),
    "vector": (VectorLane, "one vector lane (UNARY, BINARY but DIV, TERNARY)"),
    "dot": (DotColumn, "one matrix-array column: n int8 products and their sum"),
    "reduce": (ReduceTree, "REDUCE's tree over the n lanes"),
    "decode": (Predecoder, "instruction predecoding: latency formulas and legality"),
    "queue": (_queue, "one instruction queue"),
}
