# amaranth: UnusedElaboratable=no
"""The core's parts in Amaranth's simulator: latency formulas, lane arithmetic, the queue.

Each test elaborates one small design and checks many random cases in one session
against an independent reference (the table's `OpDef.cycles`, the simulator's numpy
functions).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.sim import Simulator

from isa.config import PRESETS
from isa.encoding import Instruction
from isa.table import BY_OPCODE, LAYOUTS, BinaryFn, Kind, ReduceFn, TernaryFn, UnaryFn, Unit
from rtl import lanes as L
from rtl.fields import field_values, latency_value
from rtl.queue import InstructionQueue
from simulator import semantics as S

TINY = PRESETS["tiny"]
RNG = np.random.default_rng(2024)
EDGE = np.array([0, 1, -1, 2, -2, 31, 32, 127, -128, 2**31 - 1, -2**31, 0x12345678], np.int64)


def _run(design, bench) -> None:
    sim = Simulator(design)
    sim.add_testbench(bench)
    sim.run()


def _random_values(op, rng) -> dict[str, int]:
    values = {}
    for f in op.fields:
        if f.kind is Kind.ENUM:
            values[f.name] = int(rng.choice([int(e) for e in f.enum]))
        elif f.name in ("rows", "count", "cols"):
            values[f.name] = int(rng.integers(max(f.lo, 1), 300))
        elif f.kind is Kind.LOCAL:
            values[f.name] = int(rng.integers(0, 1 << 17))
        elif f.kind is Kind.SINT:
            values[f.name] = int(rng.integers(f.lo, f.hi + 1))
        else:
            values[f.name] = int(rng.integers(f.lo, min(f.hi, 2**31) + 1))
    return values


def test_latency_formulas_match_the_table():
    """The hardware evaluates every unit opcode's formula exactly as `OpDef.cycles` does."""
    word = Signal(128)
    ops = [op for op in BY_OPCODE.values() if op.unit is not Unit.DISPATCH]
    for cfg in (TINY, PRESETS["default"]):
        m = Module()
        outs = {}
        for op in ops:
            outs[op.opcode] = Signal(32, name=f"lat_{op.mnemonic}")
            m.d.comb += outs[op.opcode].eq(latency_value(op, field_values(word, op), cfg))

        async def bench(ctx, cfg=cfg, outs=outs):
            for op in ops:
                for _ in range(25):
                    values = _random_values(op, RNG)
                    insn = Instruction(op, values, frozenset())
                    bits = op.opcode
                    for f, lsb in LAYOUTS[op.opcode]:
                        bits |= (values[f.name] & ((1 << f.bits) - 1)) << lsb
                    ctx.set(word, bits)
                    assert ctx.get(outs[op.opcode]) == op.cycles(insn.values, cfg), \
                        (op.mnemonic, values)

        _run(m, bench)


def _lane_bench(build, reference, n_cases=200, arity=2, fns=()):
    """Drive a combinational lane function with random and edge int32 values."""
    m = Module()
    fn = Signal(5)
    args = [Signal(32) for _ in range(arity)]
    out = Signal(32)
    m.d.comb += out.eq(build(fn, *[a.as_signed() for a in args]))

    async def bench(ctx):
        for code in fns:
            pool = np.concatenate([EDGE, RNG.integers(-2**31, 2**31, n_cases)])
            xs = [RNG.choice(pool, n_cases) for _ in range(arity)]
            for i in range(n_cases):
                ctx.set(fn, int(code))
                for sig, x in zip(args, xs, strict=True):
                    ctx.set(sig, int(x[i]) & 0xFFFFFFFF)
                got = ctx.get(out)
                want = int(reference(code, *[np.array([x[i]], np.int32) for x in xs])[0])
                assert got == want & 0xFFFFFFFF, (code, [int(x[i]) for x in xs], got, want)

    _run(m, bench)


def test_unary_lanes_match_numpy():
    int_fns = [UnaryFn.NEG, UnaryFn.ABS, UnaryFn.RELU, UnaryFn.NOT]
    _lane_bench(L.unary, lambda fn, a: S._UNARY[fn](a), arity=1, fns=int_fns)


def test_binary_lanes_match_numpy():
    with np.errstate(all="ignore"):
        fns = [fn for fn in BinaryFn if fn != BinaryFn.DIV]  # DIV: the iterative divider
        _lane_bench(L.binary, lambda fn, a, b: S._BINARY_I[fn](a, b), arity=2, fns=fns)


def test_ternary_lanes_match_numpy():
    def ref(fn, a, b, c):
        return np.where(a != 0, b, c) if fn == TernaryFn.WHERE else a * b + c

    with np.errstate(all="ignore"):
        _lane_bench(L.ternary, ref, arity=3, fns=list(TernaryFn))


def test_reduce_combine_matches_numpy():
    def ref(fn, a, b):
        return S._combine(a, b, fn, False)

    with np.errstate(all="ignore"):
        _lane_bench(L.combine, ref, arity=2, fns=list(ReduceFn))


SHIFTS = [0, 1, 2, 15, 31, 32, 62, 63, 64 + 3, 255]


def _requant_reference(xv: int, mv: int, sv: int, zpv: int, lov: int, hiv: int) -> int:
    p = xv * mv
    s = sv & 63
    q = p if s == 0 else (p + (1 << (s - 1))) >> s
    return min(max(q + zpv, lov), hiv)


def test_requant_matches_the_reference():
    """Exact 64-bit product, round half up, zero point and clamp, on edge-heavy values."""
    m = Module()
    x, mult, shift = Signal(32), Signal(32), Signal(32)
    zp, lo, hi = Signal(range(-256, 256)), Signal(range(-256, 256)), Signal(range(-256, 256))
    out = Signal(32)
    m.d.comb += out.eq(L.requant(x.as_signed(), mult.as_signed(), shift, zp, lo, hi))

    async def bench(ctx):
        pool = np.concatenate([EDGE, RNG.integers(-2**31, 2**31, 50)])
        for _ in range(400):
            xv, mv = int(RNG.choice(pool)), int(RNG.choice(pool))
            sv = int(RNG.choice(SHIFTS))
            lov = int(RNG.integers(-256, 1))
            hiv = int(RNG.integers(lov, 256))
            zpv = int(RNG.integers(-256, 256))
            for sig, v in ((x, xv), (mult, mv), (shift, sv)):
                ctx.set(sig, v & 0xFFFFFFFF)
            for sig, v in ((zp, zpv), (lo, lov), (hi, hiv)):
                ctx.set(sig, v)
            want = _requant_reference(xv, mv, sv, zpv, lov, hiv) & 0xFFFFFFFF
            assert ctx.get(out) == want, (xv, mv, sv, zpv, lov, hiv)

    _run(m, bench)


def _lane_reference(code: L.LaneFn, a, b, c):
    """What the vector lane must give for one of its own function codes, from the
    simulator's numpy functions (int32 arrays in, int32 array out)."""
    for table, fns in ((L.UNARY_LANE_FN, S._UNARY), (L.BINARY_LANE_FN, S._BINARY_I)):
        for isa_fn, lane_fn in table.items():
            if lane_fn == code:
                return fns[isa_fn](a) if table is L.UNARY_LANE_FN else fns[isa_fn](a, b)
    if code == L.LaneFn.WHERE:
        return np.where(a != 0, b, c)
    if code == L.LaneFn.BCAST:  # the test's bcast: c, registered a clock after it
        return c
    assert code == L.LaneFn.PASS
    return a


def test_pipelined_vector_lane_matches_numpy():
    """`vector_lane` with a new operand triple every clock, for every lane function (BCAST
    taking c a clock later), the product paths, REQUANT (c the shift) and SHL/SHR (b the
    amount, turned into the lane's operands by `shift_operands`, as the compute unit does):
    each result appears VECTOR_STAGES clocks after its operands."""
    m = Module()
    a, b, c, y = Signal(32), Signal(32), Signal(32), Signal(32)
    fn, product, mulacc, rq = Signal(L.LANE_FN_BITS), Signal(), Signal(), Signal()
    shift, left = Signal(), Signal()
    zp, lo, hi = (Signal(range(-256, 256)) for _ in range(3))
    ctl = L.LaneControl(fn=fn, product=product, mulacc=mulacc, requant=rq, zp=zp, lo=lo, hi=hi,
                        shift=shift)
    mult, start = L.shift_operands(left, b)
    bcast = Signal(32)
    m.d.sync += bcast.eq(c)
    m.d.comb += y.eq(L.vector_lane(m, ctl, a, Mux(shift, mult, b),
                                   Mux(shift, Cat(start, c[6:]), c), bcast=bcast))
    modes = ([(code, 0, 0, 0, None) for code in L.LaneFn]
             + [(L.LaneFn.PASS, 1, 0, 0, None), (L.LaneFn.PASS, 1, 1, 0, None)]
             + [(L.LaneFn.PASS, 0, 0, 1, None)] * 8
             + [(L.LaneFn.PASS, 0, 0, 0, fn) for fn in L.SHIFT_FNS] * 2)

    async def bench(ctx):
        for code, prod, acc, requant, shift_fn in modes:
            lov = int(RNG.integers(-256, 1))
            zpv, hiv = int(RNG.integers(-256, 256)), int(RNG.integers(lov, 256))
            for sig, v in ((fn, int(code)), (product, prod), (mulacc, acc), (rq, requant),
                           (zp, zpv), (lo, lov), (hi, hiv), (shift, shift_fn is not None),
                           (left, shift_fn == BinaryFn.SHL)):
                ctx.set(sig, v)
            await ctx.tick()  # the lane's controls are set a clock before its operands
            pool = np.concatenate([EDGE, RNG.integers(-2**31, 2**31, 60)])
            xs = [RNG.choice(pool, 80).astype(np.int32) for _ in range(3)]
            with np.errstate(all="ignore"):
                if shift_fn is not None:  # every amount 0..31, and more bits above them
                    xs[1] = (np.arange(80) % 32 + (RNG.integers(0, 2, 80) << 7)).astype(np.int32)
                    want = S._BINARY_I[shift_fn](xs[0], xs[1]).astype(np.int32)
                elif requant:
                    xs[2] = RNG.choice(SHIFTS, 80).astype(np.int32)
                    want = np.array([_requant_reference(int(x), int(w), int(sv), zpv, lov, hiv)
                                     for x, w, sv in zip(*xs, strict=True)])
                else:
                    want = (xs[0] * xs[1] + acc * xs[2] if prod
                            else _lane_reference(code, *xs)).astype(np.int32)
            for i in range(len(want) + L.VECTOR_STAGES):
                if i < len(want):
                    for sig, x in zip((a, b, c), xs, strict=True):
                        ctx.set(sig, int(x[i]) & 0xFFFFFFFF)
                await ctx.tick()
                done = i + 1 - L.VECTOR_STAGES
                if 0 <= done < len(want):
                    assert ctx.get(y) == int(want[done]) & 0xFFFFFFFF, \
                        (code.name, prod, acc, requant, shift_fn, [int(x[done]) for x in xs])

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_dot_columns_of_dsp_and_lut_products_match_numpy():
    """`dot_column` with every product on a DSP, one in LUTs and all: the sum of the int8
    products of random 32-bit lanes (only their low bytes count), + old when accumulating;
    a result every clock, DOT_STAGES after its operands."""
    n = TINY.n
    m = Module()
    inp, wgt = Signal(32 * n), Signal(32 * n)
    old, acc = Signal(32), Signal()
    outs = [L.dot_column(m, L.split(inp, n), L.split(wgt, n), old, acc, f"c{k}", lut_products=k)
            for k in (0, 1, n)]

    def int8s(words):
        return ((words & 0xFF).astype(np.int64) ^ 0x80) - 0x80

    async def bench(ctx):
        for a in (0, 1):  # acc is the instruction's, constant while it runs
            ctx.set(acc, a)
            cases = [(RNG.integers(0, 2**32, n), RNG.integers(0, 2**32, n),
                      int(RNG.integers(-2**31, 2**31))) for _ in range(40)]
            cases += [(np.full(n, v), np.full(n, w), -1)
                      for v, w in ((0x80, 0x80), (0x7F, 0x80), (0xFF, 0x80), (0x7F, 0x7F))]
            for i in range(len(cases) + L.DOT_STAGES):
                if i < len(cases):
                    xs, ws, o = cases[i]
                    ctx.set(inp, sum(int(x) << (32 * k) for k, x in enumerate(xs)))
                    ctx.set(wgt, sum(int(w) << (32 * k) for k, w in enumerate(ws)))
                    ctx.set(old, o & 0xFFFFFFFF)
                await ctx.tick()
                done = i + 1 - L.DOT_STAGES
                if 0 <= done < len(cases):
                    xs, ws, o = cases[done]
                    want = (int((int8s(xs) * int8s(ws)).sum()) + a * o) & 0xFFFFFFFF
                    for k, out in zip((0, 1, n), outs, strict=True):
                        assert ctx.get(out) == want, (k, a, done)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_lane_tree_matches_numpy():
    """REDUCE over the lanes (`lane_tree`): a row every clock, its lanes combined and then,
    when accumulating, combined with each lane of the old row; lane_tree_stages(n) clocks
    after its operands, for every function, with and without accumulation."""
    n = 8
    m = Module()
    fn, acc = Signal(2), Signal()
    row, old = Signal(32 * n), Signal(32 * n)
    out = L.join(L.lane_tree(m, fn, L.split(row, n), L.split(old, n), acc))
    depth = L.lane_tree_stages(n)

    async def bench(ctx):
        for f in ReduceFn:
            for a in (0, 1):
                ctx.set(fn, int(f))
                ctx.set(acc, a)
                pool = np.concatenate([EDGE, RNG.integers(-2**31, 2**31, 40)])
                cases = [tuple(RNG.choice(pool, n).astype(np.int32) for _ in range(2))
                         for _ in range(30)]
                for i in range(len(cases) + depth):
                    if i < len(cases):
                        ctx.set(row, sum((int(x) & 0xFFFFFFFF) << (32 * k)
                                         for k, x in enumerate(cases[i][0])))
                        ctx.set(old, sum((int(x) & 0xFFFFFFFF) << (32 * k)
                                         for k, x in enumerate(cases[i][1])))
                    await ctx.tick()
                    done = i + 1 - depth
                    if 0 <= done < len(cases):
                        xs, olds = cases[done]
                        with np.errstate(all="ignore"):
                            total = xs[0]
                            for x in xs[1:]:
                                total = S._combine(total, x, f, False)
                            want = [S._combine(o, total, f, False) if a else total
                                    for o in olds]
                        got = ctx.get(out)
                        assert [(got >> (32 * k)) & 0xFFFFFFFF for k in range(n)] == \
                            [int(w) & 0xFFFFFFFF for w in want], (f.name, a, done)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_load_unit_writes_zeros_but_in_the_rows_it_writes():
    """The SRAM clear's zero rows go out through the load unit's port (`SramArbiter`), so
    its write data is zero whenever it does not write, whatever DRAM returns; in a row it
    writes, each format's lanes (up to `cols`) and zeros past them."""
    from isa.encoding import make
    from isa.table import Fmt
    from rtl.dma import LoadUnit

    unit = LoadUnit(TINY)
    width = len(unit.dram.rd_data)

    def lanes(raw: int, fmt: Fmt, cols: int) -> list[int]:
        out = []
        for c in range(TINY.n):
            word, byte = (raw >> (32 * c)) & 0xFFFFFFFF, (raw >> (8 * c)) & 0xFF
            value = word if fmt == Fmt.X32 else (byte - 256 * (byte >> 7) if fmt == Fmt.I8
                                                 else byte)
            out.append(value & 0xFFFFFFFF if c < cols else 0)
        return out

    async def bench(ctx):
        for _ in range(5):  # idle: zeros
            ctx.set(unit.dram.rd_data, int(RNG.integers(0, 2**63)) << (width - 63))
            await ctx.tick()
            assert ctx.get(unit.wr.en) == 0 and ctx.get(unit.wr.data) == 0
        for fmt in Fmt:
            for cols in (1, TINY.n - 1, TINY.n):
                insn = make("load", sram=2, dram=0, stride=16, rows=2, cols=cols, fmt=int(fmt))
                ctx.set(unit.insn, int.from_bytes(insn.encode(), "little"))
                ctx.set(unit.go, 1)
                for k in range(4):
                    raw = sum(int(RNG.integers(0, 2**32)) << (32 * c) for c in range(TINY.n))
                    ctx.set(unit.dram.rd_data, raw)
                    await ctx.tick()
                    ctx.set(unit.go, 0)
                    got = ctx.get(unit.wr.data)
                    if ctx.get(unit.wr.en):
                        assert [(got >> (32 * c)) & 0xFFFFFFFF for c in range(TINY.n)] == \
                            lanes(raw, fmt, cols), (fmt, cols, k)
                    else:
                        assert got == 0, (fmt, cols, k)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_queue_is_first_in_first_out_and_accepts_while_full_and_popping():
    q = InstructionQueue(16, 3)

    async def bench(ctx):
        expected = []
        pushed = 0
        for _ in range(200):
            level = ctx.get(q.level)
            assert level == len(expected)
            if expected:
                assert ctx.get(q.r_data) == expected[0]
            pop = bool(expected) and bool(RNG.integers(0, 2))
            push = (level - pop) < 3 and bool(RNG.integers(0, 2))
            ctx.set(q.r_en, pop)
            ctx.set(q.w_en, push)
            ctx.set(q.w_data, pushed)
            if pop:
                expected.pop(0)
            if push:
                expected.append(pushed)
                pushed += 1
            await ctx.tick()
        assert pushed > 50

    sim = Simulator(q)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
