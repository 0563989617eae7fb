"""Lane arithmetic of the vector unit, the requantiser and the int8 matrix array.

Each follows `isa.table.FUNCTION_DOC` and `isa.model.NUMERICS` for int32 (wrap-around,
5-bit shift amounts, arithmetic SHR). The combinational helpers (unary, binary, combine,
requant, ...) state the arithmetic; the pipelined builders (`vector_lane`, `dot_column`,
`lane_tree`) lay the same arithmetic over clock stages for the compute unit, each taking
operands that arrive in one clock and giving its result a fixed number of clocks later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from isa.table import BinaryFn, ReduceFn, TernaryFn, UnaryFn

LANE = 32


def split(row: Value, n: int) -> list[Value]:
    """The n signed 32-bit lanes of a row."""
    return [row[LANE * i:LANE * (i + 1)].as_signed() for i in range(n)]


def join(lanes: list[Value]) -> Value:
    return Cat(*[lane[0:LANE] for lane in lanes])


def select(fn: Value, table: dict[int, Value], default: Value) -> Value:
    """table[fn], or `default` for a code the table lacks: a balanced tree of 2:1 muxes
    over fn's bits (log2 levels), not a chain of compares as long as the table."""
    entries = [Value.cast(table.get(code, default)) for code in range(1 << len(fn))]

    def tree(items: list[Value], bit: int) -> Value:
        if len(items) == 1:
            return items[0]
        half = len(items) // 2
        return Mux(fn[bit], tree(items[half:], bit - 1), tree(items[:half], bit - 1))

    return tree(entries, len(fn) - 1)


def unary(fn: Value, a: Value) -> Value:
    neg = -a
    return select(fn, {
        UnaryFn.NEG: neg,
        UnaryFn.ABS: Mux(a < 0, neg, a),
        UnaryFn.RELU: Mux(a < 0, 0, a),
        UnaryFn.NOT: ~a,
    }, a)[0:LANE]


def binary(fn: Value, a: Value, b: Value, *, mul: bool = True) -> Value:
    """Every int32 binary function but DIV, which the compute unit's divider does (and but
    MUL when `mul` is false: the pipelined lane takes it from its shared multiplier)."""
    shamt = b[0:5]
    return select(fn, {
        BinaryFn.ADD: a + b,
        BinaryFn.SUB: a - b,
        **({BinaryFn.MUL: (a * b)[0:LANE]} if mul else {}),
        BinaryFn.MAX: Mux(a < b, b, a),
        BinaryFn.MIN: Mux(b < a, b, a),
        BinaryFn.CMPLT: a < b,
        BinaryFn.CMPEQ: a == b,
        BinaryFn.AND: a & b,
        BinaryFn.OR: a | b,
        BinaryFn.XOR: a ^ b,
        BinaryFn.SHL: (a << shamt)[0:LANE],
        BinaryFn.SHR: a >> shamt,
    }, a)[0:LANE]


def ternary(fn: Value, a: Value, b: Value, c: Value) -> Value:
    return select(fn, {
        TernaryFn.WHERE: Mux(a != 0, b, c),
        TernaryFn.MULACC: ((a * b)[0:LANE] + c),
    }, a)[0:LANE]


def combine(fn: Value, a: Value, b: Value, m: Module | None = None, name: str = "cb") -> Value:
    """One step of a reduction: sum (wrapping), max or min (one compare: for a == b either
    operand is the answer; fn 3 is never decoded). Each bit is a 5-input choice: the sum,
    or a or b by the compare flipped for MIN. Given `m`, the sum and the compare are kept
    carry chains."""
    lt, total = a < b, (a + b)[0:LANE]
    if m is not None:
        lt, total = kept(m, lt, f"{name}_lt"), kept(m, total, f"{name}_sum")
    pick_b = lt ^ (fn == ReduceFn.MIN)
    return Mux(fn == ReduceFn.SUM, total, Mux(pick_b, b, a)).as_signed()


def reduce_tree(fn: Value, lanes: list[Value]) -> Value:
    level = list(lanes)
    while len(level) > 1:
        level = [combine(fn, level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def requant(x: Value, mult: Value, shift: Value, zp: Value, lo: Value, hi: Value) -> Value:
    """REQUANT for one lane: exact 64-bit product, round half up, zero point, clamp."""
    s = shift[0:6]
    p = x.as_signed() * mult.as_signed()
    rounding = Mux(s == 0, 0, (Value.cast(1) << (s - 1).as_unsigned()[0:6])[0:64])
    q = (p + rounding) >> s
    y = q + zp
    y = Mux(y < lo, lo, y)
    y = Mux(y > hi, hi, y)
    return y[0:LANE]


def int8(lane: Value) -> Value:
    return lane[0:8].as_signed()


def matmul_row(inp: list[Value], weights: list[list[Value]]) -> list[Value]:
    """out[j] = sum_k int8(inp[k]) * int8(W[k][j]), exact (the caller wraps to int32)."""
    n = len(inp)
    return [sum(int8(inp[k]) * int8(weights[k][j]) for k in range(n)) for j in range(n)]


# Pipelined builders ------------------------------------------------------------------------
#
# Each takes operands held in registers (the compute unit's operand stage, or a lane's own
# input registers) and returns a register its result is in a fixed number of clocks later:
# the *_STAGES constants below. They are the datapaths' own depths; the ISA table's latency
# formulas say how many clocks the compute unit has, and the unit pads the difference.


def reg(m: Module, value: Value, name: str, attrs: dict | None = None) -> Signal:
    """`value`, one clock later."""
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name, attrs=attrs or {})
    m.d.sync += sig.eq(value)
    return sig


# A wire attribute: synthesis keeps the flip-flop that drives a wire so marked (`rtl.synth`
# sets yosys's `keep` on it), where it would merge registers of the same D input into one.
REPLICA = "dozen_replica"


def replicas(name: str, count: int, shape=1) -> list[Signal]:
    """`count` registers the caller drives alike, one for each group of the loads: a
    register read by a thousand LUTs spread over the chip is one net routed across all of
    them (several ns on an ECP5), where a copy for each lane is a net within the lane. The
    copies' inputs gain their loads: worth it where those are plain pipeline registers, not
    where they are the start decision or the clock enable (rtl/README.md)."""
    return [Signal(shape, name=f"{name}_r{i}", attrs={REPLICA: 1}) for i in range(count)]


def copies(m: Module, value: Value, name: str, count: int, en: Value | None = None,
           shape=None) -> list[Signal]:
    """`value` registered into `count` replicas (`replicas`), when `en`."""
    value = Value.cast(value)
    sigs = replicas(name, count, value.shape() if shape is None else shape)
    with m.If(1 if en is None else en):
        m.d.sync += [s.eq(value) for s in sigs]
    return sigs


def wire(m: Module, value: Value, name: str, attrs: dict | None = None) -> Signal:
    """`value` as a named wire, for a value used more than once. The Verilog names each use
    of an expression again, so a value read in n places is built n times there (and
    Verilator evaluates every copy each clock); synthesis merges the copies either way."""
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name, attrs=attrs or {})
    m.d.comb += sig.eq(value)
    return sig


def kept(m: Module, value: Value, name: str) -> Signal:
    """`value` as a wire synthesis keeps: an add into it stays a carry chain.

    Without it yosys merges a tree of adds into one multi-operand sum and builds that from
    LUTs (about twice the logic of the carry chains, and deeper)."""
    return wire(m, value, name, {"keep": 1})


def pick(m: Module, choices: list[tuple[Value, Value]], name: str, width: int = LANE) -> Value:
    """The value whose select is set (at most one is), as an OR of ANDs: the selects are
    worked out once, as kept wires, so each bit's LUT4 takes two (value, select) pairs; a
    multiplexer tree making the same choice puts every control signal in every bit's LUTs
    (REDUCE's last stage: about four LUTs a bit, not two)."""
    out = Const(0, width)
    for k, (value, sel) in enumerate(choices):
        bit = kept(m, sel, f"{name}_sel{k}")
        out = out | (_extend(value, width) & bit.replicate(width))
    return out


def delay(m: Module, value: Value, clocks: int, name: str, attrs: dict | None = None) -> Value:
    for i in range(clocks):
        value = reg(m, value, f"{name}_d{i}", attrs)
    return value


class LaneFn(IntEnum):
    """The vector lane's own function codes, decoded once per instruction from (op, fn).

    Codes below 16 are chosen in the lane's first stage, from a 16-way mux; codes from 16
    up need the compare of a and b and are chosen in its second."""

    PASS = 0  # a (MOVE; REQUANT and the products take their own path)
    NEG = 1
    ABS = 2
    RELU = 3
    NOT = 4
    ADD = 5
    SUB = 6
    AND = 7
    OR = 8
    XOR = 9
    WHERE = 12
    MAX = 16
    MIN = 17
    CMPLT = 18
    CMPEQ = 19
    BCAST = 20  # `vector_lane`'s bcast: MOVE BCAST's chosen lane, taken in the second stage


LANE_FN_BITS = 5
UNARY_LANE_FN = {UnaryFn.NEG: LaneFn.NEG, UnaryFn.ABS: LaneFn.ABS, UnaryFn.RELU: LaneFn.RELU,
                 UnaryFn.NOT: LaneFn.NOT}
BINARY_LANE_FN = {BinaryFn.ADD: LaneFn.ADD, BinaryFn.SUB: LaneFn.SUB, BinaryFn.MAX: LaneFn.MAX,
                  BinaryFn.MIN: LaneFn.MIN, BinaryFn.CMPLT: LaneFn.CMPLT,
                  BinaryFn.CMPEQ: LaneFn.CMPEQ, BinaryFn.AND: LaneFn.AND,
                  BinaryFn.OR: LaneFn.OR, BinaryFn.XOR: LaneFn.XOR}
# SHL and SHR take the product and REQUANT's shift window (`shift_operands`), not a LaneFn.
SHIFT_FNS = (BinaryFn.SHL, BinaryFn.SHR)
TERNARY_LANE_FN = {TernaryFn.WHERE: LaneFn.WHERE}


@dataclass
class LaneControl:
    """What the running instruction tells every vector lane: constant while it runs, and set
    at least a clock before its first operands reach the lane."""

    fn: Value  # a LaneFn
    product: Value  # 1: the result is the low 32 bits of a*b (+ c when `mulacc`)
    mulacc: Value
    requant: Value  # 1: the result is REQUANT of a (value), b (multiplier), c (shift)
    zp: Value
    lo: Value
    hi: Value
    shift: Value = field(default_factory=lambda: Const(0))  # SHL/SHR: see `shift_operands`


def shift_operands(left: Value, amount: Value) -> tuple[Value, Value]:
    """The b and c a vector lane takes for SHL (`left`) or SHR of a by `amount` (its low
    five bits): b the multiplier, c where REQUANT's shift window starts. SHL is the
    window of a * 2^30 at 31 - s, SHR the window of a at s + 1 (the window reads the
    product with a zero below it, REQUANT's rounding bit). Constants in b, so the DSPs'
    operand path gains no logic; the window replaces a 32-bit barrel shifter a lane."""
    s = amount[0:5]
    mult = Mux(left, Const(1 << 30, LANE), Const(1, LANE))
    start = Mux(left, Const(31, 6) - s, s + 1)[0:6]
    return mult, start


VECTOR_STAGES = 4  # after the operand registers: products, 64-bit sum, shift window, clamp
# REQUANT keeps 12 bits of p >> s and two flags for beyond them: |zp|, |lo|, |hi| < 2^8.
_SAT = 12


def _reverse(v: Value) -> Value:
    return Cat(*[v[i] for i in reversed(range(len(v)))])


def _first_stage_controls(fn: Value) -> dict[str, Value]:
    """The first stage's control bits, decoded from a LaneFn (registered in each lane, so
    the stage's logic starts from flip-flops, not from this decode)."""
    code = {f: fn == f for f in LaneFn}
    return {
        "neg": code[LaneFn.NEG], "abs": code[LaneFn.ABS], "relu": code[LaneFn.RELU],
        "zero": fn[4],  # the compare codes: the second stage fills them in
        "sub": code[LaneFn.SUB], "add_sub": code[LaneFn.ADD] | code[LaneFn.SUB],
        "logic0": code[LaneFn.OR] | code[LaneFn.NOT], "logic1": code[LaneFn.XOR] | code[LaneFn.NOT],
        "logic": code[LaneFn.AND] | code[LaneFn.OR] | code[LaneFn.XOR] | code[LaneFn.NOT],
        "where": code[LaneFn.WHERE],
    }


def _first_stage(k: dict[str, Value], a: Value, b: Value, c: Value) -> Value:
    """LaneFn codes below 16 (the compare-free functions), from three shared circuits: one
    adder (PASS, NEG, ABS, RELU, ADD, SUB; zero for the compare codes, which the second
    stage fills in), one bitwise LUT per bit (AND, OR, XOR, NOT) and WHERE's choice. `k`:
    the decoded controls (`_first_stage_controls`)."""
    negative = a[31]
    # Adder: X + Y + cin, with X = a or 0 and Y = 0, ~a, b or ~b.
    negate = k["neg"] | (k["abs"] & negative)
    x = Mux(negate | k["zero"] | (k["relu"] & negative), 0, a)
    y = select(Cat(k["add_sub"], negate | k["sub"]), {0: Const(0, LANE), 1: b, 2: ~a, 3: ~b}, b)
    total = (x + y + (negate | k["sub"]))[0:LANE]
    # Bitwise: one LUT per bit of (a, b, two code bits).
    logic = select(Cat(k["logic0"], k["logic1"]), {0: a & b, 1: a | b, 2: a ^ b, 3: ~a}, a)
    where = Mux(a.any(), b, c)
    return Mux(k["where"], where, Mux(k["logic"], logic, total))[0:LANE]


def _second_stage(m: Module, fn: Value, first: Value, a: Value, b: Value, lt: Value,
                  eq: Value, name: str, bcast: Value | None = None) -> Value:
    """LaneFn codes from 16 up, from the registered compare (and BCAST's lane); `first`
    otherwise."""
    code = {f: fn[4] & (fn[0:3] == f - 16) for f in (LaneFn.MAX, LaneFn.MIN, LaneFn.CMPLT,
                                                      LaneFn.CMPEQ, LaneFn.BCAST)}
    take_b = (code[LaneFn.MAX] & lt) | (code[LaneFn.MIN] & ~(lt | eq))
    take_a = (code[LaneFn.MAX] & ~lt) | (code[LaneFn.MIN] & (lt | eq))
    flag = (code[LaneFn.CMPLT] & lt) | (code[LaneFn.CMPEQ] & eq)
    extra = [] if bcast is None else [(bcast, code[LaneFn.BCAST])]
    return pick(m, [(first, ~fn[4]), (a, take_a), (b, take_b), (Const(1, 1), flag), *extra],
                name)


def _extend(v: Value, width: int) -> Value:
    """v as `width` bits: sign-extended if signed, zero-extended if not."""
    v = Value.cast(v)
    if len(v) >= width:
        return v[0:width]
    fill = v[-1] if v.shape().signed else Const(0, 1)
    return Cat(v, fill.replicate(width - len(v)))


def _thermometer(s: Value, offset: int, width: int) -> Value:
    """Bit k is 1 where k >= s + offset (s unsigned): with s = 8*hi + lo, each bit is one
    LUT of three shared signals (hi below, hi equal to, lo at most the bit's own), not a
    compare of the whole sum."""
    lo, hi = s[0:3], s[3:]
    above = {h: hi < h for h in range(1 << len(hi))}
    equal = {h: hi == h for h in range(1 << len(hi))}
    upto = {low: lo <= low for low in range(8)}
    bits = []
    for k in range(width):
        c = k - offset  # bit k is set when s <= c
        if c < 0:
            bits.append(Const(0))
        elif c >> 3 >= 1 << len(hi):
            bits.append(Const(1))
        else:
            bits.append(above[c >> 3] | (equal[c >> 3] & upto[c & 7]))
    return Cat(*bits)


def shift_window(m: Module, x: Value, s: Value, width: int, name: str) -> Value:
    """(x >> s)[0:width], x signed: the largest shift first, so each level keeps only the
    bits the smaller shifts after it can still bring into the window (about width +
    2^level muxes a level, not len(x)). Each level is a wire: the next reads its bits
    twice."""
    bits = [x[i] for i in range(len(x))]

    def at(i: int) -> Value:
        # Beyond the top: x's sign. Only the first level reads there; each later one reads
        # below width + 2 * step - 1, the bits the level before it kept.
        return bits[i] if i < len(bits) else x[-1]

    for k in reversed(range(len(s))):
        step = 1 << k
        level = wire(m, Cat(*[Mux(s[k], at(i + step), at(i)) for i in range(width + step - 1)]),
                     f"{name}_shift{k}")
        bits = [level[i] for i in range(len(level))]
    return Cat(*bits[0:width])


def lane_dsps(m: Module, a: Value, b: Value, name: str = "vl", lend: Value | int = 0,
              borrowed: tuple[tuple[Value, Value], ...] = ()) -> list[Signal]:
    """A vector lane's LANE_DSPS registered products: of the 16-bit halves of a and b
    (a = ah * 2^16 + al, al unsigned), ll = al*bl, hh = ah*bh and (al + ah)(bl + bh), whose
    sums fit 18 bits; al*bh + ah*bl is mid - ll - hh, so three DSPs, not four.

    While `lend` is high (MATMUL: the lanes are idle, as compute instructions never overlap)
    the i-th computes int8(x) * int8(w) of `borrowed[i]` instead, for the matrix array.
    """
    a, b = a.as_signed(), b.as_signed()
    al, ah = a[0:16], a[16:32].as_signed()
    bl, bh = b[0:16], b[16:32].as_signed()
    out = []
    for i, (x, y, part) in enumerate(((al, bl, "ll"), (ah, bh, "hh"),
                                      (al + ah, bl + bh, "mid"))):
        if i < len(borrowed):
            x, y = Mux(lend, int8(borrowed[i][0]), x), Mux(lend, int8(borrowed[i][1]), y)
        out.append(reg(m, x * y, f"{name}_{part}"))
    return out


def vector_lane(m: Module, ctl: LaneControl, a: Value, b: Value, c: Value,
                name: str = "vl", dsps: list[Signal] | None = None,
                bcast: Value | None = None) -> Signal:
    """One lane of UNARY, BINARY (but DIV), TERNARY, REQUANT and MOVE, VECTOR_STAGES deep.

    1. three 18x18 DSP products of the 16-bit halves of a and b (`lane_dsps`; the caller
       may build them, to lend them to the matrix array); the compare-free functions
       (ctl.fn < 16) and the compare of a and b
    2. the exact 64-bit product: (hh, ll) side by side plus (mid - ll - hh)<<16, three
       kept carry chains (carry-save levels over 64 bits took 95 more LUTs a lane, at
       the same Fmax); MAX, MIN, CMPLT, CMPEQ from the compare; BCAST takes `bcast` (a
       value registered a clock after the operands: MOVE BCAST's chosen lane)
    3. REQUANT: bits s-1 .. s+11 of the product (the rounding bit and p >> s) and whether
       p >> s leaves 12 bits, from a 32-bit window of the product that also gives SHL and
       SHR (`shift_operands`); MUL, MULACC: the low 32 bits (+ c)
    4. REQUANT: + rounding bit + zero point, clamped to lo..hi; the op's result
    """
    a, b, c = a.as_signed(), b.as_signed(), c.as_signed()
    ll, hh, mid = lane_dsps(m, a, b, name) if dsps is None else dsps
    # The first stage's controls, one clock after ctl.fn: an instruction's first operands
    # reach this stage two clocks after it sets ctl (the operand read and its register).
    k = {key: reg(m, v, f"{name}_k_{key}") for key, v in _first_stage_controls(ctl.fn).items()}
    f1 = reg(m, _first_stage(k, a, b, c), f"{name}_f1")
    lt1, eq1 = reg(m, a < b, f"{name}_lt1"), reg(m, a == b, f"{name}_eq1")
    a1, b1 = reg(m, a[0:LANE], f"{name}_a1"), reg(m, b[0:LANE], f"{name}_b1")
    c1 = reg(m, c[0:LANE], f"{name}_c1")
    sh1 = reg(m, c[0:6], f"{name}_sh1")
    # REQUANT's clamp compares q = (p >> s) + round against lo - zp and hi - zp (constant
    # while the instruction runs), so the add of zp runs beside them.
    zp = ctl.zp.as_signed()
    lo, hi = ctl.lo.as_signed(), ctl.hi.as_signed()
    k_lo, k_hi = reg(m, lo - zp, f"{name}_klo"), reg(m, hi - zp, f"{name}_khi")
    k_lo1 = reg(m, lo - zp - 1, f"{name}_klo1")
    lo_above_hi = reg(m, lo > hi, f"{name}_lohi")
    # Stage 2: p = a * b exactly; the mask of bits at or above s + 11 (saturation test).
    # al*bh + ah*bl = mid - ll - hh, exact in 34 bits; two kept subtractions, then one
    # add from bit 16 up (bits 0..15 of p are ll's).
    cross = kept(m, mid - _extend(ll[0:32], 36), f"{name}_mll")
    cross = kept(m, (cross - hh.as_signed())[0:34].as_signed(), f"{name}_cross")
    high = kept(m, (Cat(ll[16:32], hh[0:32]) + _extend(cross, 48))[0:48], f"{name}_phi")
    p = Cat(ll[0:16], high)
    p2 = reg(m, p, f"{name}_p2")
    mask2 = reg(m, _thermometer(sh1, _SAT - 1, 64), f"{name}_mask2")
    sh2 = reg(m, sh1, f"{name}_sh2")
    s2 = reg(m, _second_stage(m, ctl.fn, f1, a1.as_signed(), b1.as_signed(), lt1, eq1,
                              f"{name}_ss", bcast), f"{name}_s2")
    c2 = reg(m, c1, f"{name}_c2")
    # Stage 3: (p<<1) >> s gives the rounding bit (bit s-1 of p; 0 when s = 0) and p >> s;
    # p >> s is below -2^11 or at least 2^11 exactly when p's bits from s + 11 up are not all
    # its sign.
    window = shift_window(m, Cat(Const(0, 1), p2).as_signed(), sh2, LANE, name)
    win3 = reg(m, window, f"{name}_win3")
    big3 = reg(m, ~p2[63] & (p2 & mask2).any(), f"{name}_big3")
    small3 = reg(m, p2[63] & ~(p2 | ~mask2).all(), f"{name}_small3")
    low = (p2[0:32] + Mux(ctl.mulacc, c2, 0))[0:32]
    other3 = reg(m, Mux(ctl.product, low, s2), f"{name}_other3")
    # Stage 4: y = min(max(q + zp, lo), hi) with q = v + r; q < lo - zp is v < k_lo - r.
    v, r = win3[1:_SAT + 1].as_signed(), win3[0]
    below = small3 | Mux(r, v < k_lo1, v < k_lo)
    above = big3 | lo_above_hi | (~small3 & Mux(r, v >= k_hi, v > k_hi))
    y = Mux(above, hi, Mux(below, lo, v + r + zp))
    return reg(m, Mux(ctl.requant, y, Mux(ctl.shift, win3, other3))[0:LANE], f"{name}_y")


LANE_DSPS = 3  # 18x18 multipliers a vector lane takes (ll, hh and the Karatsuba middle)
DOT_STAGES = 3  # after the operand registers: the int8 products, then the adder tree in two


def _booth_digits(w: Value) -> list[tuple[Value, Value, Value]]:
    """int8(w) as four radix-4 Booth digits d_i in -2..2 (w = sum d_i 4^i): for each,
    (|d_i| == 1, |d_i| == 2, d_i < 0)."""
    bits = Cat(Const(0, 1), w[0:8])
    out = []
    for i in range(4):
        b0, b1, b2 = bits[2 * i], bits[2 * i + 1], bits[2 * i + 2]
        one = b0 ^ b1
        two = (b2 & ~b1 & ~b0) | (~b2 & b1 & b0)
        out.append((one, two, b2 & (one | two)))
    return out


def lut_product_carry(w: Value) -> Value:
    """1 when `lut_int8_product` of this w is 64 short: its top Booth digit is negative."""
    return _booth_digits(w)[3][2]


def lut_int8_product(m: Module, x: Value, w: Value, name: str) -> Value:
    """int8(x) * int8(w) - 64 * lut_product_carry(w), from LUTs and carry chains, no DSP.
    For a device with fewer DSPs than the array has products.

    w's radix-4 Booth digits pick four partial products 0, x or 2x, ones' complemented
    where the digit is negative (two LUT4s a bit); each complement's +1 but the top one's
    sits in low bits another partial product leaves free, and three kept adds sum them.
    The top digit's +1 (at bit 6) the caller adds once for a column (`dot_column`).
    """
    xs = int8(x)
    digits = _booth_digits(w)
    pp = []
    for one, two, neg in digits:
        mag = Mux(two, xs << 1, Mux(one, xs, 0))
        pp.append(Mux(neg, ~mag, mag).as_signed())
    negs = [neg for _, _, neg in digits]
    low = kept(m, pp[0] + Cat(negs[0], 0, negs[1], 0, negs[2], 0, pp[3]).as_signed(),
               f"{name}_lo")  # digits 0 and 3, with the +1s of 0, 1 and 2 below digit 3
    mid = kept(m, pp[1] + (pp[2] << 2), f"{name}_mid")  # digits 1 and 2, from bit 2
    return kept(m, low + (mid << 2), f"{name}_sum")[0:16].as_signed()


def dot_column(m: Module, inp: list[Value], wgt: list[Value], old: Value, acc: Value,
               name: str = "dot", lut_products: int = 0,
               given: dict[int, Value] | None = None) -> Signal:
    """One MATMUL output lane: sum_k int8(inp[k]) * int8(wgt[k]) (+ old when acc), DOT_STAGES
    deep. The n products are registered: `given` ones come from elsewhere (a vector lane's
    DSPs, already registered), the last `lut_products` are built by `lut_int8_product`,
    the others take a DSP each. Then the adder tree (log2(n) levels of narrow adds, then
    the 32-bit add of the old sum) is cut into two register stages."""
    first_lut = len(inp) - lut_products
    given = given or {}

    def product(k: int, x: Value, w: Value) -> Value:
        if k in given:
            return given[k][0:16].as_signed()
        return reg(m, int8(x) * int8(w) if k < first_lut
                   else lut_int8_product(m, x, w, f"{name}_l{k}"), f"{name}_p{k}")

    terms = [product(k, x, w) for k, (x, w) in enumerate(zip(inp, wgt, strict=True))]
    # The old sum (acc=1) and the LUT products' missing 64s, added beside the tree.
    carries = [lut_product_carry(w) for w in wgt[first_lut:]]
    old = delay(m, old, DOT_STAGES - 2, f"{name}_old")
    old = Mux(acc, old.as_signed(), 0)
    if carries:
        old = old + (reg(m, sum(carries), f"{name}_carries") << 6)
    old = reg(m, old[0:LANE], f"{name}_old2")
    levels = (len(terms) - 1).bit_length() + 1  # the tree, then + old
    first = (levels + 1) // 2
    done = 0
    while len(terms) > 1:
        terms = [kept(m, terms[i] + terms[i + 1], f"{name}_s{done}_{i}")
                 if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
        done += 1
        if done == first:
            terms = [reg(m, t, f"{name}_t{i}") for i, t in enumerate(terms)]
    total = terms[0] + old.as_signed()
    if done < first:  # a tree too shallow to cut (n = 1 or 2): register before the old sum
        total = reg(m, terms[0], f"{name}_t") + old.as_signed()
    return reg(m, total[0:LANE], f"{name}_y")


def lane_tree_stages(n: int) -> int:
    """Clocks REDUCE over the lanes takes from a row's arrival: the operand register, one
    per tree level, one for the combine with the old row (acc=1)."""
    return (n - 1).bit_length() + 2


def lane_tree(m: Module, fn: Value, lanes: list[Value], old: list[Value], acc: Value,
              name: str = "rt", registered: bool = False) -> list[Signal]:
    """REDUCE over the lanes of a row: the row and the old row registered as they arrive
    (the tree never starts at a block RAM's output, 5.6 ns into the clock), a register
    after every level of the combine tree, then each lane's combine with the old row
    (acc=1): its compare and sum side by side, and the choice. Operands arrive in the clock
    it is called for and the n results are `lane_tree_stages(n)` clocks later; or, when
    `registered`, the operands are that first register already (the compute unit's operand
    registers)."""
    if not registered:
        lanes = [reg(m, x, f"{name}_a{i}") for i, x in enumerate(lanes)]
        old = [reg(m, x, f"{name}_b{j}") for j, x in enumerate(old)]
    level = [x[0:LANE].as_signed() for x in lanes]
    levels = (len(level) - 1).bit_length()
    for depth in range(levels):
        level = [combine(fn, level[i], level[i + 1], m, f"{name}_c{depth}_{i}")
                 if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        level = [reg(m, v, f"{name}_l{depth}_{i}") for i, v in enumerate(level)]
    total = level[0]
    olds = [delay(m, x[0:LANE], levels, f"{name}_old{j}").as_signed() for j, x in enumerate(old)]
    out = []
    is_max, is_min = fn == ReduceFn.MAX, fn == ReduceFn.MIN
    for j, o in enumerate(olds):
        # combine(fn, old, total) when accumulating, else the total.
        lt = kept(m, o < total, f"{name}_olt{j}")
        add = kept(m, (o + total)[0:LANE], f"{name}_osum{j}")
        take_total = ~acc | (is_max & lt) | (is_min & ~lt)
        take_sum = acc & (fn == ReduceFn.SUM)
        take_old = acc & ~take_sum & ~(is_max & lt) & ~(is_min & ~lt)
        out.append(reg(m, pick(m, [(add, take_sum), (total, take_total), (o, take_old)],
                               f"{name}_pick{j}"), f"{name}_y{j}"))
    return out
