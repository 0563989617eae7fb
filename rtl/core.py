"""The Dozen core: dispatcher, instruction queues, dependency tokens, units and SRAMs.

Timing follows `isa.model.TIMING` cycle by cycle. Every unit instruction carries its
latency L (the table's formula, evaluated in hardware at dispatch); a unit that starts
it at cycle s is busy until s+L. Each cycle does, in this order: completions (token
pushes), starts (token pops), one dispatch (queue occupancy counted after the starts).

The units' datapaths do their work within those L cycles in the common case (a row per
cycle). When one needs longer (a DMA of many narrow rows: the SRAMs take one row per
cycle while the formula charges DRAM bytes), the core *holds*: the
architectural clock stops, nothing completes, starts or dispatches, until the datapath
has drained. `cycles` counts architectural cycles only, so it always equals the
ISA's count; `hold_cycles` reports the extra clock cycles such a prototype spent. Only
the DMA units can hold: the compute unit's pipelines are checked against the table as
it is built, and `overruns` counts the completions that would have held (always 0).

The control is laid out for the clock: what the units start from is in flip-flops
(completion flags, the queue heads' words with the SRAM reads their start makes,
worked out at dispatch), so a start, its first SRAM requests and the arbiter's clock
enable follow each other by a few gates: the arbiter works out its schedule for each
combination of the units' starts beforehand, and the starts only choose. A loop's jump
back writes the innermost offsets (`back`) and its counter, not a bank of per-level
offset registers.

SP and ACC are two-port block RAMs behind `rtl.sram.SramArbiter`: a cycle whose SRAM
requests outnumber the ports takes more clocks, with every other register of the core
held by the arbiter's clock enable (`stall_clocks` counts them). The DRAM port's
requests go out in an architectural cycle's last clock only.

Program code lives in an instruction memory written through the `imem_*` port while
`run` is low (one 128-bit word per clock: word i is bytes 16i..16i+15 of the .dzn
CODE section, little-endian); `code_len` gives the number of instructions. Raising
`run` zeroes both SRAMs (one row per clock), then starts at pc 0; `done` or a non-zero
`fault` ends the run; lowering `run` resets every register for the next program.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import (
    Array,
    Cat,
    Const,
    EnableInserter,
    Module,
    Mux,
    ResetInserter,
    Signal,
    Value,
    signed,
)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import (
    BY_OPCODE,
    INSN_BITS,
    LAYOUTS,
    LOOP_MAX_DEPTH,
    NEIGHBOURS,
    TOKEN_FLAGS,
    Fault,
    Kind,
    Mem,
    Op,
    Unit,
)
from rtl.compute import ComputeUnit
from rtl.dma import LoadUnit, StoreUnit
from rtl.fields import (
    LATENCY_BITS,
    PREDECODED,
    QUEUED_UNITS,
    ROLES,
    SPAN_SLOTS,
    Predecoder,
    field_values,
    flag_bit,
)
from rtl.lanes import kept, replicas, wire
from rtl.ports import DramPort
from rtl.queue import InstructionQueue
from rtl.sram import COLLISIONS_UNDEFINED, SramArbiter

PC_BITS = 16
COUNTER_BITS = 48
UNITS = QUEUED_UNITS
PERF_COUNTERS = ("cycles", "hold_cycles", "stall_clocks", "dispatched", "dispatch_stall",
                 "load_busy", "compute_busy", "store_busy",
                 "load_token_stall", "compute_token_stall", "store_token_stall", "overruns")
# Units whose datapath may outlast the table's latency, holding the core: a DMA of narrow
# rows. The compute unit's pipelines are checked against the table's depths as it is
# built, so it never holds; `overruns` counts the cycles it would have (always 0).
HOLDING_UNITS = (Unit.LOAD, Unit.STORE)
_LOOP = BY_OPCODE[Op.LOOP]
# LOOP's d_X field moves every field whose role is X.
ROLE_DELTAS = {role: f"d_{role}" for role in ROLES}


def _offset_bits(role: str) -> int:
    """Bits of a role's LOOP offset, signed: the role's delta times LOOP's count, summed over
    every level (34 for the SRAM rows' 16-bit deltas, 50 for DRAM's 32-bit one)."""
    bits = {f.name: f.bits for f in _LOOP.fields}
    return bits["count"] + bits[ROLE_DELTAS[role]] + (LOOP_MAX_DEPTH - 1).bit_length()


_OFF_BITS = max(_offset_bits(role) for role in ROLES)


def _channel(src: Unit, dst: Unit) -> tuple[int, int]:
    return (int(src), int(dst))


def _flag_channels(unit: Unit) -> dict[str, tuple[int, int] | None]:
    """Which token channel each flag of `unit` pops or pushes (None: no such neighbour)."""
    prev, nxt = NEIGHBOURS[unit]
    return {
        "pop_prev": _channel(prev, unit) if prev is not None else None,
        "pop_next": _channel(nxt, unit) if nxt is not None else None,
        "push_prev": _channel(unit, prev) if prev is not None else None,
        "push_next": _channel(unit, nxt) if nxt is not None else None,
    }


CHANNELS = sorted({ch for u in UNITS for ch in _flag_channels(u).values() if ch is not None})


class Core(wiring.Component):
    """The whole chip for one ChipConfig, with room for `imem_depth` instructions;
    `array_dsps` caps the matrix array's DSP products (`ComputeUnit`); `sram_slices` lays SP
    and ACC out for a target's block RAMs (`SramArbiter`)."""

    def __init__(self, cfg: ChipConfig, imem_depth: int = 1024, array_dsps: int | None = None,
                 sram_slices: dict[Mem, int] | None = None,
                 global_net: Callable[[Module, str, Value], Value] | None = None):
        """`global_net(m, name, signal)` returns `signal` through a device's global buffer:
        the clock enable and the reset reach every register of the core, tens of thousands
        of loads that general routing spreads over the whole chip."""
        self.cfg = cfg
        self.global_net = global_net
        self.imem_depth = imem_depth
        self.array_dsps = array_dsps
        self.sram_slices = sram_slices
        members = {
            "run": In(1),
            "imem_we": In(1), "imem_addr": In(PC_BITS), "imem_data": In(INSN_BITS),
            "code_len": In(PC_BITS + 1),
            "dram": Out(DramPort(cfg)),
            "done": Out(1), "fault": Out(4), "fault_pc": Out(PC_BITS),
        }
        members.update({name: Out(COUNTER_BITS) for name in PERF_COUNTERS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # Code words go through the predecoder's pipeline on their way into the instruction
        # memory; a run starts once the last of them is in (nothing here resets it).
        m.submodules.predecode = self._pre = pre = Predecoder(self.cfg, PC_BITS)
        m.d.comb += [pre.en.eq(self.imem_we), pre.addr.eq(self.imem_addr),
                     pre.word.eq(self.imem_data)]
        running = Signal()
        m.d.comb += running.eq(self.run & ~pre.busy)
        self._running = running
        # The SRAMs are two-port block RAMs: an architectural cycle with more requests
        # than ports takes extra clocks, with every other register held (see rtl/sram.py).
        self._sram = SramArbiter(self.cfg, COUNTER_BITS, self.sram_slices)
        reset, enable = ~running, self._sram.ce
        if self.global_net is not None:
            reset = self.global_net(m, "reset", reset)
            enable = self.global_net(m, "enable", enable)
        m.submodules.sram = ResetInserter({"sync": reset})(self._sram)
        logic = Module()
        self._build(logic)
        m.submodules.logic = ResetInserter({"sync": reset})(EnableInserter({"sync": enable})(logic))
        return m

    # --------------------------------------------------------------------------------
    def _build(self, m: Module) -> None:  # noqa: C901 - the chip's control in one place
        cfg = self.cfg

        # Memories ---------------------------------------------------------------------
        # Each code word is stored with what it decides alone (latency, legality, its range
        # checks but the LOOP offset), worked out by the predecoder's pipeline as code is
        # loaded, so dispatch evaluates no formula and adds nothing to check a range.
        pre = self._pre
        # Written only while the core is stopped, so a read never meets a write of the same
        # clock: undefined, as on a block RAM, and synthesis builds no bypass for it.
        m.submodules.imem = imem = Memory(
            shape=INSN_BITS + PREDECODED.size, depth=self.imem_depth, init=[],
            attrs={COLLISIONS_UNDEFINED: 1})
        imem_w = imem.write_port()
        # Read a word ahead of the dispatcher (see `cur` and `after` below).
        imem_r = imem.read_port()
        m.d.comb += [imem_w.en.eq(pre.wr_en), imem_w.addr.eq(pre.wr_addr),
                     imem_w.data.eq(Cat(pre.wr_word, pre.out.as_value()))]
        sram = self._sram

        m.submodules.load = load = LoadUnit(cfg)
        m.submodules.compute = compute = ComputeUnit(cfg, self.array_dsps)
        m.submodules.store = store = StoreUnit(cfg)
        engines = {Unit.LOAD: load, Unit.COMPUTE: compute, Unit.STORE: store}

        # DRAM requests go out once per architectural cycle, in its last clock.
        m.d.comb += [self.dram.rd_en.eq(load.dram.rd_en & sram.ce),
                     self.dram.rd_addr.eq(load.dram.rd_addr),
                     load.dram.rd_data.eq(self.dram.rd_data),
                     self.dram.wr_en.eq(store.dram.wr_en & sram.ce),
                     self.dram.wr_addr.eq(store.dram.wr_addr),
                     self.dram.wr_len.eq(store.dram.wr_len),
                     self.dram.wr_data.eq(store.dram.wr_data)]

        # SRAM clearing when a run begins.
        started = Signal()
        clearing = Signal()
        # started & ~clearing & ~done & (fault == 0), one flip-flop: the run state every
        # start and dispatch waits on, set as the clearing ends and cleared by `done` or a
        # fault (neither happens while clearing: both need a tick), not an AND of seven.
        live = Signal()
        live_n = Signal()  # its D input (the fault and done decisions below write it)
        m.d.comb += live_n.eq(live)
        m.d.sync += live.eq(live_n)
        clr = Signal(range(max(cfg.sp_rows, cfg.acc_rows) + 1))
        with m.If(self._running & ~started):
            m.d.sync += [started.eq(1), clearing.eq(1), clr.eq(0)]
        with m.If(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == max(cfg.sp_rows, cfg.acc_rows) - 1):
                m.d.sync += clearing.eq(0)
                m.d.comb += live_n.eq(1)

        # The order of the channels is the arbiter's priority (rtl/sram.py).
        for chan, port in zip((compute.rd_a, compute.rd_b, compute.rd_c, store.rd,
                               compute.wr, load.wr), (*sram.rd, *sram.wr), strict=True):
            wiring.connect(m, chan, port)
        m.d.comb += [sram.clear_en.eq(clearing), sram.clear_row.eq(clr)]

        # Run state ----------------------------------------------------------------------
        done = Signal()
        fault = Signal(4)
        fault_pc = Signal(PC_BITS)
        cycle = Signal(COUNTER_BITS)
        m.d.comb += [self.done.eq(done), self.fault.eq(fault), self.fault_pc.eq(fault_pc)]
        raise_fault = Signal()
        fault_cause = Signal(4)
        fault_at = Signal(PC_BITS)
        # An SRAM or DRAM range fault is found on the instruction being dispatched and raised
        # the clock after, before that instruction can start: nothing ticks in that clock.
        late = Signal()
        late_cause = Signal(4)
        late_pc = Signal(PC_BITS)

        # Units: queues, busy timers, tokens -----------------------------------------------
        # A queue entry: the word (LOOP offsets applied), its latency, its pc and the SRAM
        # reads its unit makes in the cycle it starts (so the arbiter's clock enable
        # follows the start decision by a multiplexer, not by decoding the head word).
        # The load unit reads no SRAM row; the others' `go_reads` ports give the widths.
        reads_at_go = {Unit.COMPUTE: lambda s: s.go_reads,
                       Unit.STORE: lambda s: s.go_reads[0:len(store.go_reads)]}
        entry_head = INSN_BITS + LATENCY_BITS + PC_BITS
        queues = {}
        busy, left, flags, cur_pc, completing = {}, {}, {}, {}, {}
        for u in UNITS:
            extra = len(engines[u].go_reads) if u in reads_at_go else 0
            q = InstructionQueue(entry_head + extra, cfg.queue_depth)
            m.submodules[f"queue_{u.name.lower()}"] = q
            queues[u] = q
            busy[u] = Signal(name=f"busy_{u.name.lower()}")
            left[u] = Signal(LATENCY_BITS, name=f"left_{u.name.lower()}")
            flags[u] = Signal(4, name=f"flags_{u.name.lower()}")
            cur_pc[u] = Signal(PC_BITS, name=f"pc_{u.name.lower()}")
            # busy[u] & (left[u] == 0), kept as a flip-flop: the start of many paths.
            completing[u] = Signal(name=f"completing_{u.name.lower()}")
        # completing & ~idle of a DMA unit, a flip-flop (from both's D inputs, below).
        hold = Signal()
        # live & ~late & ~hold, a flip-flop from their D inputs: every start, dispatch and
        # token count waits on it, and a start is it and one flip-flop more.
        # The units' datapaths read a start in thousands of places, so the placer puts its
        # LUT among them; the dispatcher, the queues and the token counts read it across
        # the chip. Each side has its own copies of `tick` and `startable` (`go_tick`,
        # `go_startable`), so each start's LUT sits beside its readers.
        tick, go_tick = replicas("tick", 2)
        running = Signal()
        m.d.comb += running.eq(live & ~late)

        tokens = {ch: Signal(range(cfg.token_depth + 2), name=f"tok_{ch[0]}_{ch[1]}")
                  for ch in CHANNELS}
        pushed = _pushes(completing, flags)
        after_push = {ch: tokens[ch] + pushed[ch] for ch in CHANNELS}
        overflow = Cat(*[after_push[ch] > cfg.token_depth for ch in CHANNELS]).any()

        head = {u: queues[u].r_data for u in UNITS}
        head_word = {u: head[u][0:INSN_BITS] for u in UNITS}
        head_lat = {u: head[u][INSN_BITS:INSN_BITS + LATENCY_BITS] for u in UNITS}
        head_pc = {u: head[u][INSN_BITS + LATENCY_BITS:entry_head] for u in UNITS}
        free = {u: ~busy[u] | completing[u] for u in UNITS}
        # Whether each unit's head waits to start (a free unit, a queued head) and whether
        # its tokens are there are flip-flops, worked out from the state the clock's edge
        # leaves (every D input below): a start is `tick` and `startable` (both), one LUT,
        # so the clock enable, the dispatch decision and the units' go follow it closely.
        ready = {u: Signal(name=f"ready_{u.name.lower()}") for u in UNITS}
        tokens_ok = {u: Signal(name=f"tokens_ok_{u.name.lower()}") for u in UNITS}
        both = {u: replicas(f"startable_{u.name.lower()}", 2) for u in UNITS}
        startable = {u: both[u][0] for u in UNITS}
        go_startable = {u: both[u][1] for u in UNITS}
        start = {u: Signal(name=f"start_{u.name.lower()}") for u in UNITS}
        popped = {ch: Const(0) for ch in CHANNELS}
        token_wait = {}
        busy_n = {u: Signal(name=f"busy_{u.name.lower()}_next") for u in UNITS}
        completing_n = {u: Signal(name=f"completing_{u.name.lower()}_next") for u in UNITS}
        flags_n = {u: Signal(4, name=f"flags_{u.name.lower()}_next") for u in UNITS}
        for u in UNITS:
            m.d.comb += start[u].eq(tick & startable[u])
            token_wait[u] = tick & ready[u] & ~tokens_ok[u]
            for name, ch in _flag_channels(u).items():
                if ch is not None and name.startswith("pop"):
                    popped[ch] = popped[ch] | (start[u] & flag_bit(head_word[u], name))
            m.d.comb += [queues[u].r_en.eq(start[u]),
                         engines[u].go.eq(go_tick & go_startable[u]),
                         engines[u].insn.eq(head_word[u])]
            if u in reads_at_go:
                m.d.comb += [engines[u].go_reads.eq(head[u][entry_head:]),
                             engines[u].next_go_reads.eq(queues[u].r_next[entry_head:])]
            if u is Unit.COMPUTE:
                m.d.comb += engines[u].next_insn.eq(queues[u].r_next[0:INSN_BITS])
            m.d.comb += [busy_n[u].eq(busy[u]), completing_n[u].eq(completing[u]),
                         flags_n[u].eq(flags[u])]
            with m.If(tick):
                with m.If(start[u]):
                    m.d.comb += [busy_n[u].eq(1), completing_n[u].eq(head_lat[u] == 1),
                                 flags_n[u].eq(head_word[u][4:8])]
                    m.d.sync += [left[u].eq(head_lat[u] - 1), cur_pc[u].eq(head_pc[u])]
                with m.Elif(completing[u]):
                    m.d.comb += [busy_n[u].eq(0), completing_n[u].eq(0)]
                with m.Elif(busy[u]):
                    m.d.sync += left[u].eq(left[u] - 1)
                    m.d.comb += completing_n[u].eq(left[u] == 1)
            m.d.sync += [busy[u].eq(busy_n[u]), completing[u].eq(completing_n[u]),
                         flags[u].eq(flags_n[u])]
        hold_n = Cat(*[completing_n[u] & ~engines[u].idle_next for u in HOLDING_UNITS]).any()
        m.d.sync += hold.eq(hold_n)
        tokens_n = {ch: Signal.like(tokens[ch], name=f"{tokens[ch].name}_next")
                    for ch in CHANNELS}
        m.d.comb += [tokens_n[ch].eq(Mux(tick, after_push[ch] - popped[ch], tokens[ch]))
                     for ch in CHANNELS]
        m.d.sync += [tokens[ch].eq(tokens_n[ch]) for ch in CHANNELS]
        pushed_n = _pushes(completing_n, flags_n)
        for u in UNITS:
            head_n = queues[u].r_next[0:INSN_BITS]
            ok = Const(1)
            for name, ch in _flag_channels(u).items():
                if ch is not None and name.startswith("pop"):
                    ok = ok & (~flag_bit(head_n, name) | (tokens_n[ch] != 0) | pushed_n[ch])
            ready_n = (~busy_n[u] | completing_n[u]) & queues[u].filled_next
            m.d.sync += [ready[u].eq(ready_n), tokens_ok[u].eq(ok),
                         startable[u].eq(ready_n & ok), go_startable[u].eq(ready_n & ok)]

        # Dispatcher ------------------------------------------------------------------------
        pc = Signal(PC_BITS)
        pc_next = Signal(PC_BITS)
        m.d.sync += pc.eq(pc_next)
        halted = Signal()
        depth = Signal(range(LOOP_MAX_DEPTH + 1))
        lp_start = Array(Signal(PC_BITS, name=f"lp_start{i}") for i in range(LOOP_MAX_DEPTH))
        lp_end = Array(Signal(PC_BITS, name=f"lp_end{i}") for i in range(LOOP_MAX_DEPTH))
        lp_count = Array(Signal(16, name=f"lp_count{i}") for i in range(LOOP_MAX_DEPTH))
        lp_iter = Array(Signal(16, name=f"lp_iter{i}") for i in range(LOOP_MAX_DEPTH))
        # lp_iter[i] + 1 < lp_count[i], kept up to date as a flip-flop.
        lp_more = Array(Signal(name=f"lp_more{i}") for i in range(LOOP_MAX_DEPTH))
        # lp_iter[i] + 2 < lp_count[i]: what lp_more becomes at the level's next jump.
        lp_more2 = Array(Signal(name=f"lp_more2_{i}") for i in range(LOOP_MAX_DEPTH))
        # LOOP offsets per field role, negated (`back`: what the open levels move a field
        # of that role by together, subtracted, the side of each range compare that
        # changes): registers, so dispatch neither sums the levels nor adds to check a range.
        # `back` is the innermost open level's prefix sum; lp_pre[i] (what levels 0..i move
        # it by) is kept only for a level below the innermost, written as a loop opens above
        # it and read when the levels above end or it jumps back. Below the innermost a
        # level stands still, so a jump writes `back` alone, not a bank of prefix registers
        # behind the dispatch decision.
        lp_pre = {role: Array(Signal(signed(_offset_bits(role)), name=f"lp_pre_{role}{i}")
                              for i in range(LOOP_MAX_DEPTH - 1)) for role in ROLE_DELTAS}
        lp_delta = {role: Array(Signal(signed(32), name=f"lp_d_{role}{i}")
                                for i in range(LOOP_MAX_DEPTH)) for role in ROLE_DELTAS}
        back = {role: Signal(signed(_offset_bits(role)), name=f"back_{role}")
                for role in ROLE_DELTAS}
        wide = {role: Signal(signed(_OFF_BITS), name=f"back_{role}_wide") for role in ROLE_DELTAS}
        m.d.comb += [wide[role].eq(back[role]) for role in ROLE_DELTAS]  # sign-extended

        # The fetch runs a word ahead: `cur` holds the word at pc (flip-flops, so dispatch
        # starts from them, not from the block RAM's slow output) and the read port the
        # word at `after`, the pc the next dispatch moves to (a unit instruction's loop
        # back edges taken). A dispatch copies the read port into `cur` and addresses the
        # word after `after`, worked out from the loop registers as they will be.
        cur = Signal(INSN_BITS + PREDECODED.size, name="cur_word")
        after = Signal(PC_BITS, init=1, name="pc_after")
        after_next = Signal(PC_BITS)
        prime = Signal(2)  # 0: read word 0; 1: it arrives in `cur`; 2: fetching
        with m.If(prime != 2):
            m.d.sync += prime.eq(prime + 1)
        fetch_to = Signal(PC_BITS)  # the word after `after`, should the dispatcher move on
        word = cur[0:INSN_BITS]
        stored = PREDECODED(cur[INSN_BITS:])
        opcode = word[0:4]
        fv = {op.opcode: field_values(word, op) for op in BY_OPCODE.values()}

        # The word the queue gets: LOOP offsets applied to the fields they move (only the
        # field's own bits: the range checks below decide whether the result is valid).
        adjusted: dict[int, object] = {}
        for op in BY_OPCODE.values():
            parts = [word[0:8]]
            pos = 8
            for f, lsb in LAYOUTS[op.opcode]:
                raw = word[lsb:lsb + f.bits]
                if f.role is None:
                    parts.append(raw)
                elif f.kind is Kind.LOCAL:
                    parts.append(Cat((raw[0:16] - back[f.role])[0:16], raw[16]))
                else:
                    parts.append((raw - back[f.role])[0:f.bits])
                pos = lsb + f.bits
            if pos < INSN_BITS:
                parts.append(word[pos:])
            adjusted[op.opcode] = Cat(*parts)

        # Range checks: each predecoded span against its role's `back` (rtl.fields.Span),
        # the role and the kind of range stored with the word.
        sram_bad = ~stored.sram_ok
        dram_bad = Const(0)
        for i in range(SPAN_SLOTS):
            versus = Signal(signed(_OFF_BITS), name=f"span{i}_back")
            m.d.comb += versus.eq(_any([Mux(stored.span_role[i][r], wide[role], 0)
                                        for r, role in enumerate(ROLES)]))
            # Each side a kept subtraction whose sign is the compare: a carry chain, where
            # ABC had built the high bits (an SRAM role's offset sign-extended) as a chain
            # of LUTs behind the instruction memory.
            below = kept(m, stored.span_low[i].as_signed() - versus, f"span{i}_below")
            above = kept(m, versus - stored.span_high[i].as_signed(), f"span{i}_above")
            inside = ~below[-1] & ~above[-1]
            out = stored.span_on[i] & ~inside
            sram_bad = sram_bad | (out & ~stored.span_dram[i])
            dram_bad = dram_bad | (out & stored.span_dram[i])

        # What the word is, predecoded (an unknown opcode is never legal).
        illegal = ~stored.legal
        latency = stored.latency
        target = {u: stored.unit[QUEUED_UNITS.index(u)] for u in UNITS}  # one-hot
        is_unit_insn = stored.unit.any()

        # What a unit instruction at pc does to the loops (`_loop_exit`: the level it jumps
        # back at, the depth after it), and the pc after the one the next dispatch moves to,
        # for each kind of dispatch: the loop registers as they will be, so the decision only
        # chooses. The former are flip-flops, written as pc moves on from what `_after` found
        # for the instruction at `after` (the pc moved to): the fetch's path starts at them.
        jump_level = [Signal(name=f"exit_jump{k}") for k in range(LOOP_MAX_DEPTH)]
        new_depth = Signal.like(depth, name="exit_depth")
        ends_loops = Signal(name="exit_ends")  # new_depth != depth
        ends_after = Signal(LOOP_MAX_DEPTH)
        m.d.comb += ends_after.eq(Cat(*[lp_end[k] == after for k in range(LOOP_MAX_DEPTH)]))
        jumping = _any(jump_level)
        more_after = [Mux(jump_level[lv_], lp_more2[lv_], lp_more[lv_])
                      for lv_ in range(LOOP_MAX_DEPTH)]
        after_unit, unit_exit = _after(m, after, ends_after, new_depth, more_after, lp_start,
                                       "after_unit")
        lv = fv[Op.LOOP]
        loop_end = pc + lv["body"]
        loop_repeats = stored.repeats  # the loop a LOOP opens jumps back at its end
        opening = Cat(*[depth == k for k in range(LOOP_MAX_DEPTH)])
        # The loop a LOOP opens ends at `after` (pc + 1) when its body is one instruction.
        ends_after_loop = Signal(LOOP_MAX_DEPTH)
        m.d.comb += ends_after_loop.eq((ends_after & ~opening) |
                                       Mux(stored.body_one, opening, 0))
        depth_opened = wire(m, depth + 1, "depth_opened")
        after_loop, loop_exit = _after(
            m, after, ends_after_loop, depth_opened,
            [Mux(opening[k], loop_repeats, lp_more[k]) for k in range(LOOP_MAX_DEPTH)],
            [Mux(opening[k], pc + 1, lp_start[k]) for k in range(LOOP_MAX_DEPTH)], "after_loop")
        adv = Signal()  # the dispatcher moves on to `after`
        adv_loop = Signal()  # ... having opened a loop
        m.d.comb += [pc_next.eq(Mux(adv, after, pc)),
                     after_next.eq(Mux(adv_loop, after_loop, Mux(adv, after_unit, after)))]
        m.d.sync += after.eq(after_next)
        # The read port addresses the word a dispatch would need next, from flip-flops, and
        # reads only when the dispatcher moves on (else it keeps the word at `after`): the
        # dispatch decision reaches the block RAM's read enable, not its address bits.
        m.d.comb += [fetch_to.eq(Mux(stored.loop, after_loop, after_unit)),
                     imem_r.addr.eq(Mux(prime == 2, fetch_to, Mux(prime == 0, 0, after))),
                     imem_r.en.eq(adv | (prime != 2))]
        with m.If(adv):
            m.d.sync += [jump_level[k].eq(Mux(adv_loop, loop_exit[0][k], unit_exit[0][k]))
                         for k in range(LOOP_MAX_DEPTH)]
            m.d.sync += [new_depth.eq(Mux(adv_loop, loop_exit[1], unit_exit[1])),
                         ends_loops.eq(Mux(adv_loop, loop_exit[1] != depth_opened,
                                           unit_exit[1] != new_depth))]
        with m.If(adv | (prime == 1)):
            m.d.sync += cur.eq(imem_r.data)

        level_bits = max(1, (LOOP_MAX_DEPTH - 1).bit_length())

        def advance():
            m.d.comb += adv.eq(1)
            m.d.sync += depth.eq(new_depth)
            for level in range(LOOP_MAX_DEPTH):
                with m.If(jump_level[level]):
                    m.d.sync += [lp_iter[level].eq(lp_iter[level] + 1),
                                 lp_more[level].eq(lp_more2[level]),
                                 lp_more2[level].eq(lp_iter[level] + 3 < lp_count[level])]
            # The level that jumps back moves on by its delta from its prefix: `back` when
            # it is the innermost, its lp_pre when the levels above it end with the jump.
            below = [jump_level[lv_] & (depth != lv_ + 1) for lv_ in range(LOOP_MAX_DEPTH - 1)]
            top = (depth - 1)[0:level_bits]
            from_lp_pre = _any(below)
            for role in ROLE_DELTAS:
                bits = _offset_bits(role)
                from_top = back[role] - lp_delta[role][top]
                moved = [(lp_pre[role][lv_] - lp_delta[role][lv_])[0:bits]
                         for lv_ in range(LOOP_MAX_DEPTH - 1)]
                from_below = _any([Mux(below[lv_], x, 0) for lv_, x in enumerate(moved)])
                with m.If(jumping):
                    m.d.sync += back[role].eq(Mux(from_lp_pre, from_below, from_top))
                with m.Elif(ends_loops):  # loops ended: the outer levels' sum
                    outer = lp_pre[role][(new_depth - 1)[0:level_bits]]
                    m.d.sync += back[role].eq(Mux(new_depth == 0, 0, outer))

        top_end = lp_end[(depth - 1)[0:level_bits]]
        loop_bad = ((depth == LOOP_MAX_DEPTH) | (loop_end >= self.code_len) |
                    ((depth != 0) & (loop_end > top_end)))
        # Room in the target's queue, its occupancy counted after this cycle's starts.
        room = Cat(*[target[u] & ((queues[u].level != cfg.queue_depth) | start[u])
                     for u in UNITS]).any()
        dispatch_stall = Signal()
        dispatched = Signal()

        # Not held back by a fault raised this cycle: the core stops at the next, so what
        # the dispatcher writes now (a queue entry, loop registers) is never used, and the
        # fault checks stay off the dispatcher's path (its counters do wait for them).
        with m.If(tick & ~halted):
            with m.If(pc >= self.code_len):
                pass
            with m.Elif(stored.halt):
                m.d.sync += halted.eq(1)
            with m.Elif(stored.loop):
                slot = depth[0:level_bits]
                m.d.sync += [lp_start[slot].eq(pc + 1), lp_end[slot].eq(loop_end),
                             lp_count[slot].eq(lv["count"]), lp_iter[slot].eq(0),
                             lp_more[slot].eq(loop_repeats),
                             lp_more2[slot].eq(stored.repeats2),
                             depth.eq(depth + 1)]
                m.d.comb += [adv.eq(1), adv_loop.eq(1)]
                for role, dname in ROLE_DELTAS.items():
                    m.d.sync += lp_delta[role][slot].eq(lv[dname])
                    with m.If(depth != 0):  # the level below stops being the innermost
                        m.d.sync += lp_pre[role][(depth - 1)[0:level_bits]].eq(back[role])
            with m.Elif(room):
                m.d.comb += dispatched.eq(1)
                advance()
            with m.Else():
                m.d.comb += dispatch_stall.eq(1)

        entry = Cat(_select(opcode, adjusted), latency, pc)
        for u in UNITS:
            # The raw word's reads: LOOP offsets move rows, never a memory bit or a count.
            reads = reads_at_go[u](stored) if u in reads_at_go else Cat()
            m.d.comb += [queues[u].w_data.eq(Cat(entry, reads)),
                         queues[u].w_en.eq(dispatched & target[u])]

        # Faults ------------------------------------------------------------------------
        dispatching = tick & ~halted
        # A range fault ranks last: raised the clock after it was found unless another
        # fault was raised then, so its flip-flops take the check alone, every cycle.
        late_n = dispatching & is_unit_insn & (sram_bad | dram_bad)
        m.d.sync += [tick.eq(live_n & ~late_n & ~hold_n), go_tick.eq(live_n & ~late_n & ~hold_n)]
        m.d.sync += [late.eq(late_n),
                     late_pc.eq(pc),
                     late_cause.eq(Mux(sram_bad, Fault.SRAM_OUT_OF_BOUNDS,
                                       Fault.DRAM_OUT_OF_BOUNDS))]
        with m.If(late):
            with m.If(fault == 0):
                m.d.comb += [raise_fault.eq(1), fault_cause.eq(late_cause),
                             fault_at.eq(late_pc)]
        with m.Elif(tick & overflow):
            m.d.comb += [raise_fault.eq(1), fault_cause.eq(Fault.TOKEN_OVERFLOW),
                         fault_at.eq(_first_pushing_pc(completing, flags, cur_pc))]
        with m.Elif(dispatching & (pc >= self.code_len)):
            m.d.comb += [raise_fault.eq(1), fault_cause.eq(Fault.PC_OUT_OF_RANGE), fault_at.eq(pc)]
        with m.Elif(dispatching & illegal):
            m.d.comb += [raise_fault.eq(1), fault_cause.eq(Fault.ILLEGAL_INSTRUCTION),
                         fault_at.eq(pc)]
        with m.Elif(dispatching & (opcode == Op.LOOP) & loop_bad):
            m.d.comb += [raise_fault.eq(1), fault_cause.eq(Fault.LOOP_NESTING), fault_at.eq(pc)]
        with m.If(raise_fault):
            m.d.sync += [fault.eq(fault_cause), fault_pc.eq(fault_at)]
            m.d.comb += live_n.eq(0)

        # Completion and counters ----------------------------------------------------------
        all_idle = Cat(*[free[u] & (queues[u].level == 0) for u in UNITS]).all()
        with m.If(tick & ~raise_fault):
            with m.If(halted & all_idle):
                m.d.sync += done.eq(1)
                m.d.comb += live_n.eq(0)
            with m.Else():
                m.d.sync += cycle.eq(cycle + 1)
        counters = {name: Signal(COUNTER_BITS, name=f"perf_{name}") for name in PERF_COUNTERS}
        events = {"dispatched": dispatched & tick & ~raise_fault,
                  "dispatch_stall": dispatch_stall & ~raise_fault,
                  "hold_cycles": running & hold,
                  "overruns": tick & completing[Unit.COMPUTE] & ~compute.idle}
        for u in UNITS:
            name = u.name.lower()
            events[f"{name}_busy"] = tick & ((busy[u] & ~completing[u]) | start[u])
            events[f"{name}_token_stall"] = token_wait[u]
        m.d.comb += sram.count.eq(running)
        kept_elsewhere = {"cycles": cycle, "stall_clocks": sram.stall_clocks}
        for name, sig in counters.items():
            if name in kept_elsewhere:
                m.d.comb += getattr(self, name).eq(kept_elsewhere[name])
                continue
            with m.If(events[name]):
                m.d.sync += sig.eq(sig + 1)
            m.d.comb += getattr(self, name).eq(sig)


def _pushes(completing: dict, flags: dict) -> dict:
    """Per token channel, whether a unit completing pushes a token onto it."""
    flag_index = {name: i for i, name in enumerate(TOKEN_FLAGS)}
    pushed = {ch: Const(0) for ch in CHANNELS}
    for u in UNITS:
        for name, ch in _flag_channels(u).items():
            if ch is not None and name.startswith("push"):
                pushed[ch] = pushed[ch] | (completing[u] & flags[u][flag_index[name]])
    return pushed


def _any(values: list):
    """OR of `values` as a balanced tree (a one-hot selection, not a priority chain)."""
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _loop_exit(m, ends_here, depth, mores, name):
    """A unit instruction at the pc where each loop level ends or not (`ends_here`, a bit
    a level), loops open to `depth`, `mores` whether each has iterations left: the level
    it jumps back at and those it ends (one flag each, wires), and the depth after it."""
    chain = Const(1)
    jump, pop = {}, {}
    for level in reversed(range(LOOP_MAX_DEPTH)):
        active = depth > level
        at_end = wire(m, chain & active & ends_here[level], f"{name}_end{level}")
        jump[level] = wire(m, at_end & mores[level], f"{name}_jump{level}")
        pop[level] = wire(m, at_end & ~mores[level], f"{name}_pop{level}")
        chain = wire(m, chain & (~active | pop[level]), f"{name}_chain{level}")
    new_depth = depth
    for level in reversed(range(LOOP_MAX_DEPTH)):  # the outermost level ended wins
        new_depth = Mux(pop[level], level, new_depth)
    return jump, pop, new_depth


def _after(m, p, ends_here, depth, mores, starts, name):
    """The pc after a unit instruction at `p` (see `_loop_exit`; `starts` the bodies'), and
    what that instruction does to the loops: (the level it jumps back at, a flag each; the
    depth after it)."""
    jump, _, new_depth = _loop_exit(m, ends_here, depth, mores, name)
    levels = range(LOOP_MAX_DEPTH)
    pc = Mux(_any([jump[k] for k in levels]),
             _any([Mux(jump[k], starts[k], 0) for k in levels]), p + 1)
    return pc, ([jump[k] for k in levels], new_depth)


def _select(opcode, adjusted: dict[int, object]):
    out = Const(0, INSN_BITS)
    for code, value in adjusted.items():
        out = Mux(opcode == code, value, out)
    return out


def _first_pushing_pc(completing, flags, cur_pc):
    out = Const(0, PC_BITS)
    for u in reversed(UNITS):
        out = Mux(completing[u] & (flags[u][2:4] != 0), cur_pc[u], out)
    return out
