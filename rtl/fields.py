"""Hardware views of the ISA table: field slices, latency formulas and legality checks.

Nothing here repeats a constant of the ISA: field positions come from
`isa.table.LAYOUTS`, enum ranges from the table's enums, and latencies are the
table's own formula text evaluated over Amaranth values (enum-valued fields are
enumerated, so a formula's `if` picks a constant per enum value).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
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
    Axis,
    Fmt,
    Kind,
    MatType,
    MoveFn,
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
SPAN_BITS = 52  # signed: a DRAM address plus its extent, or rows plus a MOVE's strides


@dataclass
class Span:
    """One range an instruction must keep inside its memory, before LOOP offsets.

    With `off` the offset LOOP adds to the field of `role`, the rows (bytes) base + off + lo
    .. base + off + hi - 1 must lie in 0 .. limit - 1; that is `low` (base + lo) >= -off and
    `high` (base + hi - limit) <= -off. Both sides of each compare but `off` come from the
    word alone, so they are computed as code is loaded and dispatch only compares.
    """

    role: str
    dram: bool  # a DRAM range (DRAM_OUT_OF_BOUNDS), else SRAM rows (SRAM_OUT_OF_BOUNDS)
    low: Value
    high: Value
    on: Value  # 0: this range is not used (BINARY's immediate, FILL's source)


def spans(op: OpDef, raw: dict[str, Value], cfg: ChipConfig) -> tuple[list[Span], Value]:
    """The ranges `op` must keep (what `isa.model` checks), and what of its SRAM
    legality needs no range (a DMA's cols <= n): both from the raw word."""
    n = cfg.n
    one = Const(1)

    def rows(name: str, lo: Any, hi: Any, on: Value = one) -> Span:
        field = op.field(name)
        value = raw[name]
        if field.kind is Kind.LOCAL:
            base, limit = value[0:16], Mux(value[16], cfg.acc_rows, cfg.sp_rows)
        else:
            base, limit = value, {"dst": cfg.acc_rows}.get(name, cfg.sp_rows)
        return Span(field.role, False, base + lo, base + hi - limit, on)

    def count_rows(name: str, count: Value, step: Value = one, on: Value = one) -> Span:
        return rows(name, 0, Mux(step, count, 1), on)

    if op.opcode in (Op.LOAD, Op.STORE):
        addr = raw["dram"]
        return ([count_rows("sram", raw["rows"]),
                 Span(op.field("dram").role, True, addr,
                      addr + extent_value(op, raw) - cfg.dram_bytes, one)],
                raw["cols"] <= n)
    if op.opcode == Op.MATMUL:
        return [rows("dst", 0, raw["rows"]), rows("inp", 0, raw["rows"]),
                rows("wgt", 0, n)], one
    if op.opcode == Op.REDUCE:
        return [count_rows("dst", raw["count"], raw["axis"] == Axis.LANES),
                count_rows("src1", raw["count"])], one
    if op.opcode == Op.REQUANT:
        return [count_rows("dst", raw["count"]),
                count_rows("src1", raw["count"], raw["step1"]),
                rows("src2", 0, Mux(raw["step2"], 2 * raw["count"], 2))], one
    if op.opcode == Op.MOVE:
        fn = raw["fn"]
        ext = Mux(fn == MoveFn.TRANSPOSE, n, 1)
        last = raw["count"] - 1

        def items(name: str, stride: Value, on: Value = one) -> Span:
            reach = last * stride
            return rows(name, Mux(reach < 0, reach, 0), Mux(reach > 0, reach, 0) + ext, on)

        return [items("dst", raw["dstride"]),
                items("src1", raw["sstride"], fn != MoveFn.FILL)], one
    if op.opcode in (Op.UNARY, Op.BINARY, Op.TERNARY):
        out = [count_rows("dst", raw["count"])]
        for f in op.fields:
            if f.name.startswith("src"):
                on = ~raw["imm_mode"] if (op.opcode == Op.BINARY and f.name == "src2") else one
                out.append(count_rows(f.name, raw["count"], raw["step" + f.name[3:]], on))
        return out, one
    return [], one


SPAN_SLOTS = max(len(spans(op, field_values(Signal(INSN_BITS), op), ChipConfig())[0])
                 for op in BY_OPCODE.values())
# What the predecoder decides about a word, as the instruction memory keeps it beside it.
PREDECODED = data.StructLayout({
    "latency": LATENCY_BITS, "legal": 1, "sram_ok": 1, "span_on": SPAN_SLOTS,
    "span_low": data.ArrayLayout(signed(SPAN_BITS), SPAN_SLOTS),
    "span_high": data.ArrayLayout(signed(SPAN_BITS), SPAN_SLOTS)})


class Predecoder(wiring.Component):
    """What an instruction word decides on its own, before LOOP offsets apply.

    Its latency (the table's formula), whether it is a legal encoding (enums in range,
    reserved bits clear, a (fn, dtype) the RTL implements, only token flags its unit has
    neighbours for, BCAST's lane below n) and both sides of its range checks but the LOOP
    offset (`spans`). None of these depend on a field LOOP moves, so the core computes them
    as code is loaded; dispatch only compares.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        for op in ops():
            roles = {f.name for f in op.fields if f.role is not None}
            moved = roles & set(compile(op.latency, "<latency>", "eval").co_names)
            assert not moved, f"{op.mnemonic}'s latency reads a field LOOP moves: {moved}"
        super().__init__({"word": In(INSN_BITS), "out": Out(PREDECODED)})

    def elaborate(self, platform):
        from rtl.support import matmul_supported, supported

        m = Module()
        word, out = self.word, self.out
        with m.Switch(opcode_of(word)):
            for op in ops():
                with m.Case(op.opcode):
                    raw = field_values(word, op)
                    legal = reserved_clear(word, op) & enum_in_range(op, raw)
                    legal = legal & fn_dtype_legal(op, raw, supported)
                    if op.unit is Unit.DISPATCH:
                        legal = legal & (word[4:8] == 0)
                    else:
                        m.d.comb += out.latency.eq(latency_value(op, raw, self.cfg))
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
                    if op.opcode == Op.MOVE:  # BCAST names one of the n lanes
                        legal = legal & ((raw["fn"] != MoveFn.BCAST) | (raw["imm"] < self.cfg.n))
                    ranges, sram_ok = spans(op, raw, self.cfg)
                    for i, span in enumerate(ranges):
                        m.d.comb += [out.span_on[i].eq(span.on), out.span_low[i].eq(span.low),
                                     out.span_high[i].eq(span.high)]
                    m.d.comb += [out.legal.eq(legal), out.sram_ok.eq(sram_ok)]
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
