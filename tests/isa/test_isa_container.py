"""The .dzn container: round trips, and every corruption is one ContainerError."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isa_strategies import programs

from isa.config import PRESETS
from isa.container import MAGIC, VERSION, Program, Segment, Symbol, write_atomic
from isa.encoding import make
from isa.errors import ContainerError

TINY = PRESETS["tiny"]


def small_program() -> Program:
    code = [make("load", sram=0, dram=0, stride=4, rows=4, cols=4, flags=("push_next",)),
            make("matmul", rows=4, flags=("pop_prev",)), make("halt")]
    return Program(TINY, code, [Segment(0x100, bytes(range(16)))],
                   [Symbol("A", "input", 0, (4, 4), "int8"),
                    Symbol("C", "output", 0x200, (4, 4), "int32", scale=0.5, zero_point=3)],
                   {"source": "test"})


def sections_blob(sections: list[tuple[bytes, bytes]], major: int = VERSION[0],
                  minor: int = VERSION[1], magic: bytes = MAGIC) -> bytes:
    """Build a container by hand, with correct CRCs, so that the checks after them are hit."""
    out = [struct.pack("<4sHHI", magic, major, minor, len(sections))]
    for tag, payload in sections:
        out += [struct.pack("<4sQI", tag, len(payload), zlib.crc32(payload)), payload]
    return b"".join(out)


def good_sections(**replace: bytes) -> list[tuple[bytes, bytes]]:
    program = small_program()
    base = {
        b"CONF": json.dumps(TINY.to_dict()).encode(),
        b"CODE": b"".join(i.encode() for i in program.code),
        b"SYMS": json.dumps([s.to_dict() for s in program.symbols]).encode(),
        b"META": b"{}",
    }
    base.update({k.encode(): v for k, v in replace.items()})
    return list(base.items())


def test_round_trip_and_save_load(tmp_path):
    program = small_program()
    blob = program.to_bytes()
    assert blob[:4] == MAGIC
    again = Program.from_bytes(blob)
    assert again == program and again.to_bytes() == blob
    path = tmp_path / "p.dzn"
    program.save(path)
    assert Program.load(path) == program
    assert [p.name for p in tmp_path.iterdir()] == ["p.dzn"]  # no temporary left behind


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_round_trip(program):
    assert Program.from_bytes(program.to_bytes()) == program


def test_every_truncation_is_a_container_error():
    blob = small_program().to_bytes()
    for length in range(len(blob)):
        with pytest.raises(ContainerError):
            Program.from_bytes(blob[:length])


def test_every_flipped_byte_is_caught():
    blob = small_program().to_bytes()
    minor_bytes = {6, 7}  # a newer minor version of the same format still loads
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        if pos in minor_bytes:
            assert Program.from_bytes(bytes(bad)) == small_program()
            continue
        with pytest.raises(ContainerError):
            Program.from_bytes(bytes(bad))


def test_crc_failure_names_the_section():
    blob = bytearray(small_program().to_bytes())
    blob[-3] ^= 1  # inside META, the last section
    with pytest.raises(ContainerError, match="section 'META' fails its CRC-32 check"):
        Program.from_bytes(bytes(blob), source="x.dzn")


def test_wrong_magic_and_versions():
    with pytest.raises(ContainerError, match="not a Dozen program"):
        Program.from_bytes(sections_blob(good_sections(), magic=b"ELF\x7f"))
    with pytest.raises(ContainerError, match="format version 2.0 is not supported"):
        Program.from_bytes(sections_blob(good_sections(), major=2, minor=0))
    with pytest.raises(ContainerError, match="format version 0.3"):
        Program.from_bytes(sections_blob(good_sections(), major=0, minor=3))
    assert Program.from_bytes(sections_blob(good_sections(), minor=9)).code


def test_trailing_bytes_and_section_structure():
    blob = sections_blob(good_sections())
    with pytest.raises(ContainerError, match="2 unexpected bytes"):
        Program.from_bytes(blob + b"\0\0")
    with pytest.raises(ContainerError, match="expected one CODE section, found 0"):
        Program.from_bytes(sections_blob([s for s in good_sections() if s[0] != b"CODE"]))
    with pytest.raises(ContainerError, match="expected one META section, found 2"):
        Program.from_bytes(sections_blob(good_sections() + [(b"META", b"{}")]))
    with pytest.raises(ContainerError, match="unknown section"):
        Program.from_bytes(sections_blob(good_sections() + [(b"XTRA", b"")]))


@pytest.mark.parametrize("section, payload, message", [
    ("CONF", b"{not json", "CONF section is not valid JSON"),
    ("CONF", b'{"n": 3}', "embedded chip config is invalid: .*power of two"),
    ("CONF", b'{"warp": 1}', "embedded chip config is invalid: unknown config key"),
    ("CONF", b"[1]", "embedded chip config is invalid"),
    ("CODE", bytes(17), "code segment: .*not a multiple of 16"),
    ("CODE", (12).to_bytes(16, "little"), "code segment: at pc 0: illegal opcode 12"),
    ("SYMS", b"\xff", "SYMS section is not valid JSON"),
    ("SYMS", b'[{"name": "A"}]', "corrupt symbol table entry"),
    ("SYMS", b'[{"name": "A", "kind": "input", "addr": 0, "shape": 5, "dtype": "int8"}]',
     "corrupt symbol table entry"),
    ("SYMS", b'[{"name": "A", "kind": "inout", "addr": 0, "shape": [1], "dtype": "int8"}]',
     "kind must be input or output"),
    ("SYMS", b'[{"name": "A", "kind": "input", "addr": 0, "shape": [1], "dtype": "int4"}]',
     "unknown dtype 'int4'"),
    ("SYMS", b'[{"name": "A", "kind": "input", "addr": 1048575, "shape": [2], '
             b'"dtype": "int8"}]', "symbol 'A' at 0xfffff \\(2 bytes\\) lies outside DRAM"),
    ("SYMS", b'[{"name": "A", "kind": "input", "addr": 0, "shape": [1], "dtype": "int8"}, '
             b'{"name": "A", "kind": "output", "addr": 0, "shape": [1], "dtype": "int8"}]',
     "symbol 'A' is defined twice"),
    ("META", b"[]", "META is not a JSON object"),
])
def test_corrupt_sections_with_valid_crc(section, payload, message):
    with pytest.raises(ContainerError, match=message):
        Program.from_bytes(sections_blob(good_sections(**{section: payload})))


def test_data_segments_checked():
    def with_data(*segments: tuple[int, bytes]) -> bytes:
        data = [(b"DATA", struct.pack("<Q", addr) + payload) for addr, payload in segments]
        return sections_blob(good_sections() + data)

    with pytest.raises(ContainerError, match="overlap at DRAM address 0x104"):
        Program.from_bytes(with_data((0x100, bytes(8)), (0x104, bytes(8))))
    with pytest.raises(ContainerError, match="lies outside DRAM"):
        Program.from_bytes(with_data((TINY.dram_bytes - 2, bytes(4))))
    with pytest.raises(ContainerError, match="DATA section shorter than its address"):
        Program.from_bytes(sections_blob(good_sections() + [(b"DATA", b"\0\0")]))
    ok = Program.from_bytes(with_data((0x100, bytes(4)), (0x104, bytes(4))))
    assert [s.addr for s in ok.segments] == [0x100, 0x104]


def test_program_validate_refuses_to_write_bad_programs():
    program = small_program()
    program.symbols.append(Symbol("B", "output", TINY.dram_bytes, (1,), "int8"))
    with pytest.raises(ContainerError, match="symbol 'B'"):
        program.to_bytes()
    program = small_program()
    program.segments.append(Segment(0x108, b"xx"))
    with pytest.raises(ContainerError, match="overlap"):
        program.to_bytes()


def test_symbol_lookup():
    program = small_program()
    assert program.symbol("C").nbytes == 64
    assert [s.name for s in program.inputs] == ["A"] and [s.name for s in program.outputs] == ["C"]
    with pytest.raises(ContainerError, match="no symbol named 'X' \\(symbols: A, C\\)"):
        program.symbol("X")


def test_load_errors(tmp_path):
    with pytest.raises(ContainerError, match="file not found"):
        Program.load(tmp_path / "none.dzn")
    with pytest.raises(ContainerError, match="is a directory"):
        Program.load(tmp_path)
    text = tmp_path / "prog.s"
    text.write_text("halt\n")
    with pytest.raises(ContainerError, match="prog.s: not a Dozen program"):
        Program.load(text)


def test_write_atomic_into_missing_directory(tmp_path):
    with pytest.raises(ContainerError, match="does not exist"):
        write_atomic(tmp_path / "no" / "x.dzn", b"data")


def test_write_atomic_onto_a_directory_leaves_nothing_behind(tmp_path):
    (tmp_path / "out.dzn").mkdir()
    with pytest.raises(ContainerError, match="cannot write"):
        write_atomic(tmp_path / "out.dzn", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["out.dzn"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(blob):
    try:
        Program.from_bytes(MAGIC + blob)
    except ContainerError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["CONF", "CODE", "SYMS", "META"]), st.data())
def test_mutated_payloads_with_fixed_crc_never_crash(section, data):
    """Past the CRC, a payload can still be anything: every layer must reject it cleanly."""
    payload = dict(good_sections())[section.encode()]
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        if not mutated:
            break
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    blob = sections_blob(good_sections(**{section: bytes(mutated)}))
    try:
        Program.from_bytes(blob)
    except ContainerError:
        pass
