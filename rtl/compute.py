"""The compute unit: the n x n int8 matrix array, the n-lane vector unit and the requantiser.

Streaming instructions read up to three source rows per clock (channels a, b, c) and the
rows arrive a clock later; each datapath then takes a fixed number of register stages P
and the result row is written in the clock after, so `count` rows take `count + P + 1`
clocks. P is read back from the ISA table's latency formulas (`table_depths`), never
restated here; a datapath shorter than the table's P is padded with delay registers.

- vector lanes (UNARY, BINARY but DIV, TERNARY, REQUANT, MOVE's copy/bcast/fill), P = 5:
  operand registers (FILL's and BINARY's immediate chosen into them), then
  `lanes.vector_lane`: three 18x18 DSP products and the compare-free functions; the 64-bit
  product and the compare functions (and BCAST's lane, chosen from the operand registers
  beside them); REQUANT's shift window and saturation flags (the low
  32 bits for MUL, MULACC); REQUANT's clamp and the result. `count + 6`.
- MATMUL, P = 4: n steps load the n weight rows into registers, then one input row per
  step: operand registers, the n x n int8 products (a DSP each, or LUTs past the device's
  DSPs: `array_dsps`), the adder trees cut in two with the old sum (acc=1) in the second.
  `n + rows + 5`.
- REDUCE over lanes, P = log2(n) + 2: the operand registers, a register after every level
  of the combine tree, then each lane's combine with the old row (its compare and sum side
  by side, and the choice). `count + log2(n) + 3`. REDUCE over rows folds each operand row
  into one register (a combine per clock) and writes it after the last: the vector
  pipeline's `count + 6`.
- TRANSPOSE streams a row in and a transposed row out per clock through n one-lane block
  RAMs, rotating each row in and each line out (`count*n + n + 5`); int32 DIV runs on
  iterative dividers, four lanes each in turn (`count*min(n, 4)*DIV_STEPS + 5`).

Instructions on this unit never overlap (the next starts when the table's latency has
elapsed), so each write lands before the next instruction's first read, one datapath
drives the write port at a time, and the unit never holds the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import (
    BY_OPCODE,
    DIV_LANES,
    DIV_STEPS,
    INSN_BITS,
    Axis,
    BinaryFn,
    Mem,
    MoveFn,
    Op,
    ReduceFn,
    TernaryFn,
)
from rtl import lanes as L
from rtl.fields import field_values
from rtl.ports import ROW_BITS, ReadChannel, WriteChannel, row_width

_F = {op.opcode: op for op in BY_OPCODE.values()}
_ROW = 18  # signed row arithmetic with room for strides


def _fields(word, op: Op) -> dict:
    return field_values(word, _F[int(op)])


def _mem(local):
    return local[16]


def _row(local):
    return local[0:16]


def _latency_constant(cfg: ChipConfig, op: Op, items: str, per_item: int = 1,
                      **values: int) -> int:
    """The table's latency of `op` less `per_item` clocks for each of `items` (a field),
    checked to be a constant: what a pipeline's depth is read back from."""
    d = _F[int(op)]
    found = set()
    for count in (1, 7):
        fields = {f.name: 0 for f in d.fields} | values | {items: count}
        found.add(d.cycles(fields, cfg) - per_item * count)
    if len(found) != 1:
        raise ValueError(f"{d.mnemonic}'s latency is not {per_item} x {items} + a constant")
    return found.pop()


def table_depths(cfg: ChipConfig) -> tuple[int, int, int, int]:
    """Register stages from a row's arrival to its write, read off the ISA table's formulas
    (a streaming op on `count` rows takes count + depth + 1 clocks): the vector lanes,
    MATMUL (n + rows + depth + 1), REDUCE over lanes and REDUCE over rows."""
    def depth(op: Op, items: str, extra: int = 0, **values: int) -> int:
        return _latency_constant(cfg, op, items, **values) - extra - 1

    vector = {depth(Op.UNARY, "count"), depth(Op.BINARY, "count", fn=int(BinaryFn.ADD)),
              depth(Op.TERNARY, "count"), depth(Op.REQUANT, "count")}
    vector |= {depth(Op.MOVE, "count", fn=int(fn)) for fn in MoveFn if fn != MoveFn.TRANSPOSE}
    if len(vector) != 1:
        raise ValueError(f"the vector ops share one pipeline but the table gives depths {vector}")
    return (vector.pop(), depth(Op.MATMUL, "rows", cfg.n),
            depth(Op.REDUCE, "count", axis=int(Axis.LANES)),
            depth(Op.REDUCE, "count", axis=int(Axis.ROWS)))


def _spread(total: int, caps: list[int]) -> list[int]:
    """`total` shared out over slots one at a time, round robin, none past its cap."""
    out = [0] * len(caps)
    left = min(total, sum(caps))
    while left:
        for j, cap in enumerate(caps):
            if left and out[j] < cap:
                out[j] += 1
                left -= 1
    return out


READ_CHANNELS = ("a", "b", "c")
# TRANSPOSE's clocks past count*n + n (a block of drain): the read, the operand register
# the rows enter the block RAMs from, their read, the register after it, and the write.
TRANSPOSE_STAGES = 5


def transpose_stages(cfg: ChipConfig) -> int:
    """The table's TRANSPOSE latency less count*n + n (the streaming and the drain)."""
    return _latency_constant(cfg, Op.MOVE, "count", cfg.n, fn=int(MoveFn.TRANSPOSE)) - cfg.n


def _last_stage(m: Module, lanes: list[Signal], pad: int, name: str, keep: Value) -> Value:
    """A datapath's lanes (each a register) after `pad` clocks of delay, as a row whose
    last register holds zeros unless `keep` (its row is written the clock after): rows
    that are zero when not written can be ORed onto the write port."""
    last = [L.delay(m, x, pad, f"{name}{i}") for i, x in enumerate(lanes)]
    with m.If(~keep):
        m.d.sync += [x.eq(0) for x in last]
    return L.join(last)


def _rotate(lanes: list[Value], by: list[Value]) -> list[Value]:
    """out[b] = lanes[(b - by[b]) mod n], n a power of two, every by[b] alike (a copy for
    each lane: `L.replicas`): a level of 2:1 muxes per bit of it, a LUT a bit each."""
    n = len(lanes)
    for k in range(len(by[0])):
        step = 1 << k
        lanes = [Mux(by[b][k], lanes[(b - step) % n], lanes[b]) for b in range(n)]
    return lanes


@dataclass
class _Decoded:
    """An instruction word as the compute unit sees it when it starts."""

    f: dict  # Op -> its fields
    is_: dict  # Op -> opcode matches
    is_transpose: Value
    is_div: Value
    steps: Value  # rows a streaming instruction reads (0: TRANSPOSE, DIV, SYNC)
    streams: Value  # steps != 0, decided without the add of MATMUL's steps
    many: Value  # steps > 1, likewise
    base: dict  # channel -> (first row, memory, row step)
    uses: dict  # read channel -> whether a streaming instruction reads it


def _decode(m: Module, word, n: int) -> _Decoded:
    opcode = word[0:4]
    f = {op: _fields(word, op) for op in (Op.MATMUL, Op.UNARY, Op.BINARY, Op.TERNARY,
                                          Op.REDUCE, Op.REQUANT, Op.MOVE)}
    is_ = {op: opcode == int(op) for op in f}
    un, bi, te, re_, rq, mv, mm = (f[op] for op in (
        Op.UNARY, Op.BINARY, Op.TERNARY, Op.REDUCE, Op.REQUANT, Op.MOVE, Op.MATMUL))
    is_transpose = is_[Op.MOVE] & (mv["fn"] == MoveFn.TRANSPOSE)
    is_div = is_[Op.BINARY] & (bi["fn"] == BinaryFn.DIV)

    # Steps of a streaming instruction (everything but TRANSPOSE, DIV and SYNC).
    steps, streams, many = Signal(18), Signal(), Signal()
    m.d.comb += [steps.eq(0), streams.eq(0), many.eq(0)]
    with m.Switch(opcode):
        with m.Case(int(Op.MATMUL)):
            m.d.comb += [steps.eq(n + mm["rows"]), streams.eq(1),
                         many.eq(1 if n > 1 else mm["rows"] != 0)]
        for op, fv in ((Op.UNARY, un), (Op.BINARY, bi), (Op.TERNARY, te), (Op.REDUCE, re_),
                       (Op.REQUANT, rq), (Op.MOVE, mv)):
            with m.Case(int(op)):
                count = fv["count"]
                skip = {Op.BINARY: is_div, Op.MOVE: is_transpose}.get(op, Const(0))
                m.d.comb += [steps.eq(Mux(skip, 0, count)),
                             streams.eq(~skip & (count != 0)), many.eq(~skip & count[1:].any())]

    base = {x: (Signal(_ROW, name=f"{x}_base"), Signal(name=f"{x}_bmem"),
                Signal(signed(_ROW), name=f"{x}_bstep")) for x in "abcw"}
    uses = {x: Signal(name=f"{x}_uses") for x in READ_CHANNELS}

    def set_base(x, local_row, mem, step, used=1):
        r, mm_, st = base[x]
        m.d.comb += [r.eq(local_row), mm_.eq(mem), st.eq(step)]
        if x in uses:
            m.d.comb += uses[x].eq(used)

    with m.Switch(opcode):
        with m.Case(int(Op.MATMUL)):
            set_base("a", mm["wgt"], Mem.SP, 1)
            set_base("b", mm["inp"], Mem.SP, 1)
            set_base("c", mm["dst"], Mem.ACC, 1, mm["acc"])
            set_base("w", mm["dst"], Mem.ACC, 1)
        with m.Case(int(Op.UNARY)):
            set_base("a", _row(un["src1"]), _mem(un["src1"]), un["step1"])
            set_base("w", _row(un["dst"]), _mem(un["dst"]), 1)
        with m.Case(int(Op.BINARY)):
            set_base("a", _row(bi["src1"]), _mem(bi["src1"]), bi["step1"])
            set_base("b", _row(bi["src2"]), _mem(bi["src2"]), bi["step2"], ~bi["imm_mode"])
            set_base("w", _row(bi["dst"]), _mem(bi["dst"]), 1)
        with m.Case(int(Op.TERNARY)):
            set_base("a", _row(te["src1"]), _mem(te["src1"]), te["step1"])
            set_base("b", _row(te["src2"]), _mem(te["src2"]), te["step2"])
            set_base("c", _row(te["src3"]), _mem(te["src3"]), te["step3"])
            set_base("w", _row(te["dst"]), _mem(te["dst"]), 1)
        with m.Case(int(Op.REDUCE)):
            lanes_axis = re_["axis"] == Axis.LANES
            set_base("a", _row(re_["src1"]), _mem(re_["src1"]), 1)
            set_base("c", _row(re_["dst"]), _mem(re_["dst"]), lanes_axis, re_["acc"])
            set_base("w", _row(re_["dst"]), _mem(re_["dst"]), lanes_axis)
        with m.Case(int(Op.REQUANT)):
            set_base("a", _row(rq["src1"]), _mem(rq["src1"]), rq["step1"])
            set_base("b", _row(rq["src2"]), _mem(rq["src2"]), rq["step2"] * 2)
            set_base("c", _row(rq["src2"]) + 1, _mem(rq["src2"]), rq["step2"] * 2)
            set_base("w", _row(rq["dst"]), _mem(rq["dst"]), 1)
        with m.Case(int(Op.MOVE)):
            fill = mv["fn"] == MoveFn.FILL
            set_base("a", _row(mv["src1"]), _mem(mv["src1"]), mv["sstride"], ~fill)
            set_base("w", _row(mv["dst"]), _mem(mv["dst"]), mv["dstride"])
    return _Decoded(f, is_, is_transpose, is_div, steps, streams, many, base, uses)


def go_reads(m: Module, word, n: int):
    """The read requests the compute unit makes in the cycle it starts `word`: (en, mem)
    of channels a, b, c, low bits first.

    The core works them out at dispatch and carries them in the queue entry
    (`ComputeUnit.go_reads`), so the SRAM arbiter's clock enable need not wait for the
    head of the queue to be decoded: a start's requests are the start signal and flip-flops.
    """
    d = _decode(m, word, n)
    mv = d.f[Op.MOVE]
    streaming = d.streams
    en = {x: streaming & d.uses[x] for x in READ_CHANNELS}
    en["b"] &= ~d.is_[Op.MATMUL]  # MATMUL's first n steps read its weights (a) alone
    en["c"] &= ~d.is_[Op.MATMUL]
    mem = {x: d.base[x][1] for x in READ_CHANNELS}
    # TRANSPOSE reads its first row at once (if it has a block); DIV its first a and b.
    en["a"] = Mux(d.is_transpose, mv["count"] != 0, Mux(d.is_div, 1, en["a"]))
    en["b"] = Mux(d.is_transpose, 0, Mux(d.is_div, 1, en["b"]))
    return Cat(*[Cat(en[x], mem[x]) for x in READ_CHANNELS])


class ComputeUnit(wiring.Component):
    def __init__(self, cfg: ChipConfig, array_dsps: int | None = None):
        """`array_dsps`: how many of the array's n*n int8 products get a DSP of their own
        (None: all); as many others as the vector lanes have DSPs use theirs, the rest are
        built from LUTs, each kind spread evenly over the columns."""
        self.cfg = cfg
        self.depths = table_depths(cfg)
        self.array_dsps = cfg.n * cfg.n if array_dsps is None else max(0, array_dsps)
        super().__init__({
            "go": In(1), "insn": In(INSN_BITS), "go_reads": In(2 * len(READ_CHANNELS)),
            # The queue head's D input: `insn` a clock later (the start's first rows are
            # decoded from it into flip-flops).
            "next_insn": In(INSN_BITS), "next_go_reads": In(2 * len(READ_CHANNELS)),
            "idle": Out(1),
            "rd_a": Out(ReadChannel(cfg)), "rd_b": Out(ReadChannel(cfg)),
            "rd_c": Out(ReadChannel(cfg)), "wr": Out(WriteChannel(cfg)),
        })

    def elaborate(self, platform):  # noqa: C901 - one datapath, kept together
        m = Module()
        n = self.cfg.n
        width = row_width(self.cfg)

        # The head of the queue is decoded whether it starts or not, and what the running
        # instruction needs later is kept in flip-flops as it starts: `go` (the end of the
        # core's longest control chain) only picks between the two, last.
        held = Signal(INSN_BITS)
        held_next = Mux(self.go, self.insn, held)
        m.d.sync += held.eq(held_next)
        d = _decode(m, self.insn, n)
        is_, base = d.is_, d.base
        un, bi, te, re_, rq, mv, mm = (d.f[op] for op in (
            Op.UNARY, Op.BINARY, Op.TERNARY, Op.REDUCE, Op.REQUANT, Op.MOVE, Op.MATMUL))
        is_transpose, is_div = d.is_transpose, d.is_div
        reduce_rows = is_[Op.REDUCE] & (re_["axis"] == Axis.ROWS)
        steps = Signal.like(d.steps, name="steps_held")
        mm_held = Signal()
        rr_held = Signal()
        mm_held_next = Mux(self.go, is_[Op.MATMUL], mm_held)
        m.d.sync += mm_held.eq(mm_held_next)
        with m.If(self.go):
            m.d.sync += [steps.eq(d.steps), rr_held.eq(reduce_rows)]

        running = Signal()
        k = Signal(18)
        cur_k = Mux(self.go, 0, k)
        active = Mux(self.go, d.streams, running)

        # Per-channel row, memory and per-step increment, chosen at go.
        def chan(name):
            return (Signal(_ROW, name=f"{name}_row"), Signal(name=f"{name}_mem"),
                    Signal(signed(_ROW), name=f"{name}_step"))
        a_row, a_mem, a_step = chan("a")
        b_row, b_mem, b_step = chan("b")
        c_row, c_mem, c_step = chan("c")
        w_row, w_mem, w_step = chan("w")

        # mm_held & (k < n), kept as a flip-flop (its D input that of the next k and
        # mm_held), so the read requests and the arbiter's clock enable start at a register.
        weights_now = Signal()
        k_next = Mux(active, cur_k + 1, k)
        weights_next = mm_held_next & (k_next < n)
        m.d.sync += [k.eq(k_next), weights_now.eq(weights_next)]
        in_weights = Mux(self.go, is_[Op.MATMUL], weights_now)  # (a start's step is 0 < n)
        regs = {"a": (a_row, a_mem, a_step), "b": (b_row, b_mem, b_step),
                "c": (c_row, c_mem, c_step), "w": (w_row, w_mem, w_step)}
        # A start's first read rows, decoded a clock ahead from the head to come: from
        # flip-flops, `go` the last choice before the SRAM arbiter's address multiplexers
        # (decoding the head took some five LUTs, an add for REQUANT's c among them).
        ahead = _decode(m, self.next_insn, n).base
        go_row = {x: L.reg(m, ahead[x][0], f"{x}_go_row") for x in READ_CHANNELS}
        cur = {}
        for x, (r, mem, st) in regs.items():
            br, bm, bs = base[x]
            cur[x] = (Mux(self.go, go_row.get(x, br), r), Mux(self.go, bm, mem),
                      Mux(self.go, bs, st))
            with m.If(self.go):
                m.d.sync += [mem.eq(bm), st.eq(bs)]
        # MATMUL streams weights on channel a, then inputs on b with the old sums on c.
        mm_advance_bc = ~in_weights
        running_next = Mux(active, Mux(self.go, d.many, k + 1 < steps), running)
        m.d.sync += running.eq(running_next)
        with m.If(active):
            m.d.sync += a_row.eq(cur["a"][0] + cur["a"][2])
            with m.If(mm_advance_bc):
                m.d.sync += [b_row.eq(cur["b"][0] + cur["b"][2]),
                             c_row.eq(cur["c"][0] + cur["c"][2])]
            with m.Else():
                m.d.sync += [b_row.eq(cur["b"][0]), c_row.eq(cur["c"][0])]
        with m.Elif(self.go):
            m.d.sync += [a_row.eq(base["a"][0]), b_row.eq(base["b"][0]), c_row.eq(base["c"][0])]

        # A streaming instruction reads only the channels it uses, MATMUL its weights (a)
        # and then its inputs and old sums (b, c): a cycle with fewer requests takes fewer
        # clocks of the two-port SRAMs. After the start cycle, from flip-flops only.
        streams = {x: Signal(name=f"{x}_streams") for x in READ_CHANNELS}
        streams_next = {x: Mux(self.go, d.uses[x], streams[x]) for x in READ_CHANNELS}
        m.d.sync += [streams[x].eq(streams_next[x]) for x in READ_CHANNELS]
        # The requests of the cycle after this one (should the unit not start then), from
        # the D inputs of the registers they are a function of: registered, they reach the
        # SRAM arbiter's clock enable from flip-flops (see `requests` below).
        stream_next = {"a": running_next & streams_next["a"] & (~mm_held_next | weights_next),
                       "b": running_next & streams_next["b"] & ~weights_next,
                       "c": running_next & streams_next["c"] & ~weights_next}
        for x, port in zip(READ_CHANNELS, self._reads(), strict=True):
            m.d.comb += port.row.eq(cur[x][0][0:ROW_BITS])

        # The rows arrive a clock after their read ("stage 0"); each datapath then takes the
        # table's number of register stages (`depths`) and the row is written the clock after.
        dv, dm, drl, drr = self.depths
        p1_valid = Signal()
        p1_first = Signal()
        p1_weight = Signal()
        p1_k = Signal(range(max(n, 2)))
        m.d.sync += [p1_valid.eq(active), p1_first.eq(cur_k == 0), p1_weight.eq(in_weights),
                     p1_k.eq(cur_k[0:max(1, (n - 1).bit_length())])]
        # Which rows write: every row but MATMUL's weights, and REDUCE over rows' last.
        writes = Mux(self.go,
                     ~is_[Op.MATMUL] & (~reduce_rows | ~d.many),
                     Mux(mm_held, ~weights_now, ~rr_held | (k + 1 == steps)))
        emit = Signal(max(dv, dm, drl, drr) + 1)  # emit[i]: a row to write i clocks after arrival
        emit_next = Cat(active & writes, emit[:-1])
        m.d.sync += emit.eq(emit_next)

        h = {op: _fields(held, op) for op in (Op.MATMUL, Op.UNARY, Op.BINARY, Op.TERNARY,
                                              Op.REDUCE, Op.REQUANT, Op.MOVE)}
        a = L.split(self.rd_a.data, n)
        b = L.split(self.rd_b.data, n)
        c = L.split(self.rd_c.data, n)

        weights = Array(Signal(width, name=f"w{i}") for i in range(n))
        with m.If(p1_valid & p1_weight):
            m.d.sync += weights[p1_k].eq(self.rd_a.data)
        wl = [L.split(weights[i], n) for i in range(n)]

        # The running instruction, decoded once as it starts (registers beside `held`). One
        # register each, not a copy per lane: a copy per lane loads `go` (and the SRAM
        # read-back's copies the clock enable) sixteen times over, on the paths into the
        # clock enable's global buffer (rtl/README.md).
        def decoded(name, value, shape=1):
            sig = Signal(shape, name=name)
            with m.If(self.go):
                m.d.sync += sig.eq(value)
            return sig

        def lane_code(fn, table):
            return L.select(fn, {k: Const(int(v), L.LANE_FN_BITS) for k, v in table.items()},
                            Const(int(L.LaneFn.PASS), L.LANE_FN_BITS))

        is_bcast = is_[Op.MOVE] & (mv["fn"] == MoveFn.BCAST)
        lane_fn = Mux(is_[Op.UNARY], lane_code(un["fn"], L.UNARY_LANE_FN),
                      Mux(is_[Op.BINARY], lane_code(bi["fn"], L.BINARY_LANE_FN),
                          Mux(is_[Op.TERNARY], lane_code(te["fn"], L.TERNARY_LANE_FN),
                              Mux(is_bcast, int(L.LaneFn.BCAST), int(L.LaneFn.PASS)))))
        is_mulacc = is_[Op.TERNARY] & (te["fn"] == TernaryFn.MULACC)
        shift = decoded("ctl_shift",
                        is_[Op.BINARY] & Cat(*[bi["fn"] == fn for fn in L.SHIFT_FNS]).any())
        shift_left = decoded("ctl_shift_left", bi["fn"] == BinaryFn.SHL)
        ctl = L.LaneControl(
            fn=decoded("ctl_fn", lane_fn, L.LANE_FN_BITS),
            product=decoded("ctl_product", (is_[Op.BINARY] & (bi["fn"] == BinaryFn.MUL))
                            | is_mulacc),
            mulacc=decoded("ctl_mulacc", is_mulacc),
            requant=decoded("ctl_requant", is_[Op.REQUANT]),
            zp=h[Op.REQUANT]["zp"], lo=h[Op.REQUANT]["lo"], hi=h[Op.REQUANT]["hi"],
            shift=shift)
        fill = decoded("ctl_fill", is_[Op.MOVE] & (mv["fn"] == MoveFn.FILL))
        imm_b = decoded("ctl_imm_b", is_[Op.BINARY] & bi["imm_mode"])
        # Signed, as the lanes are: an unsigned immediate beside a signed lane would widen the
        # operand by a bit and compare 0xFFFFFFFF as 2^32 - 1, not -1.
        imm = decoded("ctl_imm", Mux(is_[Op.MOVE], mv["imm"], bi["imm"]), signed(32))
        cls_of = {"matmul": is_[Op.MATMUL], "reduce_lanes": is_[Op.REDUCE] & ~reduce_rows,
                  "reduce_rows": reduce_rows}
        cls = {name: decoded(f"ctl_{name}", value) for name, value in cls_of.items()}
        cls_next = {name: Mux(self.go, value, cls[name]) for name, value in cls_of.items()}
        acc = decoded("ctl_acc", Mux(is_[Op.MATMUL], mm["acc"], re_["acc"]))
        red_fn = h[Op.REDUCE]["fn"]

        # Operand registers: FILL's and BINARY's immediate put in here. BCAST's lane is chosen
        # from them a clock later, into the lanes' second stage (`L.LaneFn.BCAST`): a 16-way
        # choice after a block RAM's output had been the slowest way into these registers.
        a1 = [L.reg(m, Mux(fill, imm, x), f"a1_{i}") for i, x in enumerate(a)]
        # BCAST's lane: a register of its own (not imm's bits) for each byte of the choice.
        lane_bits = max(1, self.cfg.log2_n)
        pick_lane = L.copies(m, mv["imm"][0:lane_bits], "ctl_bcast_lane", L.LANE // 8, self.go)
        bc2 = L.reg(m, Cat(*[Array(x[8 * k:8 * k + 8] for x in a1)[sel]
                             for k, sel in enumerate(pick_lane)]), "bc2")
        # SHL and SHR: b the multiplier and c the window's start (`L.shift_operands`).
        b_in = [Mux(imm_b, imm, y) for y in b]
        shifts = [L.shift_operands(shift_left, x) for x in b_in]
        b1 = [L.reg(m, Mux(shift, mult, x), f"b1_{i}")
              for i, (x, (mult, _)) in enumerate(zip(b_in, shifts, strict=True))]
        c1 = [L.reg(m, Mux(shift, Cat(start, z[6:]), z), f"c1_{i}")
              for i, (z, (_, start)) in enumerate(zip(c, shifts, strict=True))]
        v1 = L.reg(m, p1_valid, "v1")
        first1 = L.reg(m, p1_first, "first1")

        # The matrix array's products: column j's first own[j] on DSPs of its own, the next
        # lent[j] on the vector lanes' DSPs (idle while MATMUL runs), the rest from LUTs.
        own = _spread(self.array_dsps, [n] * n)
        lent = _spread(0 if self.array_dsps >= n * n else L.LANE_DSPS * n,
                       [n - o for o in own])
        borrowed = [(j, k) for j in range(n) for k in range(own[j], own[j] + lent[j])]
        slots = [borrowed[i:i + L.LANE_DSPS] for i in range(0, len(borrowed), L.LANE_DSPS)]
        slots += [[] for _ in range(n - len(slots))]
        # The vector lanes (UNARY, BINARY but DIV, TERNARY, REQUANT, MOVE but TRANSPOSE).
        dsps = [L.lane_dsps(m, x, y, f"vl{i}", cls["matmul"],
                            tuple((b1[k], wl[k][j]) for j, k in slot))
                for i, (x, y, slot) in enumerate(zip(a1, b1, slots, strict=True))]
        vec = [L.vector_lane(m, ctl, x, y, z, f"vl{i}", d, bc2)
               for i, (x, y, z, d) in enumerate(zip(a1, b1, c1, dsps, strict=True))]
        # Each datapath's last register holds zeros unless its row is written the clock
        # after, so the write port takes the OR of them all (a flip-flop's reset, free,
        # where a choice among six rows took about four LUTs a bit).
        vector_next = (~cls["matmul"] & ~cls["reduce_lanes"] & ~cls["reduce_rows"]
                       & emit[dv - 1])
        vec_row = _last_stage(m, vec, self._pad(dv, 1 + L.VECTOR_STAGES, "vector"), "vec",
                              vector_next)
        given: list[dict[int, Value]] = [{} for _ in range(n)]
        for i, slot in enumerate(slots):
            for d, (j, k) in enumerate(slot):
                given[j][k] = dsps[i][d]
        # The matrix array: column j sums lane k of the input row times W[k][j].
        cols = [L.dot_column(m, b1, [wl[k][j] for k in range(n)], c1[j], acc, f"dot{j}",
                             lut_products=n - own[j] - lent[j], given=given[j])
                for j in range(n)]
        mm_row = _last_stage(m, cols, self._pad(dm, 1 + L.DOT_STAGES, "matmul"), "mm",
                             cls["matmul"] & emit[dm - 1])
        # REDUCE over the lanes, from the operand registers (a1 = a, c1 = c for REDUCE).
        tree = L.lane_tree(m, red_fn, a1, c1, acc, "rt", registered=True)
        rl_row = _last_stage(m, tree, self._pad(drl, L.lane_tree_stages(n), "reduce"), "rl",
                             cls["reduce_lanes"] & emit[drl - 1])
        # REDUCE over rows folds each operand row into one register, written after the last.
        self._pad(drr, 2, "reduce over rows")
        red_lanes = [Signal(L.LANE, name=f"red_acc{i}") for i in range(n)]
        red_acc = Cat(*red_lanes)
        is_sum, is_min = red_fn == ReduceFn.SUM, red_fn == ReduceFn.MIN
        start = first1 & ~acc  # the first row alone, when not accumulating
        for i, (old, x) in enumerate(zip(c1, a1, strict=True)):
            # One combine a lane: with the old row (acc=1) on the first row, the running row
            # after it. Keeping the running row is the register's enable, not a choice.
            run = Mux(first1, old, red_lanes[i].as_signed())
            lt = L.kept(m, run < x, f"rr{i}_lt")
            total = L.kept(m, (run + x)[0:L.LANE], f"rr{i}_sum")
            take_x = start | (~is_sum & (lt ^ is_min))
            take_sum = ~start & is_sum
            take_old = ~take_x & ~is_sum & first1
            with m.If(v1 & cls["reduce_rows"] & (take_x | take_sum | first1)):
                m.d.sync += red_lanes[i].eq(L.pick(m, [(x, take_x), (total, take_sum),
                                                       (old, take_old)], f"rr{i}_pick"))

        # The write: each datapath's row after its depth, to the next destination row.
        def stream_write(cl, em):
            return ((cl["matmul"] & em[dm]) | (cl["reduce_lanes"] & em[drl])
                    | (cl["reduce_rows"] & em[drr])
                    | (~cl["matmul"] & ~cl["reduce_lanes"] & ~cl["reduce_rows"] & em[dv]))
        s_write = stream_write(cls, emit)
        rr_write = cls["reduce_rows"] & emit[drr]
        s_data = mm_row | rl_row | vec_row | Mux(rr_write, red_acc, 0)
        with m.If(self.go):
            m.d.sync += w_row.eq(base["w"][0])
        with m.Elif(s_write):
            m.d.sync += w_row.eq(w_row + w_step)

        t_write, t_wrow, t_wmem, t_data, t_busy, t_reads = self._transposer(
            m, self.go & is_transpose, mv, held, held_next, L.join(a1))
        d_write, d_row, d_mem, d_data, d_busy, d_reads = self._divider(
            m, self.go & is_div, bi, held, held_next, a1, b1)

        # The next cycle's write (`ReadChannel`): each datapath's from its D inputs.
        (t_write_next, t_mem_next), (d_write_next, d_mem_next) = t_reads["w"], d_reads["w"]
        m.d.comb += [self.wr.next_en.eq(stream_write(cls_next, emit_next) | t_write_next |
                                        d_write_next),
                     self.wr.next_mem.eq(Mux(t_write_next, t_mem_next,
                                             Mux(d_write_next, d_mem_next, cur["w"][1])))]
        m.d.comb += [self.wr.en.eq(s_write | t_write | d_write),
                     self.wr.row.eq(Mux(t_write, t_wrow[0:ROW_BITS],
                                        Mux(d_write, d_row[0:ROW_BITS], w_row[0:ROW_BITS]))),
                     self.wr.mem.eq(Mux(t_write, t_wmem, Mux(d_write, d_mem, w_mem))),
                     self.wr.data.eq(t_data | d_data | s_data)]
        # Rows in flight up to their write (a row's flag moves on past its tap, harmlessly).
        pending = Mux(cls["matmul"], emit[0:dm + 1].any(),
                      Mux(cls["reduce_lanes"], emit[0:drl + 1].any(),
                          Mux(cls["reduce_rows"], emit[0:drr + 1].any(), emit[0:dv + 1].any())))
        m.d.comb += self.idle.eq(~running & ~p1_valid & ~v1 & ~pending & ~t_busy & ~d_busy)
        # Each read's request: in the start cycle ready-made from the queue entry
        # (`go_reads`), afterwards from whichever datapath runs, worked out a cycle ahead
        # into two flip-flops; the arbiter chooses between them by `go` (rtl.ports.ReadChannel).
        for i, (x, port) in enumerate(zip(READ_CHANNELS, self._reads(), strict=True)):
            en, mem = stream_next[x], cur[x][1]  # cur: the D inputs of the channel's memory
            for reads in (t_reads, d_reads):
                if x in reads:
                    en, mem = en | reads[x][0], Mux(reads[x][0], reads[x][1], mem)
            req_en, req_mem = Signal(name=f"{x}_req_en"), Signal(name=f"{x}_req_mem")
            m.d.sync += [req_en.eq(en), req_mem.eq(mem)]
            m.d.comb += [port.en.eq(req_en), port.mem.eq(req_mem), port.go.eq(self.go),
                         port.go_en.eq(self.go_reads[2 * i]),
                         port.go_mem.eq(self.go_reads[2 * i + 1]),
                         port.next_en.eq(en), port.next_mem.eq(mem),
                         port.next_go_en.eq(self.next_go_reads[2 * i]),
                         port.next_go_mem.eq(self.next_go_reads[2 * i + 1])]
        return m

    def _reads(self):
        return (self.rd_a, self.rd_b, self.rd_c)

    def _transpose_pad(self) -> int:
        return self._pad(transpose_stages(self.cfg), TRANSPOSE_STAGES, "TRANSPOSE")

    @staticmethod
    def _pad(depth: int, needed: int, what: str) -> int:
        """Clocks of delay after a datapath `needed` stages deep to meet the table's `depth`."""
        if depth < needed:
            raise ValueError(f"the ISA table gives {what} {depth} pipeline stages; the compute "
                             f"unit's datapath needs {needed}")
        return depth - needed

    def _transposer(self, m: Module, start, mv: dict, held, held_next, row_in: Value):
        """TRANSPOSE, pipelined: one source row read and one result row out per clock.

        n one-lane memories (block RAMs), each holding two blocks: row i of a block is
        written rotated by i lanes, so its lane l lands in memory (i + l) mod n at address
        i, one write per memory; line j of the block (lane j of every row) is then one read
        per memory, at address (b - j) mod n in memory b, rotated back by j. A block is read
        out while the next is written into the other half, so blocks stream back to back;
        a block's first line needs its last row, hence one block (n clocks) of drain.

        Row j of block k is read at s + k*n + j, arrives a clock later, sits in the operand
        register (`row_in`) the clock after and is written into the memories then; line j
        of block k is read from them as row j of block k+1 is written, is registered as it
        leaves them, rotated back into `out_data` and written to the SRAM the clock after:
        `count*n + n + TRANSPOSE_STAGES`, the table's formula (rtl/README.md, Timing). Two
        rotators cost about a LUT a bit each per level (log2(n) levels); a bank of shift
        registers that turns a block over in place took a LUT per bit of n*n lanes.
        """
        n = self.cfg.n
        hm = _fields(held, Op.MOVE)
        j_bits = max(1, (n - 1).bit_length())
        running = Signal(name="tr_running")
        j = Signal(j_bits, name="tr_j")  # line of the block in this clock
        blk = Signal(17, name="tr_blk")  # block being read (count: draining the last one)
        src = Signal(_ROW, name="tr_src")  # first source row of block `blk`
        cur_j = Mux(start, 0, j)
        cur_blk = Mux(start, 0, blk)
        cur_src = Mux(start, _row(mv["src1"]), src)
        count = Mux(start, mv["count"], hm["count"])
        sstride = Mux(start, mv["sstride"], hm["sstride"])
        active = start | running
        reading = active & (cur_blk < count)
        # After the start (in it, the streaming path already asks for row src1 on a).
        # blk < count, a flip-flop (its D input from blk's), so the read request after the
        # start comes from registers.
        more = Signal(name="tr_more")
        blk_next = Mux(active, Mux(cur_j == n - 1, cur_blk + 1, cur_blk), blk)[0:len(blk)]
        more_next = blk_next < count
        running_next = Mux(active, ~((cur_blk == count) & (cur_j == n - 1)), running)
        m.d.sync += [more.eq(more_next), running.eq(running_next)]
        # The read request of the next cycle (the D inputs of `running & more`), and this
        # cycle's, registered from it.
        later = {"a": (running_next & more_next, _mem(_fields(held_next, Op.MOVE)["src1"]))}
        reading_later = L.reg(m, later["a"][0], "tr_reading")
        with m.If(reading_later):
            m.d.comb += self.rd_a.row.eq((src + j)[0:ROW_BITS])
        with m.If(active):
            m.d.sync += [j.eq(cur_j + 1), blk.eq(blk_next), src.eq(cur_src)]
            with m.If(cur_j == n - 1):
                m.d.sync += src.eq(cur_src + sstride)

        # The read's clock, delayed to the memories' write: row j of block k (k < count) is
        # in `row_in` while line j of block k-1 is read.
        s0 = {"valid": active, "in": reading, "out": cur_blk != 0, "half": cur_blk[0],
              "j": cur_j}
        s1 = {key: L.reg(m, v, f"tr_s1_{key}") for key, v in s0.items()}
        s2 = {key: L.reg(m, v, f"tr_s2_{key}") for key, v in s1.items()}
        s2_j = L.copies(m, s1["j"], "tr_s2_jb", n)  # the line, a copy for each memory
        banks = []
        wdata = _rotate(L.split(row_in, n), s2_j)
        for b in range(n):
            mem = Memory(shape=32, depth=2 * n, init=[], attrs={"ram_style": "block"})
            m.submodules[f"tr_bank{b}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.en.eq(s2["valid"] & s2["in"]), wp.addr.eq(Cat(s2_j[b], s2["half"])),
                         wp.data.eq(wdata[b]),
                         rp.addr.eq(Cat((b - s2_j[b])[0:j_bits], ~s2["half"]))]
            banks.append(rp.data)
        s3_valid, s3_j = (L.reg(m, s2["valid"] & s2["out"], "tr_s3_valid"),
                          L.reg(m, s2["j"], "tr_s3_j"))
        s4_valid, s4_j = L.reg(m, s3_valid, "tr_s4_valid"), L.reg(m, s3_j, "tr_s4_j")
        # The line out rotated back, and zeros unless it is written: a copy of both controls
        # for each lane.
        back = L.copies(m, (n - s3_j)[0:j_bits], "tr_s4_back", n)
        s4_line = [L.reg(m, x, f"tr_s4_{b}") for b, x in enumerate(banks)]
        line = _rotate(s4_line, back)
        # The table may grant more clocks than these stages take: delay the line's write.
        pad = self._transpose_pad()
        lane_valid = [L.delay(m, v, pad, f"tr_pv{i}", {L.REPLICA: 1})
                      for i, v in enumerate(L.copies(m, s3_valid, "tr_s4_lv", n))]
        s4_valid, s4_j = L.delay(m, s4_valid, pad, "tr_pv"), L.delay(m, s4_j, pad, "tr_pj")
        line = [L.delay(m, x, pad, f"tr_pl{i}") for i, x in enumerate(line)]

        w_base = Signal(_ROW, name="tr_w_base")
        out_valid = Signal(name="tr_out_valid")
        out_row = Signal(_ROW, name="tr_out_row")
        out_data = Signal(row_width(self.cfg), name="tr_out_data")
        m.d.sync += out_valid.eq(s4_valid)
        later["w"] = (s4_valid, _mem(_fields(held_next, Op.MOVE)["dst"]))  # the write's next
        with m.If(start):
            m.d.sync += w_base.eq(_row(mv["dst"]))
        with m.If(s4_valid):
            m.d.sync += out_row.eq(w_base + s4_j)
            with m.If(s4_j == n - 1):
                m.d.sync += w_base.eq(w_base + hm["dstride"])
        # Zeros unless written (the write port ORs the rows).
        m.d.sync += out_data.eq(L.join([Mux(v, x, 0) for v, x in zip(lane_valid, line,
                                                                     strict=True)]))
        busy = running | s1["valid"] | s2["valid"] | s3_valid | s4_valid | out_valid
        return out_valid, out_row, _mem(hm["dst"]), out_data, busy, later

    def _divider(self, m: Module, start, bi: dict, held, held_next, a1: list[Value],
                 b1: list[Value]):
        """int32 BINARY DIV: restoring dividers, one quotient bit per clock, each taking its
        `group` of lanes (DIV_LANES, or n if fewer) in turn.

        Per divider: the operands (the vector lanes' operand registers, fetched once the
        row's last lane is picked), the pick (one lane's magnitudes, sign, zero divisor and
        first step, registered: the divider loads it as it is), the divider, and the signed
        results, kept a lane until the row's last and written the clock after. A row every
        `group * DIV_STEPS` clocks: `count * group * DIV_STEPS + 5`, the table's formula. A
        divider a lane took 5,900 cells of the default chip (rtl/README.md).
        """
        n = self.cfg.n
        group = min(n, DIV_LANES)
        units = [list(range(u, min(n, u + group))) for u in range(0, n, group)]
        hb = _fields(held, Op.BINARY)
        # Reads: row r at the start and whenever the row before has its last lane picked.
        left = Signal(17, name="div_left")  # rows still to read
        more = Signal(name="div_more")  # left != 0, a flip-flop (its D input from left's)
        a_row, b_row = (Signal(_ROW, name=f"div_{x}_row") for x in "ab")
        fetch = Signal(name="div_fetch")
        m.d.comb += fetch.eq(start)
        cur_a = Mux(start, _row(bi["src1"]), a_row)
        cur_b = Mux(start, _row(bi["src2"]), b_row)
        cur_left = Mux(start, bi["count"], left)
        f = Mux(start, Cat(bi["step1"], bi["step2"], bi["imm_mode"]),
                Cat(hb["step1"], hb["step2"], hb["imm_mode"]))

        # The operands are the vector lanes' operand registers (`a1`, `b1`: BINARY's
        # immediate already chosen into b1), loaded the clock after a fetch and left alone
        # until the next fetch's rows arrive, which is after the row's last lane is picked.
        arriving = Signal(name="div_arriving")
        opd_full = Signal(name="div_opd_full")
        m.d.sync += arriving.eq(fetch)
        a1, b1 = ([x[0:32].as_signed() for x in xs] for xs in (a1, b1))

        # The pick: lane `lane` of each divider's group, its first step worked out. |a| and
        # |b| reach 2^31 only at -2^31, so the first step asks the raw operands.
        lane = Signal(range(group), name="div_lane")  # the lane the next pick takes
        lane_last = Signal(init=group == 1, name="div_lane_last")  # lane == group - 1
        pick_full = Signal(name="div_pick_full")
        steps = Signal(range(DIV_STEPS + 1), name="div_steps")
        dividing = Signal(name="div_dividing")
        # dividing & (steps == DIV_STEPS), a flip-flop: the divider takes the next pick.
        finished = Signal(name="div_finished")
        picked = Signal(range(group), name="div_picked")  # the pick's lane
        picked_last = Signal(name="div_picked_last")  # picked == group - 1
        in_div = Signal(range(group), name="div_in")  # the dividers' lane
        row_last = Signal(name="div_row_last")  # in_div == group - 1
        take = pick_full & (~dividing | finished)
        pick = opd_full & (~pick_full | take)
        out_valid = Signal(name="div_out_valid")
        out_row = Signal(_ROW, name="div_out_row")
        out_data = Signal(row_width(self.cfg), name="div_out_data")
        results = [None] * n
        for u, lanes in enumerate(units):
            a = _pick_lane([a1[i] for i in lanes], lane)
            b = _pick_lane([b1[i] for i in lanes], lane)
            top = a[31] & (a[0:31] == 0)  # |a| = 2^31
            b_le1 = (b[1:] == 0) | (b == -1)  # |b| <= 1
            first_fits = Mux(top, b_le1, b == 0)
            mag_a, mag_b = (Mux(x < 0, -x, x)[0:32] for x in (a, b))
            p_rem, p_quo, p_div = (Signal(w, name=f"div_p{x}{u}")
                                   for x, w in (("r", 33), ("q", 32), ("d", 32)))
            p_neg, p_zero = Signal(name=f"div_pneg{u}"), Signal(name=f"div_pzero{u}")
            with m.If(pick):
                m.d.sync += [p_rem.eq(Mux(first_fits, top & ~mag_b[0], top)),
                             p_quo.eq(Cat(first_fits, mag_a[0:31])), p_div.eq(mag_b),
                             p_neg.eq((a < 0) ^ (b < 0)), p_zero.eq(b == 0)]
            # The divider: a step from its own registers, one carry chain whose borrow is
            # the compare.
            quo, rem, div = (Signal(w, name=f"div_{x}{u}")
                             for x, w in (("q", 32), ("r", 33), ("d", 32)))
            neg, zero = Signal(name=f"div_neg{u}"), Signal(name=f"div_zero{u}")
            shifted = Cat(quo[31], rem[0:32])
            diff = L.kept(m, shifted - div, f"div_diff{u}")
            fits = ~diff[33]
            with m.If(take):
                m.d.sync += [rem.eq(p_rem), quo.eq(p_quo), div.eq(p_div), neg.eq(p_neg),
                             zero.eq(p_zero)]
            with m.Elif(dividing & ~finished):
                m.d.sync += [rem.eq(Mux(fits, diff[0:33], shifted)),
                             quo.eq(Cat(fits, quo[0:31]))]
            # The signed result: kept for its lane until the group's last, which goes
            # straight to the write (zeros unless written: the write port ORs the rows).
            result = Mux(zero, 0, Mux(neg, -quo, quo))[0:32]
            for g, i in enumerate(lanes):
                if g == group - 1:
                    results[i] = result
                    continue
                kept_lane = Signal(32, name=f"div_res{i}")
                with m.If(finished & (in_div == g)):
                    m.d.sync += kept_lane.eq(result)
                results[i] = kept_lane
        with m.If(finished & row_last):
            m.d.sync += [out_data.eq(L.join(results)), out_row.eq(out_row + 1)]
        with m.Else():
            m.d.sync += out_data.eq(0)
        m.d.sync += out_valid.eq(finished & row_last)

        dividing_next = Mux(take, 1, Mux(finished, 0, dividing))
        finished_next = Mux(take, DIV_STEPS == 1,
                            Mux(finished, 0, Mux(dividing, steps + 1 == DIV_STEPS, finished)))
        opd_full_next = Mux(arriving, 1, Mux(pick & lane_last, 0, opd_full))
        pick_full_next = Mux(pick, 1, Mux(take, 0, pick_full))
        lane_next = Mux(pick, Mux(lane_last, 0, lane + 1), lane)
        lane_last_next = lane_next == group - 1
        m.d.sync += [dividing.eq(dividing_next), finished.eq(finished_next),
                     opd_full.eq(opd_full_next), pick_full.eq(pick_full_next),
                     lane.eq(lane_next), lane_last.eq(lane_last_next)]
        with m.If(pick):
            m.d.sync += [picked.eq(lane), picked_last.eq(lane_last)]
        with m.If(take):
            m.d.sync += [steps.eq(1), in_div.eq(picked), row_last.eq(picked_last)]
        with m.Elif(dividing & ~finished):
            m.d.sync += steps.eq(steps + 1)
        with m.If(pick & lane_last):
            m.d.comb += fetch.eq(more)

        left_next = Mux(fetch, cur_left - 1, left)[0:len(left)]
        more_next = left_next != 0
        m.d.sync += more.eq(more_next)
        with m.If(fetch):
            m.d.sync += [a_row.eq(cur_a + f[0]), b_row.eq(cur_b + f[1]), left.eq(left_next)]
        # After the start (in it, the streaming path already asks for src1 and src2's rows):
        # the next cycle's requests (a last-lane pick's `more`, from their D inputs), and
        # this cycle's, registered from them.
        take_next = pick_full_next & (~dividing_next | finished_next)
        fetch_next = (opd_full_next & (~pick_full_next | take_next) & lane_last_next
                      & more_next)
        hb_next = _fields(held_next, Op.BINARY)
        later = {"a": (fetch_next, _mem(hb_next["src1"])), "b": (fetch_next, _mem(hb_next["src2"]))}
        fetch_later = L.reg(m, fetch_next, "div_fetching")
        with m.If(fetch_later):
            m.d.comb += [self.rd_a.row.eq(a_row[0:ROW_BITS]), self.rd_b.row.eq(b_row[0:ROW_BITS])]

        # The write's row, and its next request (`out_valid`'s D input).
        later["w"] = (finished & row_last, _mem(hb_next["dst"]))
        with m.If(start):
            m.d.sync += out_row.eq(_row(bi["dst"]) - 1)
        # Registered state only: `fetch` follows `start`, which the core derives from `idle`.
        busy = arriving | opd_full | pick_full | dividing | out_valid | more
        return out_valid, out_row, _mem(hb["dst"]), out_data, busy, later


def _pick_lane(values: list[Value], lane: Value) -> Value:
    """values[lane], signed (one value needs no choice)."""
    return values[0] if len(values) == 1 else Array(values)[lane].as_signed()
