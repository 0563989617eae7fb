"""Assembler and disassembler: exact round trips and located errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isa_strategies import instructions, programs

from isa.asm import (
    assemble,
    assemble_file,
    bits_f32,
    disassemble,
    f32_bits,
    format_instruction,
    format_operand,
)
from isa.config import PRESETS
from isa.container import Program
from isa.encoding import local_addr, make
from isa.errors import AsmError
from isa.table import Mem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def asm_error(source: str) -> AsmError:
    with pytest.raises(AsmError) as info:
        assemble(source, "prog.s")
    return info.value


# Round trips --------------------------------------------------------------------------------

@settings(SLOW_OK, max_examples=150)
@given(programs())
def test_disasm_then_asm_gives_identical_bytes(program):
    blob = program.to_bytes()
    text = disassemble(program)
    again = assemble(text, "dis.s")
    assert again.to_bytes() == blob
    assert disassemble(again) == text


@settings(SLOW_OK, max_examples=300)
@given(instructions())
def test_each_instruction_round_trips_through_text(insn):
    text = format_instruction(insn)
    program = assemble(f".config tiny\n{text}\n")
    assert program.code == [insn]


@settings(SLOW_OK, max_examples=200)
@given(instructions(), st.randoms(use_true_random=False))
def test_positional_operands_in_any_mix(insn, rnd):
    """Positional operands in table order, some given by name instead, flags anywhere."""
    parts = []
    named_from = rnd.randint(0, len(insn.op.fields))
    for i, f in enumerate(insn.op.fields):
        text = format_operand(f, insn.values[f.name])
        parts.append(text if i < named_from else f"{f.name}={text}")
    for flag in sorted(insn.flags):
        parts.insert(rnd.randint(0, len(parts)), flag)
    source = f"{insn.mnemonic.upper() if rnd.random() < 0.2 else insn.mnemonic} {', '.join(parts)}"
    assert assemble(source).code == [insn]


@settings(SLOW_OK, max_examples=100)
@given(st.lists(instructions(), min_size=1, max_size=10))
def test_asm_disasm_asm_from_source(code):
    source = "\n".join(format_instruction(i) for i in code)
    first = assemble(source).to_bytes()
    assert assemble(disassemble(Program.from_bytes(first))).to_bytes() == first


def test_disassembly_without_data_summarises_segments():
    program = assemble(".data 0x10, int8, 1, 2, 3\nhalt\n")
    assert '.bytes 0x10, "010203"' in disassemble(program)
    text = disassemble(program, with_data=False)
    assert "; data segment at 0x10: 3 bytes" in text and ".bytes" not in text


def test_presets_print_by_name_and_custom_configs_as_json():
    assert ".config tiny\n" in disassemble(assemble(".config tiny\nhalt"))
    custom = PRESETS["default"].to_dict() | {"name": "mine", "dram_bw": 64}
    program = assemble(f".config {json.dumps(custom)}\nhalt")
    assert program.config.dram_bw == 64
    assert '"dram_bw": 64' in disassemble(program)


# Syntax -------------------------------------------------------------------------------------

def test_positional_named_constants_labels_and_flags():
    source = """
    .config tiny             ; comment
    .const R = 2 * 2         # another comment
    start: load sp:R, 0x10, 4, R, 4, i8, push_next
    next:
        matmul dst=0, inp=R, wgt=0, rows=R + 1, pop_prev
    loop count=3, body=next - start, d_dst=-R
        binary acc:0, acc:1, sp:2, 4, add, i32, imm_mode=1, imm=-1
        halt
    """
    code = assemble(source).code
    assert [i.mnemonic for i in code] == ["load", "matmul", "loop", "binary", "halt"]
    assert code[0].values["sram"] == local_addr(Mem.SP, 4) and code[0].flags == {"push_next"}
    assert code[1]["rows"] == 5 and code[1].flags == {"pop_prev"}
    assert code[2]["body"] == 1 and code[2]["d_dst"] == -4
    assert code[3]["imm"] == 0xFFFFFFFF and code[3]["dst"] == local_addr(Mem.ACC, 0)


def test_f32_immediates():
    code = assemble("binary acc:0, acc:0, acc:0, 1, mul, f32, imm_mode=1, imm=f32(-1.5)").code
    assert bits_f32(code[0]["imm"]) == -1.5
    assert f32_bits(1e39) == 0x7F800000  # too large for fp32: +inf, not an exception
    assert "; imm = -1.5" in format_instruction(code[0])


def test_symbols_data_and_meta():
    program = assemble("""
    .input  A, addr=0x40, shape=(2, 3), dtype=int8, scale=0.25, zero_point=-3
    .output B, addr=0x80, shape=4, dtype=float32
    .data 0x100, float32, 1.5, -2
    .data 0x200, int32, -1, 0x7fffffff
    .bytes 0x300, "00ff"
    .meta {"source": "a;b#c \\"q\\""}
    halt
    """)
    a, b = program.symbols
    assert (a.name, a.kind, a.addr, a.shape, a.dtype, a.scale, a.zero_point) == \
        ("A", "input", 0x40, (2, 3), "int8", 0.25, -3)
    assert (b.kind, b.shape, b.scale) == ("output", (4,), None)
    assert program.segments[0].data == b"\x00\x00\xc0?\x00\x00\x00\xc0"
    assert program.segments[1].data == bytes.fromhex("ffffffffffffff7f")
    assert program.meta == {"source": 'a;b#c "q"'}


def test_cli_config_must_match_program_config():
    assert assemble("halt", config=PRESETS["tiny"]).config == PRESETS["tiny"]
    err = asm_error_with_config(".config default\nhalt\n")
    assert err.line == 1 and "differs from --config (tiny)" in str(err)


def asm_error_with_config(source: str) -> AsmError:
    with pytest.raises(AsmError) as info:
        assemble(source, "prog.s", config=PRESETS["tiny"])
    return info.value


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.s")), ids=lambda p: p.name)
def test_every_example_assembles_and_round_trips(path):
    program = assemble_file(path)
    assert program.code and program.code[-1].mnemonic == "halt"
    blob = program.to_bytes()
    assert assemble(disassemble(program)).to_bytes() == blob


def test_there_are_examples():
    assert len(list(EXAMPLES.glob("*.s"))) >= 3


# Errors: file, line and column ---------------------------------------------------------------

@pytest.mark.parametrize("source, line, col, message", [
    ("halt\n    lod sp:0\n", 2, 5, "unknown mnemonic 'lod'"),
    ("load sp:0, 0x0, 16, 4, 4, i9", 1, 27, "field 'fmt': unknown value 'i9'"),
    ("load sp:0, 0x0, 16, 0, 4, i8", 1, 21, "field 'rows' = 0 out of range 1..65535"),
    ("load sp:0, 1 << 32, 16, 1, 4, i8", 1, 12, "field 'dram' = 4294967296 out of range"),
    ("load sp:70000, 0, 16, 1, 4, i8", 1, 6, "row 70000 out of range"),
    ("load sram=0, rows=1, cols=1", 1, 11, "expected a local address sp:ROW or acc:ROW"),
    ("matmul dst=FOO, rows=1", 1, 12, "undefined name 'FOO'"),
    ("  a: halt\nb: halt\n   a: halt\n", 3, 4, "label 'a' defined twice"),
    ("halt\n.bogus 1\n", 2, 1, "unknown directive '.bogus'"),
    ("matmul rows=1, rowz=2", 1, 16, "matmul has no field 'rowz'"),
    ("matmul rows=1, rows=2", 1, 16, "field 'rows' given twice"),
    ("matmul 0, 0, 0, 1, 0, i8, 7", 1, 27, "matmul takes 6 operands"),
    ("load sp:0, 0", 1, 1, "load: missing field 'rows'"),
    ("sync unit=load, pop_prev", 1, 1, "the load unit has no prev neighbour"),
    ("unary acc:0, acc:0, 1, exp2, i32", 1, 1, "function exp2 is not defined for dtype i32"),
    ("binary acc:0, acc:0, acc:0, 1, add, i32, imm=1.5", 1, 46, "expected an integer"),
    (".const X = 1\n.const X = 2\n", 2, 8, "name 'X' is already defined"),
    (".const = 1", 1, 8, "expected .const NAME = EXPRESSION"),
    (".config huge", 1, 9, "unknown config preset 'huge'"),
    (".config tiny\n.config tiny", 2, 1, ".config given twice"),
    ('.config {"n": 3}', 1, 9, "n must be a power of two"),
    (".config {bad", 1, 10, "invalid JSON"),
    (".data 0x0, int8, 300", 1, 18, "value 300 does not fit int8"),
    (".data 0x0, int9, 1", 1, 12, "unknown dtype 'int9'"),
    (".data -4, int8, 1", 1, 7, "expected a DRAM byte address"),
    (".data 0x0, float32, (1, 2)", 1, 21, "is not a number"),
    (".bytes 0x0, \"0g\"", 1, 13, "invalid hex string"),
    (".input A, addr=0, shape=(2, -1), dtype=int8", 1, 8, "shape must be a tuple"),
    (".input A, addr=0, dtype=int8", 1, 8, "missing shape="),
    (".output B, adr=0", 1, 12, "expected addr=, shape=, dtype="),
    (".meta [1]", 1, 7, ".meta takes a JSON object"),
    ("matmul rows=1 << 100000", 1, 13, "shift amount 100000 out of range"),
    ("matmul rows=~(1, 2)", 1, 13, "bad operand"),
    ("matmul rows=2 ** 3", 1, 13, "unsupported operator"),
    ("matmul rows=foo(1)", 1, 13, "unsupported expression"),
    ("matmul rows=1 // 0", 1, 13, "bad expression"),
])
def test_errors_are_located(source, line, col, message):
    err = asm_error(source)
    assert (err.file, err.line, err.col) == ("prog.s", line, col), str(err)
    assert message in err.bare
    assert str(err).startswith(f"prog.s:{line}:{col}: ")


def test_program_level_errors_name_the_file():
    err = asm_error(".data 0x0, int8, 1, 2\n.data 0x1, int8, 3\nhalt")
    assert str(err).startswith("prog.s:") and "overlap" in str(err)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(AsmError, match="missing.s:0:0: file not found"):
        assemble_file(tmp_path / "missing.s")
    binary = tmp_path / "bin.s"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(binary)
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(tmp_path)


# Robustness: garbage in, AsmError out ---------------------------------------------------------

TOKENS = ["load", "matmul", "halt", "loop", "binary", "sp:", "acc:", "0x", "1", "-", "(", ")",
          ",", "=", ":", ";", "#", '"', "\\", ".const", ".data", ".input", ".config", ".meta",
          ".bytes", "{", "}", "f32(", "push_next", "rows", "int8", "tiny", " ", "\n", "X", "1e9",
          "<<", "shape=(", "addr=", "dtype=", "[", "]", "'", "a:", "~", "*", "//", "%", "1.5"]


@settings(SLOW_OK, max_examples=400)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_soup_never_crashes(tokens):
    try:
        assemble("".join(tokens), "soup.s")
    except AsmError:
        pass


@settings(SLOW_OK, max_examples=200)
@given(st.data())
def test_mutated_examples_never_crash(data):
    path = data.draw(st.sampled_from(sorted(EXAMPLES.glob("*.s"))))
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(text)))
        text = text[:pos] + data.draw(st.sampled_from(TOKENS + [""])) + text[pos + 1:]
    try:
        assemble(text, path.name)
    except AsmError:
        pass


def test_make_and_format_agree_on_defaults():
    insn = make("move", dst=local_addr(Mem.ACC, 3), fn=3, imm=f32_bits(0.5))
    assert format_instruction(insn).startswith("move    dst=acc:3, src1=sp:0, count=1, fn=fill")
