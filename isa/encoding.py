"""Instructions as values, and their exact 128-bit encoding.

`encode` range-checks every field; `decode` rejects illegal opcodes, out-of-range
enum values, illegal function/dtype pairs, impossible token flags and set
reserved bits. Both raise `EncodingError` with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isa.errors import EncodingError
from isa.table import (
    BY_MNEMONIC,
    BY_OPCODE,
    FUNC_DTYPES,
    INSN_BITS,
    INSN_BYTES,
    LAYOUTS,
    NEIGHBOURS,
    TOKEN_FLAG_BITS,
    TOKEN_FLAGS,
    Kind,
    Mem,
    OpDef,
    Unit,
    unit_of,
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: its opcode definition, field values and token flags.

    Local addresses are kept as one integer (bit 16 = memory, bits 0..15 = row);
    `local_mem`/`local_row` split them.
    """

    op: OpDef
    values: dict[str, int] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    @property
    def mnemonic(self) -> str:
        return self.op.mnemonic

    @property
    def unit(self) -> Unit:
        return unit_of(self.op, self.values)

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def __hash__(self) -> int:
        return hash((self.op.opcode, tuple(sorted(self.values.items())), self.flags))

    def encode(self) -> bytes:
        return encode(self)


def make(mnemonic: str, flags: tuple[str, ...] | frozenset[str] = (), **values: int) -> Instruction:
    """Build and validate an instruction; missing fields default to their smallest legal value."""
    try:
        op = BY_MNEMONIC[mnemonic]
    except KeyError:
        raise EncodingError(f"unknown mnemonic {mnemonic!r}") from None
    unknown = set(values) - {f.name for f in op.fields}
    if unknown:
        raise EncodingError(f"{mnemonic}: unknown field {sorted(unknown)[0]!r} "
                            f"(fields: {', '.join(f.name for f in op.fields) or 'none'})")
    full = {f.name: int(values.get(f.name, f.lo if f.kind is not Kind.SINT else 0))
            for f in op.fields}
    insn = Instruction(op, full, frozenset(flags))
    check(insn)
    return insn


def local_addr(mem: Mem | int, row: int) -> int:
    return (int(mem) << 16) | row


def local_mem(value: int) -> Mem:
    return Mem(value >> 16)


def local_row(value: int) -> int:
    return value & 0xFFFF


def check(insn: Instruction) -> None:
    """Raise EncodingError unless every field is in range and the combination is legal."""
    op = insn.op
    name = op.mnemonic
    for f, _ in LAYOUTS[op.opcode]:
        v = insn.values.get(f.name)
        if v is None:
            raise EncodingError(f"{name}: missing field {f.name!r}")
        if f.kind is Kind.LOCAL:
            if not 0 <= v < (2 << 16):
                raise EncodingError(f"{name}: field {f.name!r} local address {v:#x} out of range "
                                    "(memory sp or acc, row 0..65535)")
        elif not f.lo <= v <= f.hi:
            raise EncodingError(f"{name}: field {f.name!r} = {v} out of range {f.lo}..{f.hi}")
    bad = insn.flags - set(TOKEN_FLAGS)
    if bad:
        raise EncodingError(f"{name}: unknown token flag {sorted(bad)[0]!r}")
    unit = unit_of(op, insn.values)
    if insn.flags and unit is Unit.DISPATCH:
        raise EncodingError(f"{name}: runs on the dispatcher and takes no token flags")
    if unit in NEIGHBOURS:
        prev, nxt = NEIGHBOURS[unit]
        for side, neighbour in (("prev", prev), ("next", nxt)):
            if neighbour is None and ({f"pop_{side}", f"push_{side}"} & insn.flags):
                raise EncodingError(f"{name}: the {unit.name.lower()} unit has no {side} "
                                    f"neighbour, so it cannot pop_{side} or push_{side}")
    table = FUNC_DTYPES.get(name)
    if table is not None:
        fn = op.field("fn").enum(insn.values["fn"])  # type: ignore[misc]
        allowed = table[fn]
        dtype = insn.values["dtype"]
        if dtype not in allowed:
            raise EncodingError(f"{name}: function {fn.name.lower()} is not defined for dtype "
                                f"{op.field('dtype').enum(dtype).name.lower()}")  # type: ignore[misc]


def encode(insn: Instruction) -> bytes:
    check(insn)
    word = insn.op.opcode
    for flag_name in insn.flags:
        word |= 1 << TOKEN_FLAG_BITS[flag_name]
    for f, lsb in LAYOUTS[insn.op.opcode]:
        word |= (insn.values[f.name] & ((1 << f.bits) - 1)) << lsb
    return word.to_bytes(INSN_BYTES, "little")


def decode(data: bytes | int, pc: int | None = None) -> Instruction:
    """Decode one 16-byte instruction; `pc` only improves the error message."""
    where = f"at pc {pc}: " if pc is not None else ""
    if isinstance(data, int):
        word = data
    else:
        if len(data) != INSN_BYTES:
            raise EncodingError(f"{where}instruction is {len(data)} bytes, not {INSN_BYTES}")
        word = int.from_bytes(data, "little")
    opcode = word & 0xF
    op = BY_OPCODE.get(opcode)
    if op is None:
        raise EncodingError(f"{where}illegal opcode {opcode}")
    flags = frozenset(n for n, bit in TOKEN_FLAG_BITS.items() if word >> bit & 1)
    values: dict[str, int] = {}
    for f, lsb in LAYOUTS[opcode]:
        raw = (word >> lsb) & ((1 << f.bits) - 1)
        if f.kind is Kind.SINT and raw >> (f.bits - 1):
            raw -= 1 << f.bits
        values[f.name] = raw
    if word >> op.used_bits:
        raise EncodingError(f"{where}{op.mnemonic}: reserved bits {op.used_bits}..{INSN_BITS - 1} "
                            "are not zero")
    insn = Instruction(op, values, flags)
    try:
        check(insn)
    except EncodingError as exc:
        raise EncodingError(f"{where}{exc}") from None
    return insn


def encode_program(code: list[Instruction]) -> bytes:
    return b"".join(encode(i) for i in code)


def decode_program(blob: bytes) -> list[Instruction]:
    if len(blob) % INSN_BYTES:
        raise EncodingError(f"code segment is {len(blob)} bytes, not a multiple of {INSN_BYTES}")
    return [decode(blob[i:i + INSN_BYTES], pc=i // INSN_BYTES)
            for i in range(0, len(blob), INSN_BYTES)]
