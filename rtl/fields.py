"""Hardware views of the ISA table: field slices, latency formulas and legality checks.

Nothing here repeats a constant of the ISA: field positions come from
`isa.table.LAYOUTS`, enum ranges from the table's enums, and latencies are the
table's own formula text evaluated over Amaranth values (enum-valued fields are
enumerated, so a formula's `if` picks a constant per enum value).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, ValueCastable, signed, unsigned
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
from rtl.lanes import kept

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


# How an expression builder multiplies two values that both vary (`Predecoder` computes
# such products a few clocks before the rest).
Mul = Callable[[Value, Value], Value]


def times(a: Value, b: Value) -> Value:
    return a * b


class _Operand(ValueCastable):
    """A field in a latency formula: arithmetic as on its value, but a product with another
    field goes to `mul`, so formula text written for integers can be pipelined."""

    def __init__(self, value: Any, mul: Mul):
        self.value, self.mul = Value.cast(value), mul

    def shape(self):
        return self.value.shape()

    def as_value(self) -> Value:
        return self.value

    def _of(self, other: Any) -> Value:
        return other.value if isinstance(other, _Operand) else other

    def __mul__(self, other: Any) -> _Operand:
        if isinstance(other, _Operand):
            return _Operand(self.mul(self.value, other.value), self.mul)
        return _Operand(self.value * other, self.mul)

    __rmul__ = __mul__

    def __add__(self, other: Any) -> _Operand:
        return _Operand(self.value + self._of(other), self.mul)

    __radd__ = __add__

    def __sub__(self, other: Any) -> _Operand:
        return _Operand(self.value - self._of(other), self.mul)

    def __rsub__(self, other: Any) -> _Operand:
        return _Operand(self._of(other) - self.value, self.mul)

    def __rshift__(self, other: Any) -> _Operand:
        return _Operand(self.value >> self._of(other), self.mul)

    def __floordiv__(self, other: Any) -> _Operand:
        return _Operand(self.value // self._of(other), self.mul)


def latency_value(op: OpDef, values: dict[str, Value], cfg: ChipConfig,
                  mul: Mul = times) -> Value:
    """The table's latency formula of `op` as a hardware expression over its fields."""
    code = compile(op.latency, f"<latency {op.mnemonic}>", "eval")
    field_names = {f.name for f in op.fields}
    used = [n for n in code.co_names if n in field_names]
    enums = [n for n in used if op.field(n).kind is Kind.ENUM]
    numeric = {n: _Operand(values[n], mul) for n in used if n not in enums}
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


def row_bytes(values: dict[str, Value]) -> Value:
    """For LOAD/STORE: the DRAM bytes of one row (a DMA's extent is (rows - 1) * stride
    more: its product, which the predecoder adds last as it is ready last)."""
    return Mux(values["fmt"] == int(Fmt.X32), values["cols"] * esize(Fmt.X32),
               values["cols"] * esize(Fmt.I8))


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


def spans(op: OpDef, raw: dict[str, Value], cfg: ChipConfig, mul: Mul = times,
          keep: Callable[[Value], Value] = Value.cast) -> tuple[list[Span], Value]:
    """The ranges `op` must keep (what `isa.model` checks), and what of its SRAM
    legality needs no range (a DMA's cols <= n): both from the raw word.

    A product (`mul`) is added last, to a sum of the word's fields (`keep`: a wire the
    predecoder keeps, so that sum is a carry chain of its own and not merged with the add
    of the product, which comes from a register a pipeline stage later)."""
    n = cfg.n
    one = Const(1)

    def rows(name: str, lo: Any, hi: Any, on: Value = one, moved: Any = 0) -> Span:
        field = op.field(name)
        value = raw[name]
        if field.kind is Kind.LOCAL:
            base, limit = value[0:16], Mux(value[16], cfg.acc_rows, cfg.sp_rows)
        else:
            base, limit = value, {"dst": cfg.acc_rows}.get(name, cfg.sp_rows)
        return Span(field.role, False, base + lo, keep(base + hi - limit) + moved, on)

    def count_rows(name: str, count: Value, step: Value = one, on: Value = one) -> Span:
        return rows(name, 0, Mux(step, count, 1), on)

    if op.opcode in (Op.LOAD, Op.STORE):
        addr = raw["dram"]
        return ([count_rows("sram", raw["rows"]),
                 Span(op.field("dram").role, True, addr,
                      keep(addr + row_bytes(raw) - cfg.dram_bytes)
                      + mul(raw["rows"] - 1, raw["stride"]), one)],
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
            reach = mul(last, stride)  # its sign picks the side it extends: no compare
            return rows(name, Mux(reach < 0, reach, 0), ext, on, Mux(reach < 0, 0, reach))

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
# Field roles, as LOOP's d_X fields name them (each moves the fields of role X).
ROLES = tuple(f.name[2:] for f in BY_OPCODE[Op.LOOP].fields if f.name.startswith("d_"))
GO_READ_BITS = 6  # three read channels' (en, mem): the compute unit's, the widest
# What the predecoder decides about a word, as the instruction memory keeps it beside it.
# The units that take instructions, the bits of `unit` below.
QUEUED_UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)
PREDECODED = data.StructLayout({
    "latency": LATENCY_BITS, "legal": 1, "sram_ok": 1, "span_on": SPAN_SLOTS,
    # The unit whose queue the word goes to, one-hot (none: LOOP, HALT, an unknown opcode),
    # and whether it is LOOP or HALT: what dispatch decides from, straight from flip-flops
    # of the instruction memory, not from a decode of the opcode.
    "unit": len(QUEUED_UNITS), "loop": 1, "halt": 1,
    # A LOOP's: count > 1 and count > 2 (it jumps back at its end; and again after that),
    # body == 1 (its body ends at the next word): the fetch's address follows them.
    "repeats": 1, "repeats2": 1, "body_one": 1,
    # The SRAM reads its unit makes in the cycle it starts the word, (en, mem) a channel
    # (`rtl.compute.go_reads`; STORE's, `rtl.dma.store_go_reads`, in the low bits): the
    # queue entry carries them, and the arbiter's next schedule starts at flip-flops.
    "go_reads": GO_READ_BITS,
    # Each span's role, one-hot, and whether it is a DRAM range: dispatch picks its LOOP
    # offset and its fault without decoding the opcode again.
    "span_role": data.ArrayLayout(len(ROLES), SPAN_SLOTS), "span_dram": SPAN_SLOTS,
    "span_low": data.ArrayLayout(signed(SPAN_BITS), SPAN_SLOTS),
    "span_high": data.ArrayLayout(signed(SPAN_BITS), SPAN_SLOTS)})


def _go_reads(m: Module, op: OpDef, word: Value, n: int) -> Value:
    """The SRAM reads `op`'s unit makes in the cycle it starts `word`."""
    from rtl.compute import go_reads
    from rtl.dma import store_go_reads

    if op.unit is Unit.COMPUTE:
        return go_reads(m, word, n)
    if op.opcode == Op.STORE:
        return store_go_reads(word)
    return Const(0, GO_READ_BITS)  # LOAD reads no row; SYNC starts nothing that reads


class _Products:
    """The variable products of one opcode's predecoding, each split into pieces one DSP
    multiplies (the wider operand cut into CHUNK-bit slices).

    Built twice: `record` sees the first stage's fields and notes each product's pieces;
    `replay` hands the later stage the registered sums, in the order they were asked for.
    """

    CHUNK = 17  # an unsigned slice of 17 bits is an 18-bit signed DSP operand

    def __init__(self):
        self.pieces: list[tuple[Value, Value]] = []  # (narrow operand, slice of the wide one)
        # Each product a*b asked for, and the pieces it sums: (index, bits it is shifted by).
        self.products: list[tuple[Value, list[tuple[int, int]]]] = []
        self.sums: list[Signal] = []
        self._seen: dict[tuple[int, int], int] = {}  # a formula evaluated per enum value
        self._keep: list[Value] = []  # asks again for one product: it is computed once

    def _index(self, a: Value, b: Value) -> tuple[int, bool]:
        key = (id(a), id(b))
        new = key not in self._seen
        if new:
            self._seen[key] = len(self._seen)
            self._keep += [a, b]
        return self._seen[key], new

    def record(self, a: Value, b: Value) -> Value:
        index, new = self._index(a, b)
        a, b = Value.cast(a), Value.cast(b)
        if new:
            narrow, wide = (a, b) if len(a) <= len(b) else (b, a)
            cut = self.CHUNK
            if len(wide) <= cut + wide.shape().signed:
                slices = [wide]
            else:
                slices = [wide[i:i + cut] for i in range(0, len(wide), cut)]
                if wide.shape().signed:
                    slices[-1] = slices[-1].as_signed()
            first = len(self.pieces)
            self.pieces += [(narrow, piece) for piece in slices]
            self.products.append((a * b, [(first + k, k * cut) for k in range(len(slices))]))
        return Signal(self.products[index][0].shape())  # a stand-in: this pass is discarded

    def rewind(self) -> None:
        """After `record`: `replay` meets the same calls again, in the same order."""
        self._seen.clear()

    def replay(self, a: Value, b: Value) -> Value:
        return self.sums[self._index(a, b)[0]]


class Predecoder(wiring.Component):
    """What an instruction word decides on its own, before LOOP offsets apply.

    Its latency (the table's formula), whether it is a legal encoding (enums in range,
    reserved bits clear, a (fn, dtype) the RTL implements, only token flags its unit has
    neighbours for, BCAST's lane below n) and both sides of its range checks but the LOOP
    offset (`spans`). None of these depend on a field LOOP moves, so the core computes them
    as code is loaded; dispatch only compares.

    A pipeline, one word a clock: the word is registered; the operands of its variable
    products (a DMA's rows x stride and rows x cols, MOVE's counts x strides) are chosen
    and registered; each DSP multiplies one slice to a register; the slices are summed to
    a register; everything else is worked out from those and registered beside the word,
    its address and its write enable: DEPTH clocks after it came in. `busy` is high while
    any word is inside.
    """

    DEPTH = 5

    def __init__(self, cfg: ChipConfig, addr_bits: int = 16):
        self.cfg = cfg
        for op in ops():
            roles = {f.name for f in op.fields if f.role is not None}
            moved = roles & set(compile(op.latency, "<latency>", "eval").co_names)
            assert not moved, f"{op.mnemonic}'s latency reads a field LOOP moves: {moved}"
        super().__init__({"en": In(1), "addr": In(addr_bits), "word": In(INSN_BITS),
                          "wr_en": Out(1), "wr_addr": Out(addr_bits), "wr_word": Out(INSN_BITS),
                          "out": Out(PREDECODED), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # Stage k holds the word, its address and its enable k clocks after they came in.
        stages = [Cat(self.word, self.addr, self.en)]
        for k in range(1, self.DEPTH + 1):
            held = Signal(len(stages[0]), name=f"stage{k}")
            m.d.sync += held.eq(stages[-1])
            stages.append(held)
        first, last = stages[1][:INSN_BITS], stages[self.DEPTH - 1][:INSN_BITS]
        out_stage = stages[self.DEPTH]
        m.d.comb += [self.wr_word.eq(out_stage[:INSN_BITS]),
                     self.wr_addr.eq(out_stage[INSN_BITS:-1]), self.wr_en.eq(out_stage[-1]),
                     self.busy.eq(Cat(*(s[-1] for s in stages[1:])).any())]

        products = self._products(first)
        self._multiply(m, first, products)
        decided = {}
        for op in ops():
            kept_sums = itertools.count()
            decided[op.opcode] = [*self._decide(
                op, last, products[op.opcode].replay,
                lambda v, op=op, k=kept_sums: kept(m, v, f"{op.mnemonic}_sum{next(k)}")),
                self.out.go_reads.eq(_go_reads(m, op, last, self.cfg.n))]
        m.d.sync += self.out.eq(0)  # what an opcode does not set (unused span slots)
        with m.Switch(opcode_of(last)):
            for op in ops():
                with m.Case(op.opcode):
                    m.d.sync += decided[op.opcode]
        return m

    def _products(self, word: Value) -> dict[int, _Products]:
        """Each opcode's variable products over `word`'s fields (the first pass)."""
        products = {}
        for op in ops():
            products[op.opcode] = found = _Products()
            self._decide(op, word, found.record)  # only the products it asks for are kept
            found.rewind()
        return products

    def multipliers(self) -> int:
        """DSPs the pipeline takes: one a product slice, shared by the opcodes."""
        self._MustUse__used = True  # asked for its size, never elaborated: no warning
        return max(len(p.pieces) for p in self._products(Signal(INSN_BITS)).values())

    def _multiply(self, m: Module, word: Value, products: dict[int, _Products]) -> None:
        """Three stages: slot operands chosen by opcode, one DSP product per slot, each
        opcode's products summed from their slices."""
        slots = max(len(p.pieces) for p in products.values())
        width = [[0, 0] for _ in range(slots)]
        for found in products.values():
            for s, pair in enumerate(found.pieces):
                for side, operand in enumerate(pair):
                    width[s][side] = max(width[s][side], len(operand) + 1)
        operands = [(Signal(signed(a), name=f"mul{s}_a"), Signal(signed(b), name=f"mul{s}_b"))
                    for s, (a, b) in enumerate(width)]
        with m.Switch(opcode_of(word)):
            for opcode, found in products.items():
                if found.pieces:
                    with m.Case(opcode):
                        for (a, b), (x, y) in zip(operands, found.pieces, strict=False):
                            m.d.sync += [a.eq(x), b.eq(y)]
        piece = [Signal(signed(len(a) + len(b)), name=f"mul{s}_p")
                 for s, (a, b) in enumerate(operands)]
        m.d.sync += [p.eq(a * b) for p, (a, b) in zip(piece, operands, strict=True)]
        for opcode, found in products.items():
            for j, (full, used) in enumerate(found.products):
                total = Signal(full.shape(), name=f"op{opcode}_product{j}")
                m.d.sync += total.eq(sum(piece[i] << shift for i, shift in used))
                found.sums.append(total)

    def _decide(self, op: OpDef, word: Value, mul: Mul,
                keep: Callable[[Value], Value] = Value.cast) -> list[Any]:
        """Latency, legality and spans of `op` from its word: assignments to `out`."""
        from rtl.support import matmul_supported, supported

        out, raw, sets = self.out, field_values(word, op), []
        legal = reserved_clear(word, op) & enum_in_range(op, raw)
        legal = legal & fn_dtype_legal(op, raw, supported)
        if op.unit is Unit.DISPATCH:
            legal = legal & (word[4:8] == 0)
            sets += [out.loop.eq(op.opcode == Op.LOOP), out.halt.eq(op.opcode == Op.HALT)]
            if op.opcode == Op.LOOP:
                sets += [out.repeats.eq(raw["count"] > 1), out.repeats2.eq(raw["count"] > 2),
                         out.body_one.eq(raw["body"] == 1)]
        else:
            unit = [raw["unit"] == int(u) if op.opcode == Op.SYNC else Const(int(u == op.unit))
                    for u in QUEUED_UNITS]
            sets.append(out.unit.eq(Cat(*unit)))
            sets.append(out.latency.eq(latency_value(op, raw, self.cfg, mul)))
            if op.opcode == Op.SYNC:
                for u in (Unit.LOAD, Unit.COMPUTE, Unit.STORE):
                    legal = legal & ~((raw["unit"] == int(u)) & bad_flags(word, u))
            else:
                legal = legal & ~bad_flags(word, op.unit)
        ranges, sram_ok = spans(op, raw, self.cfg, mul, keep)
        for i, span in enumerate(ranges):
            sets += [out.span_on[i].eq(span.on), out.span_low[i].eq(span.low),
                     out.span_high[i].eq(span.high),
                     out.span_role[i].eq(1 << ROLES.index(span.role)),
                     out.span_dram[i].eq(int(span.dram))]
        if op.opcode == Op.MATMUL:
            ok = Const(0)
            for mat_type in MatType:
                if matmul_supported(mat_type):
                    ok = ok | (raw["dtype"] == int(mat_type))
            legal = legal & ok
        if op.opcode == Op.MOVE:  # BCAST names one of the n lanes
            legal = legal & ((raw["fn"] != MoveFn.BCAST) | (raw["imm"] < self.cfg.n))
        return [*sets, out.legal.eq(legal), out.sram_ok.eq(sram_ok)]


def bad_flags(word: Value, unit: Unit) -> Value:
    """1 when the word sets a token flag that `unit` has no neighbour for."""
    prev, nxt = NEIGHBOURS[unit]
    missing = {"pop_prev": prev, "push_prev": prev, "pop_next": nxt, "push_next": nxt}
    bad = Const(0)
    for name, neighbour in missing.items():
        if neighbour is None:
            bad = bad | flag_bit(word, name)
    return bad
