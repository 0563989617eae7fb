"""The ISA table and its 128-bit encoding: invariants, range checks, decoder rejections."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isa_strategies import instructions

from isa.config import PRESETS
from isa.encoding import Instruction, decode, decode_program, encode, encode_program, make
from isa.errors import EncodingError
from isa.table import (
    BY_MNEMONIC,
    FUNC_DTYPES,
    FUNCTION_DOC,
    HEADER_BITS,
    INSN_BITS,
    INSN_BYTES,
    LAYOUTS,
    NUM_OPCODES,
    OPS,
    TOKEN_FLAG_BITS,
    BinaryFn,
    DType,
    Kind,
    MoveFn,
    Op,
    UnaryFn,
    Unit,
    all_functions,
    describe,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_exactly_twelve_opcodes_numbered_in_order():
    assert NUM_OPCODES == 12 == len(OPS)
    assert [op.opcode for op in OPS] == list(range(12))
    assert len({op.mnemonic for op in OPS}) == 12
    assert BY_MNEMONIC["halt"].opcode == 0 == Op.HALT


def test_instructions_are_128_bits_and_fields_fit():
    assert INSN_BITS == 128 and INSN_BYTES == 16 and HEADER_BITS == 8
    for op in OPS:
        assert op.used_bits <= INSN_BITS, op.mnemonic
        end = HEADER_BITS
        for f, lsb in LAYOUTS[op.opcode]:
            assert lsb == end, (op.mnemonic, f.name)  # packed, no gaps, table order
            end += f.bits
        assert end == op.used_bits


def test_token_flags_sit_in_header_bits_4_to_7():
    assert sorted(TOKEN_FLAG_BITS.values()) == [4, 5, 6, 7]


def test_field_ranges_fit_their_widths():
    for op in OPS:
        for f in op.fields:
            if f.kind is Kind.SINT:
                assert f.lo == -(1 << (f.bits - 1)) and f.hi == (1 << (f.bits - 1)) - 1
            elif f.kind is Kind.ENUM:
                assert f.enum is not None and f.hi < (1 << f.bits)
            elif f.kind is not Kind.LOCAL:
                assert 0 <= f.lo <= f.hi == (1 << f.bits) - 1


def test_every_function_has_a_doc_and_dtypes():
    fns = all_functions()
    assert len(fns) == sum(len(t) for t in FUNC_DTYPES.values()) + len(MoveFn)
    for _, fn, dtypes in fns:
        assert FUNCTION_DOC[fn]
        assert dtypes is None or dtypes
    # IntEnum members of different enums compare equal; the docs must still differ.
    assert FUNCTION_DOC[UnaryFn.NEG] != FUNCTION_DOC[BinaryFn.ADD] != FUNCTION_DOC[MoveFn.COPY]
    assert len(FUNCTION_DOC) == len(fns)


def test_latency_formulas_evaluate_on_every_preset():
    for cfg in PRESETS.values():
        for op in OPS:
            values = {f.name: max(f.lo, 0) if f.kind is not Kind.LOCAL else 0 for f in op.fields}
            cycles = op.cycles(values, cfg)
            assert cycles >= (1 if op.unit is not Unit.DISPATCH else 0), op.mnemonic


@pytest.mark.parametrize("mnemonic, values, cfg, expected", [
    ("load", dict(rows=16, cols=16, fmt=0), "default", 64 + 8),
    ("load", dict(rows=3, cols=5, fmt=2), "tiny", 4 + 15),  # ceil(60 / 4)
    ("store", dict(rows=1, cols=1, fmt=1), "default", 64 + 1),
    ("store", dict(rows=16, cols=16, fmt=2), "default", 64 + 32),
    # MATMUL: n weight rows, the input rows, read + 4 pipeline stages + write
    ("matmul", dict(rows=1), "tiny", 4 + 1 + 5),
    ("matmul", dict(rows=512), "default", 16 + 512 + 5),
    # vector ops: the rows, read + 5 pipeline stages + write
    ("unary", dict(count=7), "tiny", 7 + 6),
    ("binary", dict(count=16), "default", 16 + 6),
    ("ternary", dict(count=1), "large", 1 + 6),
    # REDUCE over lanes: read + a stage per tree level + two for the acc combine + write
    ("reduce", dict(count=4, axis=0), "default", 4 + 4 + 3),
    ("reduce", dict(count=4, axis=1), "default", 4 + 6),  # over rows: the vector pipeline
    ("reduce", dict(count=1, axis=0), "large", 1 + 7 + 3),
    ("requant", dict(count=5), "tiny", 5 + 6),
    ("move", dict(count=2, fn=1), "default", 2 * 16 + 16 + 5),  # a block of drain, the block RAMs
    ("binary", dict(count=3, fn=3, dtype=0), "tiny", 3 * 4 * 32 + 5),  # int32 DIV: iterative,
    ("binary", dict(count=3, fn=3, dtype=0), "large", 3 * 4 * 32 + 5),  # four lanes a divider
    ("binary", dict(count=3, fn=3, dtype=1), "tiny", 3 + 6),  # fp32 DIV: pipelined
    ("move", dict(count=2, fn=3), "default", 2 + 6),  # fill: the vector pipeline
    ("sync", dict(unit=2), "tiny", 1),
])
def test_latency_formulas_by_hand(mnemonic, values, cfg, expected):
    insn = make(mnemonic, **values)
    assert insn.op.cycles(insn.values, PRESETS[cfg]) == expected


def test_describe_lists_every_opcode_with_fields():
    data = describe()
    assert [d["opcode"] for d in data] == list(range(12))
    load = data[Op.LOAD]
    assert load["mnemonic"] == "load" and load["unit"] == "load"
    assert [f["name"] for f in load["fields"]] == ["sram", "dram", "stride", "rows", "cols", "fmt"]
    assert load["fields"][-1]["values"] == ["i8", "u8", "x32"]
    assert "functions" not in load
    unary = {f["name"]: f for f in data[Op.UNARY]["functions"]}
    assert unary["exp2"]["dtypes"] == ["f32"] and unary["neg"]["dtypes"] == ["f32", "i32"]
    assert [f["name"] for f in data[Op.MOVE]["functions"]] == ["copy", "transpose", "bcast", "fill"]


def test_loop_roles_match_loop_deltas():
    loop_deltas = {f.name.removeprefix("d_") for f in BY_MNEMONIC["loop"].fields
                   if f.name.startswith("d_")}
    roles = {f.role for op in OPS for f in op.fields if f.role}
    assert roles == loop_deltas == {"dram", "dst", "src1", "src2", "src3"}


# Encoder range checks ---------------------------------------------------------------------

@pytest.mark.parametrize("mnemonic, values, message", [
    ("load", dict(rows=0), "'rows' = 0 out of range 1..65535"),
    ("load", dict(cols=512), "'cols' = 512 out of range 1..511"),
    ("load", dict(dram=1 << 32), "'dram'"),
    ("load", dict(dram=-1), "'dram'"),
    ("load", dict(fmt=3), "'fmt' = 3 out of range 0..2"),
    ("load", dict(sram=2 << 16), "local address"),
    ("matmul", dict(dst=1 << 16), "'dst'"),
    ("loop", dict(d_dst=1 << 15), "'d_dst' = 32768 out of range -32768..32767"),
    ("loop", dict(body=0), "'body' = 0"),
    ("requant", dict(zp=256), "'zp'"),
    ("binary", dict(imm=-1), "'imm'"),
    ("move", dict(fn=4), "'fn'"),
    ("sync", dict(unit=3), "'unit'"),
    ("unary", dict(fn=11), "'fn' = 11 out of range 0..10"),
])
def test_encoder_rejects_out_of_range_fields(mnemonic, values, message):
    op = BY_MNEMONIC[mnemonic]
    full = {f.name: max(f.lo, 0) if f.kind is not Kind.SINT else 0 for f in op.fields}
    full.update(values)
    with pytest.raises(EncodingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode(Instruction(op, full))


def test_make_rejects_unknown_mnemonic_field_and_flag():
    with pytest.raises(EncodingError, match="unknown mnemonic 'lod'"):
        make("lod")
    with pytest.raises(EncodingError, match="unknown field 'row'"):
        make("load", row=1)
    with pytest.raises(EncodingError, match="unknown token flag 'pop_left'"):
        make("load", flags=("pop_left",))


@pytest.mark.parametrize("mnemonic, fn, dtype", [
    ("unary", UnaryFn.EXP2, DType.I32), ("unary", UnaryFn.NOT, DType.F32),
    ("unary", UnaryFn.ITOF, DType.F32), ("unary", UnaryFn.FTOI, DType.I32),
    ("binary", BinaryFn.SHL, DType.F32), ("binary", BinaryFn.XOR, DType.F32),
])
def test_illegal_function_dtype_pairs(mnemonic, fn, dtype):
    with pytest.raises(EncodingError, match="not defined for dtype"):
        make(mnemonic, fn=int(fn), dtype=int(dtype))


@pytest.mark.parametrize("mnemonic, values, flag", [
    ("load", {}, "pop_prev"), ("load", {}, "push_prev"),
    ("store", {}, "pop_next"), ("store", {}, "push_next"),
    ("sync", {"unit": 0}, "push_prev"), ("sync", {"unit": 2}, "pop_next"),
    ("halt", {}, "pop_prev"), ("loop", {}, "push_next"),
])
def test_illegal_token_flags(mnemonic, values, flag):
    with pytest.raises(EncodingError, match="neighbour|no token flags"):
        make(mnemonic, flags=(flag,), **values)


def test_legal_token_flags_per_unit():
    make("load", flags=("pop_next", "push_next"))
    make("matmul", flags=("pop_prev", "pop_next", "push_prev", "push_next"))
    make("store", flags=("pop_prev", "push_prev"))
    make("sync", unit=1, flags=("pop_prev", "pop_next", "push_prev", "push_next"))


# Decoder rejections -------------------------------------------------------------------------

def _word(insn: Instruction) -> int:
    return int.from_bytes(encode(insn), "little")


@pytest.mark.parametrize("opcode", range(12, 16))
def test_decoder_rejects_illegal_opcodes(opcode):
    with pytest.raises(EncodingError, match=f"illegal opcode {opcode}"):
        decode(opcode.to_bytes(16, "little"))


@pytest.mark.parametrize("op", [op for op in OPS if op.used_bits < INSN_BITS],
                         ids=lambda op: op.mnemonic)
def test_decoder_rejects_reserved_bits(op):
    base = _word(make(op.mnemonic))
    for bit in (op.used_bits, INSN_BITS - 1):
        with pytest.raises(EncodingError, match="reserved bits"):
            decode((base | 1 << bit).to_bytes(16, "little"), pc=3)


def test_decoder_rejects_bad_enum_values_and_minimums():
    load = make("load")
    fmt_lsb = dict((f.name, lsb) for f, lsb in LAYOUTS[Op.LOAD])["fmt"]
    with pytest.raises(EncodingError, match="'fmt' = 3"):
        decode(_word(load) | 3 << fmt_lsb)
    rows_lsb = dict((f.name, lsb) for f, lsb in LAYOUTS[Op.LOAD])["rows"]
    with pytest.raises(EncodingError, match="'rows' = 0"):
        decode(_word(load) & ~(0xFFFF << rows_lsb))
    sync_unit_lsb = LAYOUTS[Op.SYNC][0][1]
    with pytest.raises(EncodingError, match="'unit' = 3"):
        decode(_word(make("sync")) | 3 << sync_unit_lsb)


def test_decoder_rejects_illegal_fn_dtype_and_flags():
    unary = make("unary", fn=int(UnaryFn.NEG), dtype=0)
    fn_lsb = dict((f.name, lsb) for f, lsb in LAYOUTS[Op.UNARY])["fn"]
    with pytest.raises(EncodingError, match="not defined for dtype i32"):
        decode(_word(unary) | int(UnaryFn.SIN) << fn_lsb)
    with pytest.raises(EncodingError, match="at pc 7: .*neighbour"):
        decode(_word(make("load")) | 1 << TOKEN_FLAG_BITS["pop_prev"], pc=7)
    with pytest.raises(EncodingError, match="no token flags"):
        decode(1 << TOKEN_FLAG_BITS["push_next"])  # halt with a flag


def test_decoder_rejects_wrong_length_and_program_remainder():
    with pytest.raises(EncodingError, match="15 bytes"):
        decode(bytes(15))
    with pytest.raises(EncodingError, match="multiple of 16"):
        decode_program(bytes(33))


def test_zero_word_is_halt():
    insn = decode(bytes(16))
    assert insn.mnemonic == "halt" and not insn.flags


def test_signed_fields_encode_twos_complement():
    insn = make("loop", d_dram=-4, d_dst=-1)
    word = _word(insn)
    lsb = dict((f.name, lsb) for f, lsb in LAYOUTS[Op.LOOP])
    assert (word >> lsb["d_dram"]) & 0xFFFFFFFF == 0xFFFFFFFC
    assert (word >> lsb["d_dst"]) & 0xFFFF == 0xFFFF
    assert decode(word) == insn


# Properties --------------------------------------------------------------------------------

@FAST
@given(instructions())
def test_encode_decode_identity(insn):
    data = encode(insn)
    assert len(data) == INSN_BYTES
    assert decode(data) == insn
    assert encode(decode(data)) == data


@settings(FAST, max_examples=80)
@given(st.lists(instructions(), max_size=20))
def test_program_encode_decode_identity(code):
    assert decode_program(encode_program(code)) == code


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, (1 << 128) - 1))
def test_random_words_decode_or_raise(word):
    data = word.to_bytes(16, "little")
    try:
        insn = decode(data)
    except EncodingError:
        return
    assert encode(insn) == data


@FAST
@given(st.sampled_from(OPS), st.data())
def test_random_legal_header_with_random_fields(op, data):
    """Words that start with a legal opcode exercise the field checks, not just the opcode."""
    payload = data.draw(st.integers(0, (1 << (op.used_bits - HEADER_BITS)) - 1))
    flags = data.draw(st.integers(0, 15))
    word = op.opcode | flags << 4 | payload << HEADER_BITS
    try:
        insn = decode(word)
    except EncodingError:
        return
    assert int.from_bytes(encode(insn), "little") == word
