"""Hardware views of the ISA table: field slices, latency formulas and legality checks.

Nothing here repeats a constant of the ISA: field positions come from
`isa.table.LAYOUTS`, enum ranges from the table's enums, and latencies are the
table's own formula text evaluated over Amaranth values (enum-valued fields are
enumerated, so a formula's `if` picks a constant per enum value).
"""

from __future__ import annotations

import itertools
from typing import Any

from amaranth.hdl import Const, Module, Mux, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig, is_pow2
from isa.table import (
    BY_OPCODE,
    FUNC_DTYPES,
    HEADER_BITS,
    INSN_BITS,
    LATENCY_NAMES,
    LAYOUTS,
    NEIGHBOURS,
    TOKEN_FLAG_BITS,
    Fmt,
    Kind,
    MatType,
    Op,
    OpDef,
    Unit,
    esize,
)

LATENCY_BITS = 32  # wide enough for any formula on any legal config (rows*cols*4 + latency)


def field_values(word: Value, op: OpDef) -> dict[str, Value]:
    """Every field of `op` sliced out of a 128-bit instruction word, signed where the table says."""
    out: dict[str, Value] = {}
    for f, lsb in LAYOUTS[op.opcode]:
        raw = word[lsb:lsb + f.bits]
        out[f.name] = raw.as_signed() if f.kind is Kind.SINT else raw
    return out


def flag_bit(word: Value, name: str) -> Value:
    return word[TOKEN_FLAG_BITS[name]]


def opcode_of(word: Value) -> Value:
    return word[0:4]


def hw_ceil_div(a: Any, b: Any) -> Any:
    """ceil(a / b) for ints and for Amaranth values divided by a constant."""
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    assert isinstance(b, int), "hardware division needs a constant divisor"
    if is_pow2(b):
        return (a + (b - 1)) >> (b.bit_length() - 1)
    return (a + (b - 1)) // b


_HW_NAMES = {**LATENCY_NAMES, "ceil_div": hw_ceil_div}


def latency_value(op: OpDef, values: dict[str, Value], cfg: ChipConfig) -> Value:
    """The table's latency formula of `op` as a hardware expression over its fields."""
    code = compile(op.latency, f"<latency {op.mnemonic}>", "eval")
    field_names = {f.name for f in op.fields}
    used = [n for n in code.co_names if n in field_names]
    enums = [n for n in used if op.field(n).kind is Kind.ENUM]
    numeric = {n: values[n] for n in used if n not in enums}
    result: Value | None = None
    choices = [list(op.field(n).enum) for n in enums]  # type: ignore[arg-type]
    for combo in itertools.product(*choices):
        env = {**numeric, **dict(zip(enums, combo, strict=True)), "cfg": cfg}
        value = Value.cast(eval(code, _HW_NAMES, env))
        if result is None:
            result = value
        else:
            match = Const(1)
            for name, enum_value in zip(enums, combo, strict=True):
                match = match & (values[name] == int(enum_value))
            result = Mux(match, value, result)
    assert result is not None
    return result.as_unsigned()[:LATENCY_BITS] if len(result) > LATENCY_BITS else result


def enum_in_range(op: OpDef, values: dict[str, Value]) -> Value:
    """1 when every enum field of `op` holds a defined value and every field meets its minimum."""
    ok = Const(1)
    for f, _ in LAYOUTS[op.opcode]:
        if f.kind is Kind.ENUM:
            ok = ok & (values[f.name] <= f.hi)
        elif f.kind is Kind.UINT and f.min is not None and f.min > 0:
            ok = ok & (values[f.name] >= f.min)
    return ok


def fn_dtype_legal(op: OpDef, values: dict[str, Value], supported: Any) -> Value:
    """1 when the (fn, dtype) pair is defined by the ISA and `supported(op, fn, dtype)` holds."""
    table = FUNC_DTYPES.get(op.mnemonic)
    if table is None:
        return Const(1)
    ok = Const(0)
    for fn, dtypes in table.items():
        for dtype in dtypes:
            if supported(op, fn, dtype):
                ok = ok | ((values["fn"] == int(fn)) & (values["dtype"] == int(dtype)))
    return ok


def reserved_clear(word: Value, op: OpDef) -> Value:
    return word[op.used_bits:] == 0 if op.used_bits < len(word) else Const(1)


def ops() -> list[OpDef]:
    return [BY_OPCODE[i] for i in sorted(BY_OPCODE)]


__all__ = ["HEADER_BITS", "LATENCY_BITS", "enum_in_range", "field_values", "flag_bit",
           "fn_dtype_legal", "hw_ceil_div", "latency_value", "opcode_of", "ops",
           "reserved_clear", "signed", "unsigned"]


def extent_value(op: OpDef, values: dict[str, Value]) -> Value:
    """For LOAD/STORE: bytes from the first DRAM address to the end of the last row.

    Depends on raw fields only (LOOP moves addresses, never sizes), so it can be computed
    once when the program is loaded instead of at every dispatch.
    """
    nbytes = Mux(values["fmt"] == int(Fmt.X32), values["cols"] * esize(Fmt.X32),
                 values["cols"] * esize(Fmt.I8))
    return (values["rows"] - 1) * values["stride"] + nbytes


EXTENT_BITS = 48


class Predecoder(wiring.Component):
    """What an instruction word decides on its own, before LOOP offsets apply.

    Its latency (the table's formula), whether it is a legal encoding (enums in range,
    reserved bits clear, a (fn, dtype) the RTL implements, only token flags its unit has
    neighbours for) and, for the DMA ops, its DRAM extent. None of these depend on a
    field LOOP moves, so the core computes them as code is loaded, not at dispatch.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        for op in ops():
            roles = {f.name for f in op.fields if f.role is not None}
            moved = roles & set(compile(op.latency, "<latency>", "eval").co_names)
            assert not moved, f"{op.mnemonic}'s latency reads a field LOOP moves: {moved}"
        super().__init__({"word": In(INSN_BITS), "latency": Out(LATENCY_BITS),
                          "legal": Out(1), "extent": Out(EXTENT_BITS)})

    def elaborate(self, platform):
        from rtl.support import matmul_supported, supported

        m = Module()
        word = self.word
        with m.Switch(opcode_of(word)):
            for op in ops():
                with m.Case(op.opcode):
                    raw = field_values(word, op)
                    legal = reserved_clear(word, op) & enum_in_range(op, raw)
                    legal = legal & fn_dtype_legal(op, raw, supported)
                    if op.unit is Unit.DISPATCH:
                        legal = legal & (word[4:8] == 0)
                    else:
                        m.d.comb += self.latency.eq(latency_value(op, raw, self.cfg))
                        if op.opcode == Op.SYNC:
                            for u in (Unit.LOAD, Unit.COMPUTE, Unit.STORE):
                                legal = legal & ~((raw["unit"] == int(u)) & bad_flags(word, u))
                        else:
                            legal = legal & ~bad_flags(word, op.unit)
                    if op.opcode == Op.MATMUL:
                        ok = Const(0)
                        for mat_type in MatType:
                            if matmul_supported(mat_type):
                                ok = ok | (raw["dtype"] == int(mat_type))
                        legal = legal & ok
                    if op.opcode in (Op.LOAD, Op.STORE):
                        m.d.comb += self.extent.eq(extent_value(op, raw))
                    m.d.comb += self.legal.eq(legal)
        return m


def bad_flags(word: Value, unit: Unit) -> Value:
    """1 when the word sets a token flag that `unit` has no neighbour for."""
    prev, nxt = NEIGHBOURS[unit]
    missing = {"pop_prev": prev, "push_prev": prev, "pop_next": nxt, "push_next": nxt}
    bad = Const(0)
    for name, neighbour in missing.items():
        if neighbour is None:
            bad = bad | flag_bit(word, name)
    return bad
