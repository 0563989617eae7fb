"""The Dozen ISA as one table: opcodes, fields, functions, semantics and latency formulas.

Everything else reads this module: the encoder and decoder, the assembler, the
simulator, the RTL decoder, the compiler and the generated `isa/SPEC.md`.

Every instruction is 128 bits. Bits 0..3 hold the opcode, bits 4..7 the four
dependency-token flags; each opcode's fields follow, packed from bit 8 upwards in
table order. Bits above an opcode's last field are reserved and must be zero.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from isa.config import ChipConfig, ceil_div

INSN_BITS = 128
INSN_BYTES = INSN_BITS // 8
OPCODE_BITS = 4
HEADER_BITS = 8  # opcode + four token flags
LOOP_MAX_DEPTH = 4  # nested LOOPs the dispatcher tracks


# Enumerations used as field values ---------------------------------------------------

class Unit(enum.IntEnum):
    """Who executes an instruction. The dispatcher itself runs LOOP and HALT."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2
    DISPATCH = 3


class Mem(enum.IntEnum):
    """On-chip memory named by a local address."""

    SP = 0  # scratchpad: inputs and weights for the matrix array, any vector data
    ACC = 1  # accumulator: matrix array results, any vector data


class Fmt(enum.IntEnum):
    """DRAM element format of a DMA transfer (LOAD and STORE)."""

    I8 = 0  # 1 byte; LOAD sign-extends into the 32-bit lane, STORE writes the low byte
    U8 = 1  # 1 byte; LOAD zero-extends, STORE writes the low byte
    X32 = 2  # 4 bytes, little-endian, copied bit for bit (int32 or fp32)


class DType(enum.IntEnum):
    """How the vector unit reads its 32-bit lanes."""

    I32 = 0
    F32 = 1


class MatType(enum.IntEnum):
    """Matrix array mode: int8 operands into int32 sums, or fp32 into fp32 sums."""

    I8 = 0
    F32 = 1


class UnaryFn(enum.IntEnum):
    NEG = 0
    ABS = 1
    RELU = 2
    NOT = 3
    EXP2 = 4
    LOG2 = 5
    SQRT = 6
    RECIP = 7
    SIN = 8
    ITOF = 9
    FTOI = 10


class BinaryFn(enum.IntEnum):
    ADD = 0
    SUB = 1
    MUL = 2
    DIV = 3
    MAX = 4
    MIN = 5
    CMPLT = 6
    CMPEQ = 7
    AND = 8
    OR = 9
    XOR = 10
    SHL = 11
    SHR = 12


class TernaryFn(enum.IntEnum):
    WHERE = 0
    MULACC = 1


class ReduceFn(enum.IntEnum):
    SUM = 0
    MAX = 1
    MIN = 2


class Axis(enum.IntEnum):
    LANES = 0  # each row reduced across its n lanes; the result fills every lane of a dst row
    ROWS = 1  # `count` rows reduced lane by lane into one dst row


class MoveFn(enum.IntEnum):
    COPY = 0
    TRANSPOSE = 1
    BCAST = 2
    FILL = 3


class SyncUnit(enum.IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


class Fault(enum.IntEnum):
    """Fault causes, shared by the simulator and the RTL's fault register."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1
    DRAM_OUT_OF_BOUNDS = 2
    SRAM_OUT_OF_BOUNDS = 3
    TOKEN_OVERFLOW = 4
    PC_OUT_OF_RANGE = 5
    LOOP_NESTING = 6
    DEADLOCK = 7
    CYCLE_LIMIT = 8


FAULT_DOC = {
    Fault.ILLEGAL_INSTRUCTION: "opcode 12..15, reserved bits set, an enum value out of its range, "
                               "a function not defined for the dtype, a token flag the unit "
                               "has no neighbour for, or a MOVE bcast lane (imm) >= n",
    Fault.DRAM_OUT_OF_BOUNDS: "a DMA touches a byte at or beyond `dram_bytes`",
    Fault.SRAM_OUT_OF_BOUNDS: "an instruction touches a row at or beyond the memory's row count "
                              "(or below 0 after LOOP offsets), or a cols > n",
    Fault.TOKEN_OVERFLOW: "a push would raise a token channel above `token_depth`",
    Fault.PC_OUT_OF_RANGE: "the dispatcher fetches past the last instruction (no HALT)",
    Fault.LOOP_NESTING: "a LOOP nested deeper than 4, or a loop body that runs past the end of "
                        "the enclosing body or of the program",
    Fault.DEADLOCK: "every unit waits for a token that no instruction can push (simulator only; "
                    "the RTL simply never finishes)",
    Fault.CYCLE_LIMIT: "the program runs past the simulator's cycle limit (simulator only)",
}

# Which dtypes each function accepts; anything else is an illegal instruction.
_BOTH = frozenset({DType.I32, DType.F32})
_INT = frozenset({DType.I32})
_FLT = frozenset({DType.F32})
UNARY_DTYPES = {UnaryFn.NEG: _BOTH, UnaryFn.ABS: _BOTH, UnaryFn.RELU: _BOTH, UnaryFn.NOT: _INT,
                UnaryFn.EXP2: _FLT, UnaryFn.LOG2: _FLT, UnaryFn.SQRT: _FLT, UnaryFn.RECIP: _FLT,
                UnaryFn.SIN: _FLT, UnaryFn.ITOF: _INT, UnaryFn.FTOI: _FLT}
BINARY_DTYPES = {fn: (_INT if fn in (BinaryFn.AND, BinaryFn.OR, BinaryFn.XOR, BinaryFn.SHL,
                                    BinaryFn.SHR) else _BOTH) for fn in BinaryFn}
TERNARY_DTYPES = {fn: _BOTH for fn in TernaryFn}
REDUCE_DTYPES = {fn: _BOTH for fn in ReduceFn}


# Fields --------------------------------------------------------------------------------

class Kind(enum.Enum):
    UINT = "uint"
    SINT = "sint"
    ENUM = "enum"
    LOCAL = "local"  # a local address: bit 16 selects the memory (Mem), bits 0..15 the row
    FLAG = "flag"


LOCAL_BITS = 17
ROW_BITS = 16


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    kind: Kind
    doc: str
    enum: type[enum.IntEnum] | None = None
    min: int | None = None  # smallest legal value, when tighter than the field allows
    role: str | None = None  # which LOOP offset moves this field: dram, dst, src1, src2, src3

    @property
    def lo(self) -> int:
        if self.min is not None:
            return self.min
        return -(1 << (self.bits - 1)) if self.kind is Kind.SINT else 0

    @property
    def hi(self) -> int:
        if self.kind is Kind.SINT:
            return (1 << (self.bits - 1)) - 1
        if self.kind is Kind.ENUM:
            assert self.enum is not None
            return max(self.enum)
        return (1 << self.bits) - 1


def local(name: str, doc: str, role: str) -> Field:
    return Field(name, LOCAL_BITS, Kind.LOCAL, doc, role=role)


def uint(name: str, bits: int, doc: str, min: int | None = None, role: str | None = None) -> Field:
    return Field(name, bits, Kind.UINT, doc, min=min, role=role)


def sint(name: str, bits: int, doc: str) -> Field:
    return Field(name, bits, Kind.SINT, doc)


def choice(name: str, bits: int, enum_type: type[enum.IntEnum], doc: str) -> Field:
    return Field(name, bits, Kind.ENUM, doc, enum=enum_type)


def flag(name: str, doc: str) -> Field:
    return Field(name, 1, Kind.FLAG, doc)


# The four token flags sit in the header of every instruction.
TOKEN_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
# A unit's neighbours in the pipeline load -> compute -> store.
NEIGHBOURS = {Unit.LOAD: (None, Unit.COMPUTE), Unit.COMPUTE: (Unit.LOAD, Unit.STORE),
              Unit.STORE: (Unit.COMPUTE, None)}


# Opcodes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpDef:
    opcode: int
    mnemonic: str
    unit: Unit  # SYNC names its unit in a field; the table says COMPUTE as its default
    fields: tuple[Field, ...]
    summary: str
    semantics: str
    latency: str  # a Python expression over the fields, `cfg` and the helpers below
    _latency_code: Any = field(default=None, compare=False, repr=False)

    @property
    def used_bits(self) -> int:
        return HEADER_BITS + sum(f.bits for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def cycles(self, values: dict[str, int], cfg: ChipConfig) -> int:
        """This instruction's latency on `cfg`: the table's formula, evaluated."""
        code = self._latency_code
        if code is None:
            code = compile(self.latency, f"<latency {self.mnemonic}>", "eval")
            object.__setattr__(self, "_latency_code", code)
        return int(eval(code, LATENCY_NAMES, {**values, "cfg": cfg}))


def esize(fmt: int) -> int:
    """Bytes per element in DRAM for a DMA format."""
    return 4 if fmt == Fmt.X32 else 1


LATENCY_NAMES: dict[str, Any] = {"__builtins__": {}, "ceil_div": ceil_div, "esize": esize,
                                 "min": min,
                                 "Axis": Axis, "MoveFn": MoveFn, "BinaryFn": BinaryFn,
                                 "DType": DType, "log2": math.log2}

_DMA_FIELDS = (
    local("sram", "first SRAM row of the transfer", role="dst"),
    uint("dram", 32, "DRAM byte address of the first element", role="dram"),
    uint("stride", 24, "bytes between the starts of consecutive DRAM rows"),
    uint("rows", 16, "rows to transfer", min=1),
    uint("cols", 9, "elements per row, 1..n", min=1),
    choice("fmt", 2, Fmt, "DRAM element format"),
)
_DMA_LATENCY = "cfg.dram_latency + ceil_div(rows * cols * esize(fmt), cfg.dram_bw)"
# The compute unit's pipelines: a row is read in one clock, arrives the next, passes P register
# stages and is written in the clock after, so `count` rows take count + P + 1 clocks. The
# stages are what 100 MHz on an ECP5 FPGA needs (rtl/README.md, Timing).
VECTOR_STAGES = 5  # operands, 18x18 products, 64-bit product, REQUANT shift window, clamp
MATMUL_STAGES = 4  # operands, int8 products, the adder tree and the old sum in two stages
_VPIPE = f"{VECTOR_STAGES + 1}"
# int32 DIV runs on iterative dividers (one quotient bit per clock), not a pipeline, each
# shared by DIV_LANES lanes in turn, so a row takes min(n, DIV_LANES) * DIV_STEPS clocks; + 5
# for the read, the operands, one lane's magnitudes, the sign and the write. Division is
# rare in inference graphs; a divider a lane took 7% of an ECP5-85F on the default chip.
DIV_STEPS = 32
DIV_LANES = 4
_BINARY_LATENCY = (f"count * min(cfg.n, {DIV_LANES}) * {DIV_STEPS} + 5 "
                   f"if fn == BinaryFn.DIV and dtype == DType.I32 "
                   f"else count + {_VPIPE}")
# TRANSPOSE streams a row in and a transposed row out per clock, but a block's first output
# row needs its last input row: one block (n clocks) of drain after count*n reads.
# + 5: the read, a register, the transposer's block RAMs (written, then read), a register
# after them, and the write.
_MOVE_LATENCY = (f"count * cfg.n + cfg.n + 5 if fn == MoveFn.TRANSPOSE "
                 f"else count + {_VPIPE}")


def _vec(*fields: Field) -> tuple[Field, ...]:
    return fields


OPS: tuple[OpDef, ...] = (
    OpDef(0, "halt", Unit.DISPATCH, (),
          "Stop fetching; the program ends when every unit has drained.",
          "The dispatcher stops fetching. The program's cycle count is the cycle at which the "
          "last unit finishes its last instruction (at least the HALT's dispatch cycle + 1). "
          "Opcode 0, so zero-filled memory halts.",
          "0"),
    OpDef(1, "load", Unit.LOAD, _DMA_FIELDS,
          "DMA a 2-D tile from DRAM into SRAM rows.",
          "For r in 0..rows-1 and c in 0..cols-1: lane c of SRAM row `sram.row + r` = element c "
          "of the DRAM row starting at `dram + r*stride` (elements `esize(fmt)` bytes apart). "
          "i8 sign-extends, u8 zero-extends, x32 copies 32 bits. Lanes cols..n-1 of each row are "
          "set to 0 (padding). Either memory may be the target.",
          _DMA_LATENCY),
    OpDef(2, "store", Unit.STORE, _DMA_FIELDS,
          "DMA SRAM rows out to a 2-D tile in DRAM.",
          "For r in 0..rows-1 and c in 0..cols-1: element c of the DRAM row at `dram + r*stride` "
          "= lane c of SRAM row `sram.row + r`. i8 and u8 write the lane's low byte (wrapping: "
          "saturate with REQUANT first); x32 writes 4 bytes little-endian.",
          _DMA_LATENCY),
    OpDef(3, "matmul", Unit.COMPUTE, (
        uint("dst", ROW_BITS, "first accumulator row written", role="dst"),
        uint("inp", ROW_BITS, "first scratchpad row of the input (one row per output row)",
             role="src1"),
        uint("wgt", ROW_BITS, "first of n scratchpad rows holding the n x n weights", role="src2"),
        uint("rows", 16, "input rows streamed through the array", min=1),
        flag("acc", "1: add to the accumulator rows; 0: overwrite them"),
        choice("dtype", 1, MatType, "operand type"),
    ),
          "Multiply `rows` input rows by an n x n weight tile on the matrix array.",
          "W[k][j] = lane j of scratchpad row `wgt + k` (k, j < n). For i in 0..rows-1: "
          "out[j] = sum over k of lane k of SP row `inp + i` times W[k][j]; ACC row `dst + i` = "
          "out (acc=0) or ACC row + out (acc=1). i8: each operand lane's low 8 bits read as a "
          "signed int8, products summed exactly and added in int32 with wrap-around. f32: lanes "
          "are fp32; products and sums in fp32, k ascending, round to nearest even.",
          f"cfg.n + rows + {MATMUL_STAGES + 1}"),
    OpDef(4, "unary", Unit.COMPUTE, _vec(
        local("dst", "first destination row", role="dst"),
        local("src1", "first source row", role="src1"),
        uint("count", 16, "rows processed", min=1),
        choice("fn", 5, UnaryFn, "function"),
        choice("dtype", 1, DType, "lane type of the source"),
        flag("step1", "1: src1 advances a row per row; 0: the same row every time"),
    ),
          "Apply a one-input function lane by lane.",
          "For r in 0..count-1: row `dst + r` = fn(row `src1 + r*step1`), each lane alone. See "
          "the function table for each fn's exact rule.",
          f"count + {_VPIPE}"),
    OpDef(5, "binary", Unit.COMPUTE, _vec(
        local("dst", "first destination row", role="dst"),
        local("src1", "first left operand row", role="src1"),
        local("src2", "first right operand row (ignored when imm_mode=1)", role="src2"),
        uint("count", 16, "rows processed", min=1),
        choice("fn", 5, BinaryFn, "function"),
        choice("dtype", 1, DType, "lane type of both operands"),
        flag("step1", "1: src1 advances a row per row"),
        flag("step2", "1: src2 advances a row per row; 0: one row broadcast to all"),
        flag("imm_mode", "1: the right operand is `imm` in every lane"),
        uint("imm", 32, "32-bit immediate (int32 or fp32 bits, per dtype)"),
    ),
          "Apply a two-input function lane by lane; the right operand may be an immediate.",
          "For r in 0..count-1: row `dst + r` = fn(row `src1 + r*step1`, B) where B is row "
          "`src2 + r*step2`, or `imm` in every lane when imm_mode=1.",
          _BINARY_LATENCY),
    OpDef(6, "ternary", Unit.COMPUTE, _vec(
        local("dst", "first destination row", role="dst"),
        local("src1", "first row of operand a", role="src1"),
        local("src2", "first row of operand b", role="src2"),
        local("src3", "first row of operand c", role="src3"),
        uint("count", 16, "rows processed", min=1),
        choice("fn", 2, TernaryFn, "function"),
        choice("dtype", 1, DType, "lane type of b, c and the result (a is read as dtype too)"),
        flag("step1", "1: src1 advances a row per row"),
        flag("step2", "1: src2 advances a row per row"),
        flag("step3", "1: src3 advances a row per row"),
    ),
          "Apply a three-input function lane by lane (select, multiply-add).",
          "For r in 0..count-1: row `dst + r` = fn(a, b, c) with a, b, c the rows "
          "`srcK + r*stepK`. where: a != 0 ? b : c (fp32: a != 0.0, so NaN selects b). mulacc: "
          "a*b + c, rounded after the multiply and after the add (not fused).",
          f"count + {_VPIPE}"),
    OpDef(7, "reduce", Unit.COMPUTE, _vec(
        local("dst", "destination row (axis=rows) or first destination row (axis=lanes)",
              role="dst"),
        local("src1", "first source row", role="src1"),
        uint("count", 16, "rows read", min=1),
        choice("fn", 2, ReduceFn, "reduction"),
        choice("axis", 1, Axis, "reduce across lanes or across rows"),
        choice("dtype", 1, DType, "lane type"),
        flag("acc", "1: combine the result with what dst holds (fn applied once more)"),
    ),
          "Sum, max or min across the lanes of each row, or across rows.",
          "axis=lanes: for r in 0..count-1, every lane of row `dst + r` = fn over the n lanes of "
          "row `src1 + r` (fp32 sum: a pairwise tree, ((l0+l1)+(l2+l3))+...). axis=rows: row "
          "`dst` = fn over rows `src1 .. src1+count-1`, lane by lane, in ascending row order. "
          "acc=1: the result is fn(old dst, result). int32 sums wrap.",
          # lanes: the operand register, a register after each level of the n-lane tree,
          # one for the combine with the old row (log2(n) + 2 stages)
          f"count + (cfg.log2_n + 3 if axis == Axis.LANES else {_VPIPE})"),
    OpDef(8, "requant", Unit.COMPUTE, _vec(
        local("dst", "first destination row", role="dst"),
        local("src1", "first int32 source row", role="src1"),
        local("src2", "parameter rows: lanes of row src2 are multipliers (int32), "
                      "lanes of row src2+1 are shifts (0..63); with step2, row r uses the pair "
                      "at src2+2r", role="src2"),
        uint("count", 16, "rows processed", min=1),
        sint("zp", 9, "output zero point"),
        sint("lo", 9, "lower saturation bound"),
        sint("hi", 9, "upper saturation bound"),
        flag("step1", "1: src1 advances a row per row"),
        flag("step2", "1: each row has its own parameter pair (per-channel params when "
                      "channels are rows)"),
    ),
          "Requantise int32 to a narrow integer: per-lane multiply, rounding shift, zero point, "
          "saturation.",
          "Row r reads its multipliers at src2 + 2r*step2 and its shifts at src2 + 2r*step2 + 1. "
          "For each lane with x (int32 source), m (int32 multiplier) and s = shift & 63: "
          "p = x*m in 64 bits; q = s == 0 ? p : (p + 2^(s-1)) >> s (arithmetic shift: rounds "
          "half up, towards +infinity); y = min(max(q + zp, lo), hi), computed in 64 bits; the "
          "lane is y as int32. int8 outputs use lo=-128, hi=127; fused ReLU raises lo to zp.",
          f"count + {_VPIPE}"),
    OpDef(9, "move", Unit.COMPUTE, _vec(
        local("dst", "first destination row", role="dst"),
        local("src1", "first source row (unused by fill)", role="src1"),
        uint("count", 16, "rows (copy, bcast, fill) or n x n blocks (transpose)", min=1),
        choice("fn", 2, MoveFn, "function"),
        sint("dstride", 16, "destination rows between consecutive items"),
        sint("sstride", 16, "source rows between consecutive items"),
        uint("imm", 32, "fill: the 32-bit lane value; bcast: the lane index (< n)"),
    ),
          "Copy, transpose, lane-broadcast or fill SRAM rows, across both memories.",
          "Item r in 0..count-1 reads at `src1 + r*sstride` and writes at `dst + r*dstride`. "
          "copy: one row. bcast: every lane of the dst row = lane `imm` of the src row. fill: "
          "every lane of the dst row = `imm` (src1 unused). transpose: the n rows from the "
          "source item form a matrix T; dst row dst+r*dstride+i, lane j = T[j][i]. All reads of "
          "an instruction happen before its writes.",
          _MOVE_LATENCY),
    OpDef(10, "loop", Unit.DISPATCH, (
        uint("count", 16, "iterations", min=1),
        uint("body", 8, "instructions in the body (those right after the LOOP)", min=1),
        sint("d_dram", 32, "added to DRAM addresses (role dram) per iteration"),
        sint("d_dst", 16, "added to dst / DMA sram rows per iteration"),
        sint("d_src1", 16, "added to src1 / matmul inp rows per iteration"),
        sint("d_src2", 16, "added to src2 / matmul wgt rows per iteration"),
        sint("d_src3", 16, "added to src3 rows per iteration"),
    ),
          "Hardware loop: repeat the next `body` instructions `count` times with address offsets.",
          "The dispatcher issues the body `count` times. In iteration i (from 0) of every active "
          "loop, it adds i*d_X to each field whose role is X (the memory bit of a local address "
          "never changes); offsets of nested loops add up. Loops nest at most 4 deep and an inner "
          "body must end within the outer one. The LOOP itself takes one dispatch cycle; so does "
          "every issued body instruction.",
          "0"),
    OpDef(11, "sync", Unit.COMPUTE, (
        choice("unit", 2, SyncUnit, "the unit whose queue the SYNC joins"),
    ),
          "A no-op on one unit that carries token flags (waits and signals with no work).",
          "Goes to `unit`'s queue and takes one cycle there; its pops and pushes act as for any "
          "instruction of that unit.",
          "1"),
)

NUM_OPCODES = 12
assert len(OPS) == NUM_OPCODES and all(op.opcode == i for i, op in enumerate(OPS))
assert all(op.used_bits <= INSN_BITS for op in OPS), [(op.mnemonic, op.used_bits) for op in OPS]

BY_MNEMONIC: dict[str, OpDef] = {op.mnemonic: op for op in OPS}
BY_OPCODE: dict[int, OpDef] = {op.opcode: op for op in OPS}
Op = enum.IntEnum("Op", {op.mnemonic.upper(): op.opcode for op in OPS})  # type: ignore[misc]

FUNC_DTYPES: dict[str, dict[Any, frozenset[DType]]] = {
    "unary": UNARY_DTYPES, "binary": BINARY_DTYPES, "ternary": TERNARY_DTYPES,
    "reduce": REDUCE_DTYPES,
}

class FunctionTable(Mapping[Any, str]):
    """A mapping from function enum members to text that keeps UnaryFn.NEG and BinaryFn.ADD
    apart (IntEnum members of different enums with the same value hash and compare equal, so
    a plain dict would silently merge them). Give one dict per enum."""

    def __init__(self, *groups: dict[Any, str]):
        self._entries = {(type(fn), int(fn)): (fn, text)
                         for group in groups for fn, text in group.items()}

    def __getitem__(self, fn: Any) -> str:
        try:
            return self._entries[(type(fn), int(fn))][1]
        except (TypeError, ValueError):
            raise KeyError(fn) from None

    def __iter__(self) -> Iterator[Any]:
        return (fn for fn, _ in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


FUNCTION_DOC: Mapping[Any, str] = FunctionTable({
    UnaryFn.NEG: "-x (int32 wraps: -(-2^31) = -2^31)",
    UnaryFn.ABS: "|x| (int32 wraps: |-2^31| = -2^31)",
    UnaryFn.RELU: "max(x, 0)",
    UnaryFn.NOT: "bitwise not (int32 only)",
    UnaryFn.EXP2: "2^x (fp32 only)",
    UnaryFn.LOG2: "log2(x); x<0 gives NaN, 0 gives -inf (fp32 only)",
    UnaryFn.SQRT: "sqrt(x); x<0 gives NaN (fp32 only)",
    UnaryFn.RECIP: "1/x; 0 gives +-inf (fp32 only)",
    UnaryFn.SIN: "sin(x), x in radians (fp32 only)",
    UnaryFn.ITOF: "int32 -> fp32, round to nearest even (dtype i32; the result is fp32)",
    UnaryFn.FTOI: "fp32 -> int32, round to nearest even, saturating at the int32 range, "
                  "NaN -> 0 (dtype f32; the result is int32)",
}, {
    BinaryFn.ADD: "a + b (int32 wraps)",
    BinaryFn.SUB: "a - b (int32 wraps)",
    BinaryFn.MUL: "a * b (int32: low 32 bits of the product)",
    BinaryFn.DIV: "a / b; int32 truncates toward zero, x/0 = 0, -2^31/-1 = -2^31",
    BinaryFn.MAX: "max(a, b); fp32: NaN if either is NaN",
    BinaryFn.MIN: "min(a, b); fp32: NaN if either is NaN",
    BinaryFn.CMPLT: "a < b ? 1 : 0 (fp32: 1.0 or 0.0)",
    BinaryFn.CMPEQ: "a == b ? 1 : 0 (fp32: 1.0 or 0.0)",
    BinaryFn.AND: "bitwise and (int32 only)",
    BinaryFn.OR: "bitwise or (int32 only)",
    BinaryFn.XOR: "bitwise xor (int32 only)",
    BinaryFn.SHL: "a << (b & 31), low 32 bits (int32 only)",
    BinaryFn.SHR: "a >> (b & 31), arithmetic (int32 only)",
}, {
    TernaryFn.WHERE: "a != 0 ? b : c",
    TernaryFn.MULACC: "a * b + c, rounded twice (int32 wraps)",
}, {
    ReduceFn.SUM: "sum (int32 wraps)",
    ReduceFn.MAX: "maximum",
    ReduceFn.MIN: "minimum",
}, {
    MoveFn.COPY: "dst row = src row (any 32-bit contents)",
    MoveFn.TRANSPOSE: "an n x n block: dst row i, lane j = src row j, lane i",
    MoveFn.BCAST: "every lane of the dst row = lane `imm` of the src row (imm < n)",
    MoveFn.FILL: "every lane of the dst row = `imm` (src1 unused)",
})


def unit_of(op: OpDef, values: dict[str, int]) -> Unit:
    """The unit an instruction runs on (SYNC names it in a field)."""
    if op.opcode == Op.SYNC:
        return Unit(values["unit"])
    return op.unit


def all_functions() -> list[tuple[str, Any, frozenset[DType] | None]]:
    """(opcode mnemonic, function, dtypes) for every function of every opcode, for docs."""
    rows: list[tuple[str, Any, frozenset[DType] | None]] = []
    for mnemonic, table in FUNC_DTYPES.items():
        rows += [(mnemonic, fn, dts) for fn, dts in table.items()]
    rows += [("move", fn, None) for fn in MoveFn]
    return rows


def describe(cfg: ChipConfig | None = None) -> list[dict[str, Any]]:
    """The ISA as plain data (for `dozen info --json` and the RTL decoder generator)."""
    out = []
    for op in OPS:
        fields = [{"name": f.name, "bits": f.bits, "kind": f.kind.value, "min": f.lo, "max": f.hi,
                   **({"values": [e.name.lower() for e in f.enum]} if f.enum else {}),
                   **({"loop_role": f.role} if f.role else {}), "doc": f.doc} for f in op.fields]
        entry = {"opcode": op.opcode, "mnemonic": op.mnemonic, "unit": op.unit.name.lower(),
                 "fields": fields, "summary": op.summary, "latency": op.latency}
        functions = [{"code": int(fn), "name": fn.name.lower(),
                      "dtypes": sorted(d.name.lower() for d in dts) if dts is not None else None,
                      "rule": FUNCTION_DOC[fn]}
                     for mnemonic, fn, dts in all_functions() if mnemonic == op.mnemonic]
        if functions:
            entry["functions"] = functions
        out.append(entry)
    return out


# Field positions: (lsb, width) of each field, derived from the table order.
def layout(op: OpDef) -> list[tuple[Field, int]]:
    pos, out = HEADER_BITS, []
    for f in op.fields:
        out.append((f, pos))
        pos += f.bits
    return out


LAYOUTS: dict[int, list[tuple[Field, int]]] = {op.opcode: layout(op) for op in OPS}
TOKEN_FLAG_BITS = {name: OPCODE_BITS + i for i, name in enumerate(TOKEN_FLAGS)}

