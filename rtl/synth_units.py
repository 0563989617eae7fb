"""Parts of the core to synthesise alone, so timing work need not wait for the whole chip.

Each unit is a `wiring.Component`; `UnitPins` puts it behind a dozen pins with a
register on every input bit and every output bit, so nextpnr times exactly the unit's
own paths (register to register, or through its combinational logic). Lane units are
one lane of the n-lane datapath: the n lanes are copies side by side, so one lane's
depth is the datapath's.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import INSN_BITS
from rtl import lanes as L
from rtl.fields import LATENCY_BITS, Predecoder
from rtl.queue import InstructionQueue
from rtl.synth import xor_fold


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
            (ins if member.flow == In else outs).append(Value.cast(value))  # views too
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
        m.d.sync += fold.eq(xor_fold(held))
        m.d.comb += self.sout.eq(fold)
        return m


def _control(**given) -> L.LaneControl:
    fields = {"fn": L.LANE_FN_BITS, "product": 1, "mulacc": 1, "requant": 1, "zp": 9, "lo": 9,
              "hi": 9, "shift": 1}
    values = {}
    for name, bits in fields.items():
        values[name] = given.get(name, Signal(bits, name=f"ctl_{name}"))
    for name in ("zp", "lo", "hi"):
        values[name] = values[name].as_signed()
    return L.LaneControl(**values)


class RequantLane(wiring.Component):
    """One lane of REQUANT: 64-bit product, rounding shift, zero point, clamp (the vector lane
    with its opcode fixed, so only REQUANT's paths remain)."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({"x": In(32), "mult": In(32), "shift": In(32), "zp": In(9),
                          "lo": In(9), "hi": In(9), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        ctl = _control(fn=Const(0, L.LANE_FN_BITS), product=Const(0), mulacc=Const(0),
                       requant=Const(1), zp=self.zp, lo=self.lo, hi=self.hi, shift=Const(0))
        m.d.comb += self.y.eq(L.vector_lane(m, ctl, self.x, self.mult, self.shift))
        return m


class VectorLane(wiring.Component):
    """One vector lane: UNARY, BINARY (but DIV), TERNARY, REQUANT and MOVE's copy, with the
    control a running instruction gives it (`LaneControl`)."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({"fn": In(L.LANE_FN_BITS), "product": In(1), "mulacc": In(1),
                          "requant": In(1), "zp": In(9), "lo": In(9), "hi": In(9),
                          "shift": In(1), "a": In(32), "b": In(32), "c": In(32), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        ctl = _control(**{name: getattr(self, name) for name in (
            "fn", "product", "mulacc", "requant", "zp", "lo", "hi", "shift")})
        m.d.comb += self.y.eq(L.vector_lane(m, ctl, self.a, self.b, self.c))
        return m


class DotColumn(wiring.Component):
    """One output lane of MATMUL: n int8 products summed, plus the old sum when accumulating
    (`lut_products` of them built from LUTs)."""

    def __init__(self, cfg: ChipConfig, lut_products: int = 0):
        self.n = cfg.n
        self.lut_products = lut_products
        super().__init__({"inp": In(32 * cfg.n), "wgt": In(32 * cfg.n), "old": In(32),
                          "acc": In(1), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        inp, wgt = L.split(self.inp, self.n), L.split(self.wgt, self.n)
        m.d.comb += self.y.eq(L.dot_column(m, inp, wgt, self.old, self.acc,
                                           lut_products=self.lut_products))
        return m


class ReduceTree(wiring.Component):
    """REDUCE over the lanes of a row: the log2(n)-deep combine tree, then each lane's
    combine with the old row (acc=1)."""

    def __init__(self, cfg: ChipConfig):
        self.n = cfg.n
        super().__init__({"fn": In(2), "acc": In(1), "row": In(32 * cfg.n),
                          "old": In(32 * cfg.n), "y": Out(32 * cfg.n)})

    def elaborate(self, platform):
        m = Module()
        out = L.lane_tree(m, self.fn, L.split(self.row, self.n), L.split(self.old, self.n),
                          self.acc)
        m.d.comb += self.y.eq(L.join(out))
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
    "vector": (VectorLane, "one vector lane (UNARY, BINARY but DIV, TERNARY, REQUANT, MOVE)"),
    "dot": (DotColumn, "one matrix-array column: n int8 products and their sum"),
    "dot-lut": (lambda cfg: DotColumn(cfg, lut_products=cfg.n),
                "one matrix-array column with its products built from LUTs, no DSP"),
    "reduce": (ReduceTree, "REDUCE's tree over the n lanes"),
    "decode": (Predecoder, "instruction predecoding: latency formulas and legality"),
    "queue": (_queue, "one instruction queue"),
}
