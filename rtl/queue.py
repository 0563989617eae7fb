"""A unit's instruction queue: a first-in first-out buffer whose head is readable at once.

The head comes from flip-flops: the memory is read a clock ahead, at the slot the head
moves to (a write to that slot in the same clock passes through), so the units' start
decisions and first SRAM requests begin at a register, not at a LUT RAM's output.

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
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))
        head = Signal(range(depth))
        tail = Signal(range(depth))
        head_next = Signal.like(head)

        m.d.comb += [head_next.eq(Mux(self.r_en, _wrap(head, depth), head)),
                     rd.addr.eq(head_next), self.r_data.eq(rd.data),
                     wr.addr.eq(tail), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        with m.If(self.w_en):
            m.d.sync += tail.eq(_wrap(tail, depth))
        m.d.sync += head.eq(head_next)
        m.d.sync += self.level.eq(self.level + self.w_en - self.r_en)
        return m


def _wrap(ptr: Signal, depth: int):
    """ptr + 1 modulo depth."""
    return Mux(ptr == depth - 1, 0, ptr + 1)
