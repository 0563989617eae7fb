"""The load and store DMA units: one SRAM row per cycle between DRAM and the SRAMs.

Each unit starts on `go` with the instruction word at the head of its queue (so its
first request goes out in the start cycle) and keeps a copy for the cycles after.
`idle` falls while a transfer is in flight; the core holds the instruction's
completion until it rises again (see `rtl/core.py`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import INSN_BITS, Fmt, Op, esize
from rtl.fields import field_values
from rtl.lanes import pick
from rtl.ports import ROW_BITS, DramPort, ReadChannel, WriteChannel, len_bits

_LOAD = Op.LOAD.value
_STORE = Op.STORE.value


def dma_fields(word, opcode: int) -> dict:
    from isa.table import BY_OPCODE

    return field_values(word, BY_OPCODE[opcode])


def store_go_reads(word):
    """STORE's read request in the cycle it starts, (en, mem): worked out at dispatch and
    carried in the queue entry, like `rtl.compute.go_reads`."""
    return Cat(word[0:4] == _STORE, dma_fields(word, _STORE)["sram"][16])


class _RowSequencer:
    """The part both DMA units share: hold the instruction, then step one row a cycle.

    In the start cycle (`go`) it reads the queue head directly, so the first row's request
    goes out at once; afterwards it works from its copy. `cur_k` is the row being
    requested, `cur_addr` its DRAM address, `active` whether a row is requested this cycle,
    `row` the SRAM row (the start chooses it last, after the add: it addresses the SRAM).
    """

    def __init__(self, m: Module, go, insn, opcode: int):
        self.held = Signal(INSN_BITS)
        self.running = Signal()
        k = Signal(16)
        addr = Signal(33)
        word = Mux(go, insn, self.held)
        self.f = dma_fields(word, opcode)
        self.active = (go & (word[0:4] == opcode)) | self.running
        self.cur_k = Mux(go, 0, k)
        self.cur_addr = Mux(go, self.f["dram"], addr)
        self.held_f = dma_fields(self.held, opcode)  # the running instruction's fields
        self.row = Mux(go, dma_fields(insn, opcode)["sram"][0:16],
                       (self.held_f["sram"][0:16] + k)[0:16])
        with m.If(go):
            m.d.sync += self.held.eq(insn)
        # `running` as the clock's edge leaves it (its D input)
        self.running_next = Mux(self.active, self.cur_k + 1 < self.f["rows"], self.running)
        m.d.sync += self.running.eq(self.running_next)
        with m.If(self.active):
            m.d.sync += [k.eq(self.cur_k + 1), addr.eq(self.cur_addr + self.f["stride"])]


class LoadUnit(wiring.Component):
    """LOAD: DRAM row r (at dram + r*stride) -> lanes -> SRAM row sram+r; SYNC does nothing."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        super().__init__({
            "go": In(1), "insn": In(INSN_BITS), "idle": Out(1), "idle_next": Out(1),
            "dram": Out(DramPort(cfg)), "wr": Out(WriteChannel(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        seq = _RowSequencer(m, self.go, self.insn, _LOAD)
        f, active, hf = seq.f, seq.active, seq.held_f
        m.d.comb += [self.dram.rd_en.eq(active), self.dram.rd_addr.eq(seq.cur_addr)]

        # Stage 1: the DRAM bytes arrive; unpack them into lanes and write the row.
        p1_valid = Signal()
        p1_row = Signal(ROW_BITS)
        p1_mem = Signal()
        m.d.sync += p1_valid.eq(active)
        m.d.sync += [p1_row.eq(seq.row), p1_mem.eq(f["sram"][16])]
        data = self.dram.rd_data
        wide, signed_ = hf["fmt"] == Fmt.X32, hf["fmt"] == Fmt.I8
        lanes = []
        for c in range(cfg.n):
            # Zeros but in a row being written: the SRAM clear's zero rows go out through
            # this unit's port (`SramArbiter`), and each bit is an OR of ANDs with
            # selects made once a lane (`lanes.pick`).
            on = p1_valid & (c < hf["cols"])
            byte = data[8 * c:8 * c + 8]
            word32 = data[32 * c:32 * c + 32]
            low = pick(m, [(word32[0:8], on & wide), (byte, on & ~wide)], f"ld{c}_lo", 8)
            high = pick(m, [(word32[8:32], on & wide), (byte[7].replicate(24), on & signed_)],
                        f"ld{c}_hi", 24)
            lanes.append(Cat(low, high))
        m.d.comb += [self.wr.en.eq(p1_valid), self.wr.row.eq(p1_row), self.wr.mem.eq(p1_mem),
                     self.wr.next_en.eq(active), self.wr.next_mem.eq(f["sram"][16]),
                     self.wr.data.eq(Cat(*lanes))]
        m.d.comb += [self.idle.eq(~seq.running & ~p1_valid),
                     self.idle_next.eq(~seq.running_next & ~active)]  # as the edge leaves it
        return m


class StoreUnit(wiring.Component):
    """STORE: SRAM row sram+r -> bytes -> DRAM at dram + r*stride; SYNC does nothing."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        super().__init__({
            "go": In(1), "insn": In(INSN_BITS), "go_reads": In(2), "next_go_reads": In(2),
            "idle": Out(1), "idle_next": Out(1),
            "dram": Out(DramPort(cfg)), "rd": Out(ReadChannel(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        seq = _RowSequencer(m, self.go, self.insn, _STORE)
        active, cur_addr, hf = seq.active, seq.cur_addr, seq.held_f
        # In the start cycle, the request comes ready-made from the queue entry (the
        # arbiter chooses it by `go`, rtl.ports.ReadChannel).
        m.d.comb += [self.rd.en.eq(seq.running),
                     self.rd.mem.eq(hf["sram"][16]),
                     self.rd.go.eq(self.go), self.rd.go_en.eq(self.go_reads[0]),
                     self.rd.go_mem.eq(self.go_reads[1]),
                     self.rd.next_en.eq(seq.running_next), self.rd.next_mem.eq(seq.f["sram"][16]),
                     self.rd.next_go_en.eq(self.next_go_reads[0]),
                     self.rd.next_go_mem.eq(self.next_go_reads[1]),
                     self.rd.row.eq(seq.row)]

        # Stage 1: the SRAM row arrives; pack its lanes into bytes and write DRAM.
        p1_valid = Signal()
        p1_addr = Signal(32)
        m.d.sync += [p1_valid.eq(active), p1_addr.eq(cur_addr)]
        row = self.rd.data
        narrow = Cat(*[row[32 * c:32 * c + 8] for c in range(cfg.n)])
        wide_fmt = hf["fmt"] == Fmt.X32
        nbytes = Mux(wide_fmt, hf["cols"] * esize(Fmt.X32), hf["cols"] * esize(Fmt.I8))
        m.d.comb += [
            self.dram.wr_en.eq(p1_valid), self.dram.wr_addr.eq(p1_addr),
            self.dram.wr_data.eq(Mux(wide_fmt, row, Cat(narrow, Const(0, len(row) - len(narrow))))),
            self.dram.wr_len.eq(nbytes[:len_bits(cfg)]),
        ]
        m.d.comb += [self.idle.eq(~seq.running & ~p1_valid),
                     self.idle_next.eq(~seq.running_next & ~active)]  # as the edge leaves it
        return m
