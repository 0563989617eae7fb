"""The compute unit: the n x n int8 matrix array, the n-lane vector unit and the requantiser.

One row per cycle through a three-stage pipeline: in the step cycle the unit names up
to three source rows (channels a, b, c); in the next cycle the rows arrive and the lane
logic computes the result row into a register; in the cycle after, that row is
written. So `count` rows take `count + 2` cycles, exactly the vector latency of the
ISA. MATMUL first spends n steps loading the n weight rows into registers, then
streams one input row per step: `n + rows + 2`. TRANSPOSE buffers each n x n block in
registers (read n rows, then write n rows) and DIV runs a row at a time through an
iterative divider; both take longer than their formulas and the core holds their
completion until they drain (see `rtl/core.py`).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.table import BY_OPCODE, INSN_BITS, Axis, BinaryFn, Mem, MoveFn, Op
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


class ComputeUnit(wiring.Component):
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        super().__init__({
            "go": In(1), "insn": In(INSN_BITS), "idle": Out(1),
            "rd_a": Out(ReadChannel(cfg)), "rd_b": Out(ReadChannel(cfg)),
            "rd_c": Out(ReadChannel(cfg)), "wr": Out(WriteChannel(cfg)),
        })

    def elaborate(self, platform):  # noqa: C901 - one datapath, kept together
        m = Module()
        n = self.cfg.n
        width = row_width(self.cfg)

        held = Signal(INSN_BITS)
        word = Mux(self.go, self.insn, held)
        opcode = word[0:4]
        with m.If(self.go):
            m.d.sync += held.eq(self.insn)

        un, bi, te = _fields(word, Op.UNARY), _fields(word, Op.BINARY), _fields(word, Op.TERNARY)
        re_, rq, mv = _fields(word, Op.REDUCE), _fields(word, Op.REQUANT), _fields(word, Op.MOVE)
        mm = _fields(word, Op.MATMUL)
        is_ = {op: opcode == int(op) for op in (Op.MATMUL, Op.UNARY, Op.BINARY, Op.TERNARY,
                                                Op.REDUCE, Op.REQUANT, Op.MOVE)}
        is_transpose = is_[Op.MOVE] & (mv["fn"] == MoveFn.TRANSPOSE)
        is_div = is_[Op.BINARY] & (bi["fn"] == BinaryFn.DIV)

        # Steps of a streaming instruction (everything but TRANSPOSE, DIV and SYNC).
        steps = Signal(18)
        m.d.comb += steps.eq(0)
        with m.Switch(opcode):
            with m.Case(int(Op.MATMUL)):
                m.d.comb += steps.eq(n + mm["rows"])
            for op, f in ((Op.UNARY, un), (Op.BINARY, bi), (Op.TERNARY, te), (Op.REDUCE, re_),
                          (Op.REQUANT, rq)):
                with m.Case(int(op)):
                    m.d.comb += steps.eq(Mux(is_div, 0, f["count"]) if op is Op.BINARY
                                         else f["count"])
            with m.Case(int(Op.MOVE)):
                m.d.comb += steps.eq(Mux(is_transpose, 0, mv["count"]))

        running = Signal()
        k = Signal(18)
        cur_k = Mux(self.go, 0, k)
        active = Mux(self.go, steps != 0, running)

        # Per-channel base row, memory and per-step increment, chosen at go.
        def chan(name):
            return (Signal(_ROW, name=f"{name}_row"), Signal(name=f"{name}_mem"),
                    Signal(signed(_ROW), name=f"{name}_step"))
        a_row, a_mem, a_step = chan("a")
        b_row, b_mem, b_step = chan("b")
        c_row, c_mem, c_step = chan("c")
        w_row, w_mem, w_step = chan("w")
        base = {x: (Signal(_ROW, name=f"{x}_base"), Signal(name=f"{x}_bmem"),
                    Signal(signed(_ROW), name=f"{x}_bstep")) for x in "abcw"}

        def set_base(x, local_row, mem, step):
            r, mm_, s = base[x]
            m.d.comb += [r.eq(local_row), mm_.eq(mem), s.eq(step)]

        with m.Switch(opcode):
            with m.Case(int(Op.MATMUL)):
                set_base("a", mm["wgt"], Mem.SP, 1)
                set_base("b", mm["inp"], Mem.SP, 1)
                set_base("c", mm["dst"], Mem.ACC, 1)
                set_base("w", mm["dst"], Mem.ACC, 1)
            with m.Case(int(Op.UNARY)):
                set_base("a", _row(un["src1"]), _mem(un["src1"]), un["step1"])
                set_base("w", _row(un["dst"]), _mem(un["dst"]), 1)
            with m.Case(int(Op.BINARY)):
                set_base("a", _row(bi["src1"]), _mem(bi["src1"]), bi["step1"])
                set_base("b", _row(bi["src2"]), _mem(bi["src2"]), bi["step2"])
                set_base("w", _row(bi["dst"]), _mem(bi["dst"]), 1)
            with m.Case(int(Op.TERNARY)):
                set_base("a", _row(te["src1"]), _mem(te["src1"]), te["step1"])
                set_base("b", _row(te["src2"]), _mem(te["src2"]), te["step2"])
                set_base("c", _row(te["src3"]), _mem(te["src3"]), te["step3"])
                set_base("w", _row(te["dst"]), _mem(te["dst"]), 1)
            with m.Case(int(Op.REDUCE)):
                lanes_axis = re_["axis"] == Axis.LANES
                set_base("a", _row(re_["src1"]), _mem(re_["src1"]), 1)
                set_base("c", _row(re_["dst"]), _mem(re_["dst"]), lanes_axis)
                set_base("w", _row(re_["dst"]), _mem(re_["dst"]), lanes_axis)
            with m.Case(int(Op.REQUANT)):
                set_base("a", _row(rq["src1"]), _mem(rq["src1"]), rq["step1"])
                set_base("b", _row(rq["src2"]), _mem(rq["src2"]), 0)
                set_base("c", _row(rq["src2"]) + 1, _mem(rq["src2"]), 0)
                set_base("w", _row(rq["dst"]), _mem(rq["dst"]), 1)
            with m.Case(int(Op.MOVE)):
                set_base("a", _row(mv["src1"]), _mem(mv["src1"]), mv["sstride"])
                set_base("w", _row(mv["dst"]), _mem(mv["dst"]), mv["dstride"])

        in_weights = is_[Op.MATMUL] & (cur_k < n)
        regs = {"a": (a_row, a_mem, a_step), "b": (b_row, b_mem, b_step),
                "c": (c_row, c_mem, c_step), "w": (w_row, w_mem, w_step)}
        cur = {}
        for x, (r, mem, st) in regs.items():
            br, bm, bs = base[x]
            cur[x] = (Mux(self.go, br, r), Mux(self.go, bm, mem), Mux(self.go, bs, st))
            with m.If(self.go):
                m.d.sync += [mem.eq(bm), st.eq(bs)]
        # MATMUL streams weights on channel a, then inputs on b with the old sums on c.
        mm_advance_bc = ~(is_[Op.MATMUL] & in_weights)
        with m.If(active):
            m.d.sync += [k.eq(cur_k + 1), running.eq(cur_k + 1 < steps)]
            m.d.sync += a_row.eq(cur["a"][0] + cur["a"][2])
            with m.If(mm_advance_bc):
                m.d.sync += [b_row.eq(cur["b"][0] + cur["b"][2]),
                             c_row.eq(cur["c"][0] + cur["c"][2])]
            with m.Else():
                m.d.sync += [b_row.eq(cur["b"][0]), c_row.eq(cur["c"][0])]
        with m.Elif(self.go):
            m.d.sync += [a_row.eq(base["a"][0]), b_row.eq(base["b"][0]), c_row.eq(base["c"][0])]

        for x, port in (("a", self.rd_a), ("b", self.rd_b), ("c", self.rd_c)):
            m.d.comb += [port.en.eq(active), port.row.eq(cur[x][0][0:ROW_BITS]),
                         port.mem.eq(cur[x][1])]

        # Stage 1: rows arrive; compute into the stage-2 register.
        p1_valid = Signal()
        p1_first = Signal()
        p1_last = Signal()
        p1_weight = Signal()
        p1_k = Signal(range(max(n, 2)))
        m.d.sync += [p1_valid.eq(active), p1_first.eq(cur_k == 0),
                     p1_last.eq(cur_k + 1 == steps), p1_weight.eq(in_weights),
                     p1_k.eq(cur_k[0:max(1, (n - 1).bit_length())])]

        h = {op: _fields(held, op) for op in (Op.MATMUL, Op.UNARY, Op.BINARY, Op.TERNARY,
                                              Op.REDUCE, Op.REQUANT, Op.MOVE)}
        hop = held[0:4]
        a = L.split(self.rd_a.data, n)
        b = L.split(self.rd_b.data, n)
        c = L.split(self.rd_c.data, n)

        weights = Array(Signal(width, name=f"w{i}") for i in range(n))
        with m.If(p1_valid & p1_weight):
            m.d.sync += weights[p1_k].eq(self.rd_a.data)
        wl = [L.split(weights[i], n) for i in range(n)]

        red_acc = Signal(width)
        result = Signal(width)
        write = Signal()
        hr = h[Op.REDUCE]
        with m.Switch(hop):
            with m.Case(int(Op.UNARY)):
                m.d.comb += [result.eq(L.join([L.unary(h[Op.UNARY]["fn"], x) for x in a])),
                             write.eq(1)]
            with m.Case(int(Op.BINARY)):
                hb = h[Op.BINARY]
                imm = hb["imm"].as_signed()
                rhs = [Mux(hb["imm_mode"], imm, y) for y in b]
                m.d.comb += [result.eq(L.join([L.binary(hb["fn"], x, y)
                                               for x, y in zip(a, rhs, strict=True)])),
                             write.eq(1)]
            with m.Case(int(Op.TERNARY)):
                fn = h[Op.TERNARY]["fn"]
                m.d.comb += [result.eq(L.join([L.ternary(fn, x, y, z)
                                               for x, y, z in zip(a, b, c, strict=True)])),
                             write.eq(1)]
            with m.Case(int(Op.REQUANT)):
                hq = h[Op.REQUANT]
                m.d.comb += [result.eq(L.join([L.requant(x, y, z, hq["zp"], hq["lo"], hq["hi"])
                                               for x, y, z in zip(a, b, c, strict=True)])),
                             write.eq(1)]
            with m.Case(int(Op.REDUCE)):
                fn = hr["fn"]
                with m.If(hr["axis"] == Axis.LANES):
                    total = L.reduce_tree(fn, a)
                    out = [Mux(hr["acc"], L.combine(fn, old, total), total) for old in c]
                    m.d.comb += [result.eq(L.join(out)), write.eq(1)]
                with m.Else():
                    prev = L.split(red_acc, n)
                    first = [Mux(hr["acc"], L.combine(fn, old, x), x)
                             for old, x in zip(c, a, strict=True)]
                    step = [L.combine(fn, p, x) for p, x in zip(prev, a, strict=True)]
                    folded = L.join([Mux(p1_first, f0, s0)
                                     for f0, s0 in zip(first, step, strict=True)])
                    with m.If(p1_valid):
                        m.d.sync += red_acc.eq(folded)
                    m.d.comb += [result.eq(folded), write.eq(p1_last)]
            with m.Case(int(Op.MOVE)):
                hm = h[Op.MOVE]
                lane = Array(a)[hm["imm"][0:max(1, self.cfg.log2_n)]]
                fill = hm["imm"]
                m.d.comb += result.eq(self.rd_a.data)
                with m.Switch(hm["fn"]):
                    with m.Case(int(MoveFn.BCAST)):
                        m.d.comb += result.eq(L.join([lane] * n))
                    with m.Case(int(MoveFn.FILL)):
                        m.d.comb += result.eq(L.join([fill] * n))
                m.d.comb += write.eq(1)
            with m.Case(int(Op.MATMUL)):
                hm = h[Op.MATMUL]
                sums = L.matmul_row(b, wl)
                out = [Mux(hm["acc"], s + old, s) for s, old in zip(sums, c, strict=True)]
                m.d.comb += [result.eq(L.join(out)), write.eq(~p1_weight)]

        # The write-address register advances by its step on every row written.
        p2_valid = Signal()
        p2_row = Signal(ROW_BITS)
        p2_mem = Signal()
        p2_data = Signal(width)
        emit = p1_valid & write
        m.d.sync += p2_valid.eq(emit)
        with m.If(self.go):
            m.d.sync += w_row.eq(base["w"][0])
        with m.If(emit):
            m.d.sync += [p2_row.eq(w_row), p2_mem.eq(w_mem), p2_data.eq(result),
                         w_row.eq(w_row + w_step)]

        # TRANSPOSE: per block, read n rows into t[], wait one cycle, write n rows from t[].
        t_busy = Signal()
        t_phase = Signal(2)  # 0 read, 1 wait, 2 write
        t_j = Signal(range(n + 1))
        t_left = Signal(17)
        t_src = Signal(_ROW)
        t_dst = Signal(_ROW)
        t_regs = Array(Signal(width, name=f"t{i}") for i in range(n))
        t_latch = Signal()
        t_lj = Signal(range(n))
        hm = h[Op.MOVE]
        start_t = self.go & is_transpose
        m.d.sync += t_latch.eq(0)
        with m.If(start_t):
            m.d.sync += [t_busy.eq(1), t_phase.eq(0), t_j.eq(0), t_left.eq(mv["count"]),
                         t_src.eq(_row(mv["src1"])), t_dst.eq(_row(mv["dst"]))]
        t_write = Signal()
        t_wrow = Signal(_ROW)
        t_data = Signal(width)
        with m.If(t_busy):
            with m.Switch(t_phase):
                with m.Case(0):
                    m.d.comb += [self.rd_a.en.eq(1), self.rd_a.row.eq((t_src + t_j)[0:ROW_BITS]),
                                 self.rd_a.mem.eq(_mem(hm["src1"]))]
                    m.d.sync += [t_latch.eq(1), t_lj.eq(t_j[0:len(t_lj)]), t_j.eq(t_j + 1)]
                    with m.If(t_j == n - 1):
                        m.d.sync += [t_phase.eq(1), t_j.eq(0)]
                with m.Case(1):
                    m.d.sync += t_phase.eq(2)
                with m.Case(2):
                    col = Array(L.join([t_regs[j][32 * i:32 * i + 32] for j in range(n)])
                                for i in range(n))
                    m.d.comb += [t_write.eq(1), t_wrow.eq(t_dst + t_j), t_data.eq(col[t_j])]
                    m.d.sync += t_j.eq(t_j + 1)
                    with m.If(t_j == n - 1):
                        m.d.sync += [t_j.eq(0), t_phase.eq(0), t_left.eq(t_left - 1),
                                     t_src.eq(t_src + hm["sstride"]),
                                     t_dst.eq(t_dst + hm["dstride"])]
                        with m.If(t_left == 1):
                            m.d.sync += t_busy.eq(0)
        with m.If(t_latch):
            m.d.sync += t_regs[t_lj].eq(self.rd_a.data)

        d_write, d_row, d_mem, d_data, d_busy = self._divider(m, self.go & is_div, held)

        m.d.comb += [self.wr.en.eq(p2_valid | t_write | d_write),
                     self.wr.row.eq(Mux(t_write, t_wrow[0:ROW_BITS],
                                        Mux(d_write, d_row[0:ROW_BITS], p2_row))),
                     self.wr.mem.eq(Mux(t_write, _mem(hm["dst"]), Mux(d_write, d_mem, p2_mem))),
                     self.wr.data.eq(Mux(t_write, t_data, Mux(d_write, d_data, p2_data)))]
        m.d.comb += self.idle.eq(~running & ~p1_valid & ~p2_valid & ~t_busy & ~t_latch & ~d_busy)
        return m

    def _divider(self, m: Module, start, held):
        """BINARY DIV, a row at a time: read both rows, 32 restoring-division steps on every
        lane at once, write. Far smaller than n combinational dividers; the core holds the
        architectural clock while it works (see rtl/core.py)."""
        n = self.cfg.n
        hb = _fields(held, Op.BINARY)
        busy = Signal(name="div_busy")
        phase = Signal(2, name="div_phase")  # 0 read, 1 take operands, 2 divide, 3 write
        left = Signal(17, name="div_left")
        step = Signal(range(33), name="div_step")
        a_row, b_row, w_row = (Signal(_ROW, name=f"div_{x}_row") for x in "abw")
        quo = [Signal(32, name=f"div_q{i}") for i in range(n)]
        rem = [Signal(33, name=f"div_r{i}") for i in range(n)]
        div = [Signal(32, name=f"div_d{i}") for i in range(n)]
        neg = [Signal(name=f"div_neg{i}") for i in range(n)]
        zero = [Signal(name=f"div_zero{i}") for i in range(n)]
        f = _fields(self.insn, Op.BINARY)
        with m.If(start):
            m.d.sync += [busy.eq(1), phase.eq(0), left.eq(f["count"]),
                         a_row.eq(_row(f["src1"])), b_row.eq(_row(f["src2"])),
                         w_row.eq(_row(f["dst"]))]
        write = Signal(name="div_write")
        data = Signal(row_width(self.cfg), name="div_data")
        with m.If(busy):
            with m.Switch(phase):
                with m.Case(0):
                    m.d.comb += [self.rd_a.en.eq(1), self.rd_a.row.eq(a_row[0:ROW_BITS]),
                                 self.rd_a.mem.eq(_mem(hb["src1"])),
                                 self.rd_b.en.eq(1), self.rd_b.row.eq(b_row[0:ROW_BITS]),
                                 self.rd_b.mem.eq(_mem(hb["src2"]))]
                    m.d.sync += phase.eq(1)
                with m.Case(1):
                    a_lanes = L.split(self.rd_a.data, n)
                    b_lanes = [Mux(hb["imm_mode"], hb["imm"].as_signed(), y)
                               for y in L.split(self.rd_b.data, n)]
                    for i in range(n):
                        a, b = a_lanes[i], b_lanes[i]
                        m.d.sync += [quo[i].eq(Mux(a < 0, -a, a)[0:32]), rem[i].eq(0),
                                     div[i].eq(Mux(b < 0, -b, b)[0:32]),
                                     neg[i].eq((a < 0) ^ (b < 0)), zero[i].eq(b == 0)]
                    m.d.sync += [phase.eq(2), step.eq(0)]
                with m.Case(2):
                    for i in range(n):
                        shifted = Cat(quo[i][31], rem[i][0:32])
                        fits = shifted >= div[i]
                        m.d.sync += [rem[i].eq(Mux(fits, shifted - div[i], shifted)),
                                     quo[i].eq(Cat(fits, quo[i][0:31]))]
                    m.d.sync += step.eq(step + 1)
                    with m.If(step == 31):
                        m.d.sync += phase.eq(3)
                with m.Case(3):
                    lanes = [Mux(zero[i], 0, Mux(neg[i], -quo[i], quo[i])) for i in range(n)]
                    m.d.comb += [write.eq(1), data.eq(L.join(lanes))]
                    m.d.sync += [a_row.eq(a_row + hb["step1"]), b_row.eq(b_row + hb["step2"]),
                                 w_row.eq(w_row + 1), left.eq(left - 1), phase.eq(0)]
                    with m.If(left == 1):
                        m.d.sync += busy.eq(0)
        return write, w_row, _mem(hb["dst"]), data, busy

