"""Every opcode's data effect against hand-computed results (isa/table.py, isa/model.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import ACC, SP, TINY, execute, f32, i32, machine, run

from isa.asm import f32_bits
from isa.encoding import make
from isa.table import (
    Axis,
    BinaryFn,
    DType,
    Fmt,
    MatType,
    MoveFn,
    ReduceFn,
    TernaryFn,
    UnaryFn,
)
from simulator.errors import FaultSignal

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
NAN = float("nan")


def rows_of(m, local, count):
    mem = m.mems[local >> 16]
    row = local & 0xFFFF
    return mem[row:row + count]


# LOAD / STORE -------------------------------------------------------------------------------

def test_load_formats_stride_and_padding():
    dram = np.zeros(256, np.uint8)
    dram[0:3] = [0xFF, 0x7F, 0x80]
    dram[8:11] = [1, 2, 0xFE]
    dram[64:72] = np.array([-5, 70000], "<i4").view(np.uint8)
    code = [make("load", sram=SP(0), dram=0, stride=8, rows=2, cols=3, fmt=Fmt.I8),
            make("load", sram=SP(2), dram=0, stride=8, rows=2, cols=3, fmt=Fmt.U8),
            make("load", sram=ACC(5), dram=64, stride=0, rows=2, cols=2, fmt=Fmt.X32),
            make("halt")]
    r = run(code, TINY, dram)
    assert r.sp[0:4].tolist() == [[-1, 127, -128, 0], [1, 2, -2, 0],
                                  [255, 127, 128, 0], [1, 2, 254, 0]]
    assert r.acc[5:7].tolist() == [[-5, 70000, 0, 0]] * 2  # stride 0 repeats a row
    assert r.dram_bytes_read == 6 + 6 + 16


def test_store_low_byte_x32_and_overlapping_rows():
    m = machine(sp=i32([[0x1FF, -1, 128, 7], [1, 2, 3, 4]]))
    execute(m, make("store", sram=SP(0), dram=10, stride=5, rows=2, cols=3, fmt=Fmt.I8))
    assert m.dram[10:18].tolist() == [0xFF, 0xFF, 0x80, 0, 0, 1, 2, 3]
    execute(m, make("store", sram=SP(0), dram=100, stride=16, rows=2, cols=4, fmt=Fmt.X32))
    assert m.dram[100:116].view("<i4").tolist() == [0x1FF, -1, 128, 7]
    assert m.dram[116:132].view("<i4").tolist() == [1, 2, 3, 4]
    # Rows overlapping in DRAM: the later row wins where they overlap.
    execute(m, make("store", sram=SP(0), dram=200, stride=2, rows=2, cols=4, fmt=Fmt.U8))
    assert m.dram[200:206].tolist() == [0xFF, 0xFF, 1, 2, 3, 4]
    assert m.dram_written == 6 + 32 + 8


# MATMUL ---------------------------------------------------------------------------------------

def test_matmul_int8_reads_low_bytes_and_wraps_on_accumulate():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (5, 4))
    w = rng.integers(-128, 128, (4, 4))
    a_lanes = a + 256 * rng.integers(-3, 3, a.shape)  # junk above the low byte is ignored
    m = machine(sp=i32(np.vstack([w, a_lanes])))
    execute(m, make("matmul", dst=2, inp=4, wgt=0, rows=5, acc=0))
    assert np.array_equal(m.acc[2:7], a @ w)
    m.acc[2:7] = I32_MAX
    execute(m, make("matmul", dst=2, inp=4, wgt=0, rows=5, acc=1))
    assert np.array_equal(m.acc[2:7], ((I32_MAX + a @ w + 2**31) % 2**32 - 2**31))
    assert m.macs == 2 * 5 * 16


def test_matmul_fp32_sums_k_in_ascending_order():
    w = f32(np.eye(4)[[0, 0, 0, 0]].T * 0 + 1)  # every weight 1.0
    a = f32([[1e8, 1.0, -1e8, 1.0]])  # ((1e8 + 1) - 1e8) + 1 = 1 in fp32, pairwise gives 0
    m = machine(sp=np.vstack([w, a]))
    execute(m, make("matmul", dst=0, inp=4, wgt=0, rows=1, dtype=MatType.F32))
    assert m.acc[0].view(np.float32).tolist() == [1.0] * 4
    execute(m, make("matmul", dst=0, inp=4, wgt=0, rows=1, acc=1, dtype=MatType.F32))
    assert m.acc[0].view(np.float32).tolist() == [2.0] * 4


# UNARY ------------------------------------------------------------------------------------------

UNARY_CASES = [
    (UnaryFn.NEG, DType.I32, [5, -7, I32_MIN, 0], [-5, 7, I32_MIN, 0]),
    (UnaryFn.ABS, DType.I32, [5, -7, I32_MIN, 0], [5, 7, I32_MIN, 0]),
    (UnaryFn.RELU, DType.I32, [5, -7, I32_MIN, 0], [5, 0, 0, 0]),
    (UnaryFn.NOT, DType.I32, [0, -1, 5, I32_MAX], [-1, 0, -6, I32_MIN]),
    (UnaryFn.NEG, DType.F32, [1.5, -2.0, 0.0, NAN], [-1.5, 2.0, -0.0, NAN]),
    (UnaryFn.ABS, DType.F32, [1.5, -2.0, -0.0, -np.inf], [1.5, 2.0, 0.0, np.inf]),
    (UnaryFn.RELU, DType.F32, [1.5, -2.0, 0.0, 3.0], [1.5, 0.0, 0.0, 3.0]),
    (UnaryFn.EXP2, DType.F32, [0.0, 3.0, -1.0, -np.inf], [1.0, 8.0, 0.5, 0.0]),
    (UnaryFn.LOG2, DType.F32, [1.0, 8.0, 0.0, -1.0], [0.0, 3.0, -np.inf, NAN]),
    (UnaryFn.SQRT, DType.F32, [4.0, 2.25, 0.0, -1.0], [2.0, 1.5, 0.0, NAN]),
    (UnaryFn.RECIP, DType.F32, [4.0, -0.5, 0.0, -0.0], [0.25, -2.0, np.inf, -np.inf]),
    (UnaryFn.SIN, DType.F32, [0.0, np.pi / 2, -np.pi / 2, np.pi / 6],
     [0.0, 1.0, -1.0, 0.5]),
]


@pytest.mark.parametrize("fn,dtype,x,want", UNARY_CASES,
                         ids=[f"{c[0].name}-{c[1].name}" for c in UNARY_CASES])
def test_unary(fn, dtype, x, want):
    src = f32([x]) if dtype == DType.F32 else i32([x])
    m = machine(sp=src)
    execute(m, make("unary", dst=ACC(1), src1=SP(0), count=1, fn=fn, dtype=dtype))
    got = m.acc[1]
    if dtype == DType.F32:
        np.testing.assert_allclose(got.view(np.float32), f32(want), rtol=1e-6, atol=1e-7)
        real = ~np.isnan(f32(want))
        assert np.array_equal(np.signbit(got.view(np.float32))[real], np.signbit(f32(want))[real])
    else:
        assert got.tolist() == want


def test_itof_rounds_to_nearest_even():
    m = machine(sp=i32([[16777217, 16777219, -16777217, I32_MAX]]))
    execute(m, make("unary", dst=SP(1), src1=SP(0), count=1, fn=UnaryFn.ITOF, dtype=DType.I32))
    assert m.sp[1].view(np.float32).tolist() == [16777216.0, 16777220.0, -16777216.0, 2.0**31]


def test_ftoi_rounds_half_even_saturates_and_maps_nan_to_zero():
    x = f32([[2.5, 3.5, -2.5, -0.5], [1e10, -1e10, NAN, np.inf], [2147483520.0, -np.inf, 0.49, 7]])
    m = machine(sp=x)
    execute(m, make("unary", dst=SP(4), src1=SP(0), count=3, fn=UnaryFn.FTOI, dtype=DType.F32,
                    step1=1))
    assert m.sp[4:7].tolist() == [[2, 4, -2, 0], [I32_MAX, I32_MIN, 0, I32_MAX],
                                  [2147483520, I32_MIN, 0, 7]]


def test_unary_step0_repeats_one_source_row():
    m = machine(sp=i32([[1, 2, 3, 4]]))
    execute(m, make("unary", dst=SP(1), src1=SP(0), count=3, fn=UnaryFn.NEG, step1=0))
    assert m.sp[1:4].tolist() == [[-1, -2, -3, -4]] * 3


# BINARY ------------------------------------------------------------------------------------------

A = [7, -7, I32_MAX, I32_MIN]
B = [2, 2, 1, -1]
BINARY_INT = {
    BinaryFn.ADD: [9, -5, I32_MIN, I32_MAX],
    BinaryFn.SUB: [5, -9, I32_MAX - 1, I32_MIN + 1],
    BinaryFn.MUL: [14, -14, I32_MAX, I32_MIN],
    BinaryFn.DIV: [3, -3, I32_MAX, I32_MIN],
    BinaryFn.MAX: [7, 2, I32_MAX, -1],
    BinaryFn.MIN: [2, -7, 1, I32_MIN],
    BinaryFn.CMPLT: [0, 1, 0, 1],
    BinaryFn.CMPEQ: [0, 0, 0, 0],
    BinaryFn.AND: [2, 0, 1, I32_MIN],
    BinaryFn.OR: [7, -5, I32_MAX, -1],
    BinaryFn.XOR: [5, -5, I32_MAX - 1, I32_MAX],
    BinaryFn.SHL: [28, -28, -2, 0],
    BinaryFn.SHR: [1, -2, I32_MAX >> 1, -1],
}


@pytest.mark.parametrize("fn", list(BINARY_INT), ids=lambda f: f.name)
def test_binary_int(fn):
    m = machine(sp=i32([A, B]))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=fn))
    assert m.sp[2].tolist() == BINARY_INT[fn]


def test_int_division_by_zero_and_truncation():
    m = machine(sp=i32([[7, -7, 5, I32_MIN], [0, 2, -2, 0]]))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=BinaryFn.DIV))
    assert m.sp[2].tolist() == [0, -3, -2, 0]


def test_shift_amount_uses_low_five_bits():
    m = machine(sp=i32([[1, 1, -8, -8], [33, 32, 65, 31]]))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=BinaryFn.SHL))
    assert m.sp[2].tolist() == [2, 1, -16, 0]
    execute(m, make("binary", dst=SP(3), src1=SP(0), src2=SP(1), count=1, fn=BinaryFn.SHR))
    assert m.sp[3].tolist() == [0, 1, -4, -1]


BINARY_F32 = {
    BinaryFn.ADD: [3.5, -1.0, NAN, np.inf],
    BinaryFn.SUB: [-0.5, -5.0, NAN, np.inf],
    BinaryFn.MUL: [3.0, -6.0, NAN, np.inf],
    BinaryFn.DIV: [0.75, -1.5, NAN, np.inf],
    BinaryFn.MAX: [2.0, 2.0, NAN, np.inf],
    BinaryFn.MIN: [1.5, -3.0, NAN, 1.0],
    BinaryFn.CMPLT: [1.0, 1.0, 0.0, 0.0],
    BinaryFn.CMPEQ: [0.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("fn", list(BINARY_F32), ids=lambda f: f.name)
def test_binary_f32(fn):
    m = machine(sp=f32([[1.5, -3.0, NAN, np.inf], [2.0, 2.0, 1.0, 1.0]]))
    execute(m, make("binary", dst=SP(2), src1=SP(0), src2=SP(1), count=1, fn=fn,
                    dtype=DType.F32))
    np.testing.assert_array_equal(m.sp[2].view(np.float32), f32(BINARY_F32[fn]))


def test_binary_immediate_and_broadcast_operands():
    m = machine(sp=f32([[1, 2, 3, 4], [10, 20, 30, 40], [5, 5, 5, 5]]))
    execute(m, make("binary", dst=ACC(0), src1=SP(0), count=2, fn=BinaryFn.MUL, dtype=DType.F32,
                    imm_mode=1, imm=f32_bits(0.5), step1=1))
    assert m.acc[0:2].view(np.float32).tolist() == [[0.5, 1, 1.5, 2], [5, 10, 15, 20]]
    execute(m, make("binary", dst=ACC(2), src1=SP(0), src2=SP(2), count=2, fn=BinaryFn.SUB,
                    dtype=DType.F32, step1=1, step2=0))
    assert m.acc[2:4].view(np.float32).tolist() == [[-4, -3, -2, -1], [5, 15, 25, 35]]
    execute(m, make("binary", dst=ACC(4), src1=ACC(4), count=1, fn=BinaryFn.ADD, imm_mode=1,
                    imm=0xFFFFFFFF))
    assert m.acc[4].tolist() == [-1] * 4


# TERNARY -----------------------------------------------------------------------------------------

def test_where_int_and_float():
    m = machine(sp=i32([[0, 1, -5, 0], [1, 2, 3, 4], [10, 20, 30, 40]]))
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.WHERE))
    assert m.sp[3].tolist() == [10, 2, 3, 40]
    m = machine(sp=f32([[0.0, -0.0, NAN, 0.5], [1, 2, 3, 4], [10, 20, 30, 40]]))
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.WHERE, dtype=DType.F32))
    assert m.sp[3].view(np.float32).tolist() == [10, 20, 3, 4]


def test_mulacc_wraps_and_rounds_twice():
    m = machine(sp=i32([[I32_MAX, 3, -2, 0], [2, 3, 5, 9], [2, 1, 1, 1]]))
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.MULACC))
    assert m.sp[3].tolist() == [0, 10, -9, 1]
    a, b, c = np.float32(1 + 2**-12), np.float32(1 + 2**-12), np.float32(-1)
    m = machine(sp=f32([[a] * 4, [b] * 4, [c] * 4]))
    execute(m, make("ternary", dst=SP(3), src1=SP(0), src2=SP(1), src3=SP(2), count=1,
                    fn=TernaryFn.MULACC, dtype=DType.F32))
    assert m.sp[3].view(np.float32)[0] == np.float32(a * b) + c  # not fma(a, b, c)


# REDUCE ------------------------------------------------------------------------------------------

def test_reduce_lanes_int_wraps_and_fills_every_lane():
    m = machine(sp=i32([[I32_MAX, 1, 0, 0], [1, -2, 3, -4]]))
    execute(m, make("reduce", dst=ACC(0), src1=SP(0), count=2, fn=ReduceFn.SUM, axis=Axis.LANES))
    assert m.acc[0:2].tolist() == [[I32_MIN] * 4, [-2] * 4]
    execute(m, make("reduce", dst=ACC(2), src1=SP(0), count=2, fn=ReduceFn.MAX, axis=Axis.LANES))
    assert m.acc[2:4].tolist() == [[I32_MAX] * 4, [3] * 4]
    execute(m, make("reduce", dst=ACC(2), src1=SP(0), count=2, fn=ReduceFn.MIN, axis=Axis.LANES,
                    acc=1))
    assert m.acc[2:4].tolist() == [[0] * 4, [-4] * 4]


def test_reduce_fp32_lanes_is_a_pairwise_tree_and_rows_ascend():
    x = f32([[1e8, 1.0, -1e8, 1.0]])
    m = machine(sp=x)
    execute(m, make("reduce", dst=SP(1), src1=SP(0), count=1, axis=Axis.LANES, dtype=DType.F32))
    assert m.sp[1].view(np.float32).tolist() == [0.0] * 4  # (1e8 + 1) + (-1e8 + 1) = 0
    m = machine(sp=f32(np.array([[1e8], [1.0], [-1e8], [1.0]]).repeat(4, axis=1)))
    execute(m, make("reduce", dst=SP(4), src1=SP(0), count=4, axis=Axis.ROWS, dtype=DType.F32))
    assert m.sp[4].view(np.float32).tolist() == [1.0] * 4  # ((1e8 + 1) - 1e8) + 1


def test_reduce_rows_with_accumulate():
    m = machine(sp=i32([[1, 2, 3, 4], [5, -6, 7, 8], [0, 0, 0, 0]]), acc=i32([[100] * 4]))
    execute(m, make("reduce", dst=ACC(0), src1=SP(0), count=2, axis=Axis.ROWS, acc=1))
    assert m.acc[0].tolist() == [106, 96, 110, 112]
    execute(m, make("reduce", dst=ACC(1), src1=SP(0), count=3, fn=ReduceFn.MAX, axis=Axis.ROWS))
    assert m.acc[1].tolist() == [5, 2, 7, 8]
    m = machine(sp=f32([[1, NAN, 3, 4], [5, 6, 7, 8]]))
    execute(m, make("reduce", dst=SP(2), src1=SP(0), count=2, fn=ReduceFn.MIN, axis=Axis.ROWS,
                    dtype=DType.F32))
    np.testing.assert_array_equal(m.sp[2].view(np.float32), f32([1, NAN, 3, 4]))


# REQUANT ------------------------------------------------------------------------------------------

def requant(x, mult, shift, zp=0, lo=-128, hi=127):
    m = machine(sp=i32([x, mult, shift]))
    execute(m, make("requant", dst=SP(3), src1=SP(0), src2=SP(1), count=1, zp=zp, lo=lo, hi=hi))
    return m.sp[3].tolist()


def test_requant_step2_gives_each_row_its_own_parameter_pair():
    # rows 0..1: x; rows 2..5: (mult, shift) for row 0, then for row 1
    m = machine(sp=i32([[4, 8, -8, 3], [10, 20, 30, 40], [1] * 4, [1] * 4, [3] * 4, [0] * 4]))
    execute(m, make("requant", dst=SP(6), src1=SP(0), src2=SP(2), count=2, lo=-128, hi=127,
                    step1=1, step2=1))
    assert m.sp[6].tolist() == [2, 4, -4, 2]
    assert m.sp[7].tolist() == [30, 60, 90, 120]
    with pytest.raises(FaultSignal, match="src2"):  # the last pair lies past the scratchpad
        execute(m, make("requant", dst=SP(0), src1=SP(0), src2=SP(m.sp.shape[0] - 3), count=2,
                        step2=1))


def test_requant_rounds_half_up_towards_plus_infinity():
    assert requant([5, -5, -3, 3], [1] * 4, [1] * 4) == [3, -2, -1, 2]
    assert requant([6, -6, 7, -7], [1] * 4, [2] * 4) == [2, -1, 2, -2]


def test_requant_shift_zero_multiplier_zero_point_and_saturation():
    assert requant([3, 1000, -1000, 10], [2, 1, 1, -3], [0] * 4, zp=5) == [11, 127, -128, -25]
    assert requant([-3, 3, 50, 0], [1] * 4, [0] * 4, zp=10, lo=10, hi=20) == [10, 13, 20, 10]


def test_requant_shift_uses_low_six_bits_and_64_bit_products():
    x = [I32_MAX, I32_MIN, 1 << 20, I32_MIN]
    assert requant(x, [I32_MAX, I32_MAX, 1 << 20, I32_MIN], [64 + 31, 62, 40 + 128, 63],
                   lo=-256, hi=255) == [255, -1, 1, 1]


def test_requant_in_int32_range_edge():
    # p = (2^31 - 1)^2 >> 31 = 2^31 - 2 (+ rounding) saturates to hi
    assert requant([I32_MAX, 3, -3, 0], [I32_MAX, 1, 1, 0], [31, 1, 1, 0], lo=-256,
                   hi=255) == [255, 2, -1, 0]


# MOVE ---------------------------------------------------------------------------------------

def test_move_copy_with_strides_across_memories():
    m = machine(sp=i32(np.arange(24).reshape(6, 4)))
    execute(m, make("move", dst=ACC(10), src1=SP(0), count=3, fn=MoveFn.COPY, dstride=-2,
                    sstride=2))
    assert m.acc[10].tolist() == [0, 1, 2, 3]
    assert m.acc[8].tolist() == [8, 9, 10, 11]
    assert m.acc[6].tolist() == [16, 17, 18, 19]


def test_move_reads_everything_before_writing():
    m = machine(sp=i32(np.arange(16).reshape(4, 4)))
    execute(m, make("move", dst=SP(1), src1=SP(0), count=3, fn=MoveFn.COPY, dstride=1,
                    sstride=1))
    assert m.sp[:4].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_move_bcast_fill_and_transpose():
    block = np.arange(16).reshape(4, 4)
    m = machine(sp=i32(np.vstack([block, block + 100])))
    execute(m, make("move", dst=ACC(0), src1=SP(1), count=2, fn=MoveFn.BCAST, dstride=1,
                    sstride=4, imm=2))
    assert m.acc[0:2].tolist() == [[6] * 4, [106] * 4]
    execute(m, make("move", dst=ACC(4), count=2, fn=MoveFn.FILL, dstride=3,
                    imm=f32_bits(-1.5)))
    assert m.acc[4].view(np.float32).tolist() == [-1.5] * 4
    assert m.acc[7].view(np.float32).tolist() == [-1.5] * 4
    execute(m, make("move", dst=ACC(16), src1=SP(0), count=2, fn=MoveFn.TRANSPOSE, dstride=4,
                    sstride=4))
    assert np.array_equal(m.acc[16:20], block.T)
    assert np.array_equal(m.acc[20:24], (block + 100).T)


def test_move_repeated_destination_keeps_the_last_item():
    m = machine(sp=i32(np.arange(12).reshape(3, 4)))
    execute(m, make("move", dst=ACC(0), src1=SP(0), count=3, fn=MoveFn.COPY, dstride=0,
                    sstride=1))
    assert m.acc[0].tolist() == [8, 9, 10, 11]


def test_vector_ops_read_all_sources_before_writing():
    m = machine(sp=i32([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]))
    execute(m, make("binary", dst=SP(1), src1=SP(0), count=2, fn=BinaryFn.ADD, imm_mode=1,
                    imm=10, step1=1))
    assert m.sp[:3].tolist() == [[1] * 4, [11] * 4, [12] * 4]


def test_sync_changes_nothing():
    m = machine(sp=i32([[1, 2, 3, 4]]))
    before = (m.sp.copy(), m.acc.copy())
    execute(m, make("sync"))
    assert np.array_equal(m.sp, before[0]) and np.array_equal(m.acc, before[1])
