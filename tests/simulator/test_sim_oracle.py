"""Hypothesis against a pure-Python oracle written from FUNCTION_DOC and NUMERICS.

The oracle works on Python integers lane by lane (no numpy), so it shares no code
and no overflow behaviour with the simulator's vectorised data path.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import SP, TINY, execute, machine

from isa.encoding import make
from isa.table import Axis, BinaryFn, DType, ReduceFn, TernaryFn, UnaryFn

N = TINY.n
int32s = st.integers(-(2**31), 2**31 - 1)
lanes = st.lists(int32s, min_size=N, max_size=N)
f32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
flanes = st.lists(f32s, min_size=N, max_size=N)


def wrap(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def trunc_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return wrap(q if (a < 0) == (b < 0) else -q)


INT_BINARY = {
    BinaryFn.ADD: lambda a, b: wrap(a + b),
    BinaryFn.SUB: lambda a, b: wrap(a - b),
    BinaryFn.MUL: lambda a, b: wrap(a * b),
    BinaryFn.DIV: trunc_div,
    BinaryFn.MAX: max,
    BinaryFn.MIN: min,
    BinaryFn.CMPLT: lambda a, b: int(a < b),
    BinaryFn.CMPEQ: lambda a, b: int(a == b),
    BinaryFn.AND: lambda a, b: a & b,
    BinaryFn.OR: lambda a, b: a | b,
    BinaryFn.XOR: lambda a, b: a ^ b,
    BinaryFn.SHL: lambda a, b: wrap(a << (b & 31)),
    BinaryFn.SHR: lambda a, b: a >> (b & 31),
}


def rows(*row_lists):
    return np.array(row_lists, dtype=np.int64).astype(np.int32)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(BinaryFn)), lanes, lanes)
def test_int_binary(fn, a, b):
    m = machine(sp=rows(a, b))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=fn, step1=1,
                    step2=1))
    assert m.sp[2].tolist() == [INT_BINARY[fn](x, y) for x, y in zip(a, b, strict=True)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([BinaryFn.ADD, BinaryFn.SUB, BinaryFn.MUL, BinaryFn.DIV]), flanes,
       flanes.filter(lambda b: all(b)))
def test_f32_arithmetic_is_correctly_rounded(fn, a, b):
    # For + - * / of fp32 operands, the float64 result rounded once to fp32 is the exact
    # correctly rounded fp32 result (53 >= 2 * 24 + 2).
    ops = {BinaryFn.ADD: lambda x, y: x + y, BinaryFn.SUB: lambda x, y: x - y,
           BinaryFn.MUL: lambda x, y: x * y, BinaryFn.DIV: lambda x, y: x / y}
    m = machine(sp=np.array([a, b], np.float32))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=fn,
                    dtype=DType.F32, step1=1, step2=1))
    with np.errstate(over="ignore"):
        want = [np.float32(ops[fn](float(x), float(y))) for x, y in zip(a, b, strict=True)]
    assert m.sp[2].view(np.float32).tolist() == [float(w) for w in want]


@settings(max_examples=60, deadline=None)
@given(lanes, lanes, lanes)
def test_int_ternary(a, b, c):
    m = machine(sp=rows(a, b, c))
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.MULACC, step1=1, step2=1, step3=1))
    assert m.sp[3].tolist() == [wrap(wrap(x * y) + z) for x, y, z in zip(a, b, c, strict=True)]
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.WHERE, step1=1, step2=1, step3=1))
    assert m.sp[3].tolist() == [y if x else z for x, y, z in zip(a, b, c, strict=True)]


@settings(max_examples=60, deadline=None)
@given(st.lists(lanes, min_size=1, max_size=6), st.sampled_from(list(ReduceFn)))
def test_int_reduce(data, fn):
    py = {ReduceFn.SUM: lambda xs: wrap(sum(xs)), ReduceFn.MAX: max, ReduceFn.MIN: min}[fn]
    m = machine(sp=rows(*data))
    execute(m, make("reduce", dst=SP(10), src1=SP(0), count=len(data), fn=fn,
                    axis=Axis.ROWS))
    assert m.sp[10].tolist() == [py(col) for col in zip(*data, strict=True)]
    execute(m, make("reduce", dst=SP(20), src1=SP(0), count=len(data), fn=fn,
                    axis=Axis.LANES))
    assert m.sp[20:20 + len(data)].tolist() == [[py(r)] * N for r in data]


@settings(max_examples=60, deadline=None)
@given(lanes)
def test_int_unary(x):
    m = machine(sp=rows(x))
    expect = {UnaryFn.NEG: lambda v: wrap(-v), UnaryFn.ABS: lambda v: wrap(abs(v)),
              UnaryFn.RELU: lambda v: max(v, 0), UnaryFn.NOT: lambda v: ~v}
    for fn, py in expect.items():
        execute(m, make("unary", dst=SP(1), src1=SP(0), count=1, fn=fn, step1=1))
        assert m.sp[1].tolist() == [py(v) for v in x], fn


@settings(max_examples=80, deadline=None)
@given(lanes, lanes, st.lists(st.integers(0, 255), min_size=N, max_size=N),
       st.integers(-256, 255), st.integers(-256, 255), st.integers(-256, 255))
def test_requant(x, mult, shift, zp, lo, hi):
    m = machine(sp=rows(x, mult, shift))
    execute(m, make("requant", dst=SP(3), src1=SP(0), src2=SP(1), count=1, zp=zp, lo=lo, hi=hi,
                    step1=1))
    want = []
    for v, mu, sh in zip(x, mult, shift, strict=True):
        p, s = v * mu, sh & 63
        q = p if s == 0 else (p + (1 << (s - 1))) >> s  # Python ints never overflow
        want.append(min(max(q + zp, lo), hi))
    assert m.sp[3].tolist() == want


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=N, max_size=N),
                min_size=N + 1, max_size=N + 6), st.booleans())
def test_int8_matmul(data, acc):
    m = machine(sp=rows(*data), acc=rows(*[[v * 7919 % 2**31 for v in r] for r in data]))
    before = m.acc.copy()
    count = len(data) - N
    execute(m, make("matmul", dst=0, inp=N, wgt=0, rows=count, acc=int(acc)))

    def s8(v: int) -> int:
        return (v & 0xFF) - 256 * ((v & 0xFF) >= 128)

    for i in range(count):
        for j in range(N):
            total = sum(s8(data[N + i][k]) * s8(data[k][j]) for k in range(N))
            assert m.acc[i, j] == wrap(total + (int(before[i, j]) if acc else 0))
