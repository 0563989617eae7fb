"""A unit's instruction queue: a first-in first-out buffer whose head is readable at once.

Unlike `amaranth.lib.fifo.SyncFIFO`, a full queue accepts a write in the cycle its head
leaves, as the ISA's dispatch rule wants (occupancy is counted after starts).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class InstructionQueue(wiring.Component):
    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({
            "w_en": In(1), "w_data": In(width),
            "r_en": In(1), "r_data": Out(width),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.mem = mem = Memory(shape=self.width, depth=depth, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        head = Signal(range(depth))
        tail = Signal(range(depth))

        m.d.comb += [rd.addr.eq(head), self.r_data.eq(rd.data),
                     wr.addr.eq(tail), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        with m.If(self.w_en):
            m.d.sync += tail.eq(_wrap(tail, depth))
        with m.If(self.r_en):
            m.d.sync += head.eq(_wrap(head, depth))
        m.d.sync += self.level.eq(self.level + self.w_en - self.r_en)
        return m


def _wrap(ptr: Signal, depth: int):
    """ptr + 1 modulo depth."""
    return Mux(ptr == depth - 1, 0, ptr + 1)
