"""SP and ACC as two-port block RAMs, shared by the core's six row channels.

The architecture lets every unit touch either SRAM in any cycle: the compute unit reads
up to three rows and writes one, the store unit reads one, the load unit writes one.
Block RAMs (an ECP5 DP16KD, a Xilinx RAMB36) have two ports. So each *architectural*
cycle takes one or more *clocks*: the arbiter ranks the cycle's requests per memory
(reads first), serves two per memory per clock, and raises `ce` (the clock enable of
every other register in the core) only in the clock that serves the last of them.
The schedule (each request's clock, and which clock is the cycle's last) is worked out
for each combination of the units' starts, and the start decisions choose among them last
(`rtl.ports.ReadChannel`: a channel's request if its unit starts and if it does not).
Whether a cycle needs one clock is worked out in the cycle before, from the units' next
requests (`next_*`: their registers' D inputs), into a flip-flop per combination, and
whether the next of its later clocks is its last into another: the clock enable, which
every register of the core waits for, is a few gates from flip-flops.
Nothing architectural can tell:
the units see every read's row in the cycle after they asked, as the channel contract
(`rtl.ports`) says, and cycle counts stay the ISA's. `stall_clocks` counts the clocks a
program spent on port conflicts: the price of block RAMs, a figure of the prototype, not
of the chip (an ASIC would build the ports the architecture names).

Read data of a request served before the cycle's last clock is kept in a register until
the cycle ends (unless no later read shares its port: then it stays at the RAM output
that long); data served in the last clock comes straight from the RAM's output in the
next clock and is kept from then on, so a unit sees the same row for a whole cycle
however many clocks it takes.

A read and a write of the same row in one cycle (a race between units, or a vector
instruction whose source overlaps its destination other than in place) reads either row:
old data when the read is served in an earlier clock, new data in the same clock (the
ports are modelled transparent to each other's writes). Race-free programs never do it;
the simulator's `--check-races` finds the programs that do. So the memories carry
`COLLISIONS_UNDEFINED`, and synthesis (`rtl.synth`) lets a same-clock read of a row the
other port writes return anything, as an ECP5 block RAM's ports do: that saves the
bypass logic that would make them transparent (a LUT and a flip-flop a bit a port).
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import Mem
from rtl.lanes import wire
from rtl.ports import ROW_BITS, ReadChannel, WriteChannel, row_width

PORTS = 2  # ports of one block RAM, each a read or a write in a clock
READS = 4  # compute a, b, c; store
WRITES = 2  # compute; load
# The RAM port (of whichever memory it asks for) each request always uses: reads a, b, c,
# store, then writes compute, load. Fixed, so a channel's read data comes from one of two
# RAM outputs and each port's write data from one unit. Chosen so the common cycles need
# one clock a memory: MATMUL's old sum (c) and its write (ACC), a vector op's a and b.
CHANNEL_PORT = (0, 1, 0, 1, 1, 0)
_REQUESTS = READS + WRITES
# Read channels no later read shares a port with: served last of the reads on their port
# (reads rank in channel order), so nothing moves their row off the RAM output before the
# cycle ends, and they need no register for a row served early.
_LAST_READERS = {c for c in range(READS)
                 if all(CHANNEL_PORT[k] != CHANNEL_PORT[c] for k in range(c + 1, READS))}
_RANK_BITS = _REQUESTS.bit_length()
# The unit each read channel belongs to (compute: a, b, c; store): its channels switch to
# their start requests together, on the unit's `go`.
READ_UNIT = (0, 0, 0, 1)
# Memory attribute: a read in the clock another port writes the same row may return
# anything on the device (race-free programs never do it); simulation stays transparent.
COLLISIONS_UNDEFINED = "dozen_collisions_undefined"


def _first_clock(m: Module, reqs: list, tag: str):
    """For requests (en, mem) in priority order, the schedule's first clock: whether every
    request is served in it (no two share a memory and port), and per request and memory
    whether it is served in it (no earlier one shares its memory and port). Pairwise
    compares: a few gates from the requests, where ranking them takes an adder each.
    Wires, not kept ones, so ABC may merge across them (into the flip-flops that hold the
    next cycle's schedule)."""
    shares = [Cat(*[en2 & (mem2 == mem) for k, (en2, mem2) in enumerate(reqs[:i])
                    if CHANNEL_PORT[k] == CHANNEL_PORT[i]]).any()
              for i, (_en, mem) in enumerate(reqs)]
    alone = wire(m, Cat(*[~(en & sh) for (en, _), sh in zip(reqs, shares, strict=True)]).all(),
                 f"alone_{tag}")
    first = [{mem_id: wire(m, en & (mem == mem_id) & ~sh,
                           f"first{i}_{mem_id.name.lower()}_{tag}")
              for mem_id in (Mem.SP, Mem.ACC)}
             for i, ((en, mem), sh) in enumerate(zip(reqs, shares, strict=True))]
    return alone, first


def _ranks(reqs: list) -> list[Value]:
    """Each request's clock in the schedule: its rank among the earlier ones to its memory
    and port."""
    rank = []
    for i, (_en, mem) in enumerate(reqs):
        before = Const(0, _RANK_BITS)
        for k, (en2, mem2) in enumerate(reqs[:i]):
            if CHANNEL_PORT[k] == CHANNEL_PORT[i]:
                before = before + (en2 & (mem2 == mem))
        rank.append(before)
    return rank


def slice_bits(rows: int, width: int, shapes: tuple[tuple[int, int], ...]) -> int:
    """Column slices for a rows x width memory, each one block RAM deep: the widest of a
    block's (depth, bits) shapes that holds every row. Deeper memories cascade blocks,
    and every read then passes a multiplexer after them (a LUT a bit a port); `width`
    when no shape is deep enough."""
    deep = [bits for depth, bits in shapes if depth >= rows]
    return min(width, max(deep)) if deep else width


class SramArbiter(wiring.Component):
    """The two SRAMs behind `READS` read and `WRITES` write channels (units drive them).

    Each request has a fixed RAM port (`CHANNEL_PORT`); a port serves its requests of a
    cycle one per clock, reads first, so a cycle takes as many clocks as its busiest port
    has requests. `clear_en`/`clear_row` write a zero row into both SRAMs (the run's first
    clocks, when no unit asks for anything) through the last writer's port, whose data
    must be zero while it does not write (the load unit's is), so no mask is needed.
    `ce` is the core's clock enable; `stall_clocks` counts clocks with `ce` low while
    `count` is high.
    """

    def __init__(self, cfg: ChipConfig, counter_bits: int = 48,
                 slices: dict[Mem, int] | None = None):
        """`slices`: build a memory as column slices this many bits wide (a layout for a
        target's block RAMs, `slice_bits`); whole otherwise."""
        self.cfg = cfg
        self.slices = dict(slices or {})
        super().__init__({
            "rd": In(ReadChannel(cfg)).array(READS),
            "wr": In(WriteChannel(cfg)).array(WRITES),
            "clear_en": In(1), "clear_row": In(ROW_BITS),
            "count": In(1),
            "ce": Out(1), "stall_clocks": Out(counter_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        width = row_width(cfg)
        mems = {}
        for mem_id, rows in ((Mem.SP, cfg.sp_rows), (Mem.ACC, cfg.acc_rows)):
            bits = self.slices.get(mem_id, width)
            name = mem_id.name.lower()
            parts = [Memory(shape=min(bits, width - lo), depth=rows, init=[],
                            attrs={COLLISIONS_UNDEFINED: 1})
                     for lo in range(0, width, bits)]
            for k, part in enumerate(parts):
                m.submodules[name if len(parts) == 1 else f"{name}{k}"] = part
            mems[mem_id] = (rows, parts)

        # Requests in priority order: reads first, then writes. A read channel asks for
        # (go_en, go_mem) in a cycle its unit starts (rtl.ports.ReadChannel): the schedule
        # is worked out for each combination of the units' starts, from flip-flops alone,
        # and the starts (the end of the core's longest control chain) choose last.
        units = sorted(set(READ_UNIT))
        go = [self.rd[READ_UNIT.index(u)].go for u in units]
        # A cycle's first clock is decided from the requests (`_first_clock`); its later
        # clocks, which only a cycle with two requests on one memory port has, from the
        # requests' ranks registered in the clock before (the requests hold still for the
        # cycle: every register behind them waits for `ce`).
        phase = Signal(_RANK_BITS)
        at_first = Signal(init=1)  # phase == 0
        final = Signal()
        alones, firsts = [], []
        for case in itertools.product((0, 1), repeat=len(units)):
            tag = "".join(map(str, case))
            nexts = [(ch.next_go_en, ch.next_go_mem) if case[units.index(READ_UNIT[c])] else
                     (ch.next_en, ch.next_mem) for c, ch in enumerate(self.rd)] + \
                    [(ch.next_en, ch.next_mem) for ch in self.wr]
            # Whether the cycle needs one clock, and which requests its first clock serves,
            # worked out in the last clock of the cycle before from the units' next
            # requests: the clock enable and the RAM ports' addresses start at registers
            # and the start decisions, which choose among these.
            alone_next, first_next = _first_clock(m, nexts, f"{tag}_next")
            alone = Signal(init=1, name=f"alone_{tag}")
            first = [{mem_id: Signal(name=f"first{i}_{mem_id.name.lower()}_{tag}")
                      for mem_id in by_mem} for i, by_mem in enumerate(first_next)]
            with m.If(final):
                m.d.sync += alone.eq(alone_next)
                m.d.sync += [first[i][mem_id].eq(value) for i, by_mem in enumerate(first_next)
                             for mem_id, value in by_mem.items()]
            alones.append(alone)
            firsts.append(first)

        def choose(values):
            """The value of the units' starts this cycle, `values` in `case` order."""
            for g in reversed(go):
                values = [Mux(g, hi, lo) for lo, hi in zip(values[0::2], values[1::2],
                                                           strict=True)]
            return values[0]

        # The cycle's requests and ranks, registered for its later clocks.
        unit_go = [go[units.index(u)] for u in READ_UNIT]
        reqs = [(Mux(g, ch.go_en, ch.en), Mux(g, ch.go_mem, ch.mem))
                for g, ch in zip(unit_go, self.rd, strict=True)] + \
               [(ch.en, ch.mem) for ch in self.wr]
        held = [(Signal(name=f"req{i}_en"), Signal(name=f"req{i}_mem"),
                 Signal(_RANK_BITS, name=f"req{i}_rank")) for i in range(_REQUESTS)]
        ranks = _ranks(reqs)
        for (en, mem), r, (h_en, h_mem, h_rank) in zip(reqs, ranks, held, strict=True):
            m.d.sync += [h_en.eq(en), h_mem.eq(mem), h_rank.eq(r)]
        # The cycle's last clock: no request ranks after it (the requests hold still, so
        # `phase` never passes the busiest port's last). Worked out a clock ahead: whether
        # the next clock is the last, a flip-flop.
        later_final = Signal(name="next_clock_last")
        m.d.sync += later_final.eq(Mux(
            at_first, Cat(*[~en | (r <= 1) for (en, _), r in zip(reqs, ranks, strict=True)]).all(),
            Cat(*[~en | (r <= phase + 1) for en, _, r in held]).all()))
        m.d.comb += final.eq(Mux(at_first, choose(alones), later_final))
        m.d.comb += self.ce.eq(final)
        m.d.sync += [phase.eq(Mux(final, 0, phase + 1)), at_first.eq(final)]
        stalls = Signal.like(self.stall_clocks)
        with m.If(self.count & ~final):
            m.d.sync += stalls.eq(stalls + 1)
        m.d.comb += self.stall_clocks.eq(stalls)
        # served_in[i][mem]: request i is served from memory `mem` in this clock.
        served_in = [{mem_id: Signal(name=f"served{i}_{mem_id.name.lower()}")
                      for mem_id in (Mem.SP, Mem.ACC)} for i in range(_REQUESTS)]
        for i, by_mem in enumerate(served_in):
            h_en, h_mem, h_rank = held[i]
            for mem_id, sig in by_mem.items():
                m.d.comb += sig.eq(Mux(at_first, choose([f[i][mem_id] for f in firsts]),
                                       h_en & (h_mem == mem_id) & (h_rank == phase)))
        served = [by_mem[Mem.SP] | by_mem[Mem.ACC] for by_mem in served_in]
        rows = [ch.row for ch in self.rd] + [ch.row for ch in self.wr]

        outs = {}
        for mem_id, (depth, slices) in mems.items():
            outs[mem_id] = []
            ports = []  # per RAM port: (addr, read enable, write enable, write data, read data)
            for j in range(PORTS):
                tag = f"{mem_id.name.lower()}{j}"
                ports.append((Signal(range(depth), name=f"{tag}_addr"), Signal(name=f"{tag}_ren"),
                              Signal(name=f"{tag}_wen"), Signal(width, name=f"{tag}_wdata"),
                              Signal(width, name=f"{tag}_rdata")))
            lo = 0
            for mem in slices:
                hi = lo + Shape.cast(mem.shape).width
                writes = [mem.write_port() for _ in range(PORTS)]
                for wp, (addr, ren, wen, wdata, rdata) in zip(writes, ports, strict=True):
                    # Transparent for the other ports' writes: what a block RAM's ports do
                    # (with a little bypass logic); old data on this port's own writes.
                    rd = mem.read_port(transparent_for=[w for w in writes if w is not wp])
                    m.d.comb += [rd.addr.eq(addr), wp.addr.eq(addr), rd.en.eq(ren),
                                 wp.en.eq(wen), wp.data.eq(wdata[lo:hi]),
                                 rdata[lo:hi].eq(rd.data)]
                lo = hi
            for j, (addr, ren, wen, wdata, rdata) in enumerate(ports):
                for i, row in enumerate(rows):
                    if CHANNEL_PORT[i] != j:
                        continue
                    with m.If(served_in[i][mem_id]):
                        m.d.comb += addr.eq(row)
                        m.d.comb += (ren if i < READS else wen).eq(1)
                    if i >= READS:  # this port's one writer (zeros while clearing: see above)
                        m.d.comb += wdata.eq(self.wr[i - READS].data)
                if j == CHANNEL_PORT[READS + WRITES - 1]:
                    with m.If(self.clear_en):
                        m.d.comb += [addr.eq(self.clear_row), wen.eq(self.clear_row < depth)]
                outs[mem_id].append(rdata)

        # Read data back to each channel, stable for the whole cycle after the request.
        for c, ch in enumerate(self.rd):
            sel_mem = Signal(name=f"rd{c}_sel_mem")
            fresh = Signal(name=f"rd{c}_fresh")  # this cycle's row is at the RAM output now
            cur = Signal(width, name=f"rd{c}_cur")
            port = CHANNEL_PORT[c]
            at_ram = Mux(sel_mem, outs[Mem.ACC][port], outs[Mem.SP][port])
            m.d.comb += ch.data.eq(Mux(fresh, at_ram, cur))
            with m.If(fresh):
                m.d.sync += cur.eq(at_ram)
            with m.If(served[c]):
                m.d.sync += sel_mem.eq(served_in[c][Mem.ACC])
            if c in _LAST_READERS:
                # No read after this one uses its port in a cycle: a row served early stays
                # at the RAM output until the cycle's last clock, and is kept from there.
                early = Signal(name=f"rd{c}_early")
                with m.If(final):
                    m.d.sync += [fresh.eq(served[c]), early.eq(0)]
                    with m.If(early):
                        m.d.sync += cur.eq(at_ram)
                with m.Else():
                    m.d.sync += fresh.eq(0)
                    with m.If(served[c]):
                        m.d.sync += early.eq(1)
                continue
            pend = Signal(name=f"rd{c}_pend")  # next cycle's row is at the RAM output now
            got = Signal(name=f"rd{c}_got")  # next cycle's row is in `nxt`
            nxt = Signal(width, name=f"rd{c}_nxt")
            with m.If(pend):
                m.d.sync += [nxt.eq(at_ram), got.eq(1)]
            with m.If(final):
                m.d.sync += [fresh.eq(served[c]), pend.eq(0), got.eq(0)]
                with m.If(~served[c] & pend):
                    m.d.sync += cur.eq(at_ram)
                with m.Elif(~served[c] & got):
                    m.d.sync += cur.eq(nxt)
            with m.Else():
                m.d.sync += [fresh.eq(0), pend.eq(served[c])]
        return m
