"""A unit's instruction queue: a first-in first-out buffer whose head is readable at once.

The head is a register, loaded as the queue moves: with the entry after it (read from
the memory at an address from registers) when the head leaves, with the entry written
this clock when the queue is empty or holds only the leaving head. So the units' start
decisions and first SRAM requests begin at a register, and the start (`r_en`) only
chooses what the head register loads; the dispatch decision (`w_en`) does not reach it
(the head loads `w_data` whether it is written or not: with nothing written, the queue
is empty then and its head unused).

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
            # what the clock's edge leaves: the head, and whether there is one
            "r_next": Out(width), "filled_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.mem = mem = Memory(shape=self.width, depth=depth, init=[])
        wr = mem.write_port()
        second = mem.read_port(domain="comb")  # the entry after the head
        head = Signal(range(depth))
        tail = Signal(range(depth))
        m.d.comb += [second.addr.eq(_wrap(head, depth)),
                     wr.addr.eq(tail), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        m.d.comb += self.r_next.eq(self.r_data)
        with m.If(self.r_en):
            m.d.sync += head.eq(_wrap(head, depth))
            m.d.comb += self.r_next.eq(Mux(self.level > 1, second.data, self.w_data))
        with m.Elif(self.level == 0):
            m.d.comb += self.r_next.eq(self.w_data)
        with m.If(self.w_en):
            m.d.sync += tail.eq(_wrap(tail, depth))
        m.d.sync += [self.r_data.eq(self.r_next),
                     self.level.eq(self.level + self.w_en - self.r_en)]
        m.d.comb += self.filled_next.eq(self.w_en | (self.level > 1) |
                                        ((self.level == 1) & ~self.r_en))
        return m


def _wrap(ptr: Signal, depth: int):
    """ptr + 1 modulo depth."""
    return Mux(ptr == depth - 1, 0, ptr + 1)
