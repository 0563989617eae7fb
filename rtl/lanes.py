"""Lane arithmetic of the vector unit, the requantiser and the int8 matrix array.

Pure combinational helpers over Amaranth values; each follows `isa.table.FUNCTION_DOC`
and `isa.model.NUMERICS` for int32 (wrap-around, 5-bit shift amounts, arithmetic SHR).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Mux, Value

from isa.table import BinaryFn, ReduceFn, TernaryFn, UnaryFn

LANE = 32


def split(row: Value, n: int) -> list[Value]:
    """The n signed 32-bit lanes of a row."""
    return [row[LANE * i:LANE * (i + 1)].as_signed() for i in range(n)]


def join(lanes: list[Value]) -> Value:
    return Cat(*[lane[0:LANE] for lane in lanes])


def select(fn: Value, table: dict[int, Value], default: Value) -> Value:
    out = default
    for code, value in table.items():
        out = Mux(fn == int(code), value, out)
    return out


def unary(fn: Value, a: Value) -> Value:
    neg = -a
    return select(fn, {
        UnaryFn.NEG: neg,
        UnaryFn.ABS: Mux(a < 0, neg, a),
        UnaryFn.RELU: Mux(a < 0, 0, a),
        UnaryFn.NOT: ~a,
    }, a)[0:LANE]


def binary(fn: Value, a: Value, b: Value) -> Value:
    """Every int32 binary function but DIV, which the compute unit's divider does."""
    shamt = b[0:5]
    return select(fn, {
        BinaryFn.ADD: a + b,
        BinaryFn.SUB: a - b,
        BinaryFn.MUL: (a * b)[0:LANE],
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


def combine(fn: Value, a: Value, b: Value) -> Value:
    """One step of a reduction: sum (wrapping), max or min."""
    return select(fn, {
        ReduceFn.SUM: (a + b)[0:LANE].as_signed(),
        ReduceFn.MAX: Mux(a < b, b, a),
        ReduceFn.MIN: Mux(b < a, b, a),
    }, a).as_signed()


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
