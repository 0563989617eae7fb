"""Generate `isa/SPEC.md` from the ISA table (isa/table.py) and the machine model (isa/model.py).

    python -m isa.spec > isa/SPEC.md     # what `make spec` runs
    python -m isa.spec --check           # exit 1 if the committed SPEC.md is stale

Every number in the spec (bit positions, ranges, enum codes, latencies, preset sizes) is
computed here from the table, so the document cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
from pathlib import Path
from typing import Any

from isa import model
from isa.asm import __doc__ as ASM_DOC
from isa.asm import format_instruction
from isa.config import DRAM_ADDR_BITS, LANE_BYTES, PRESETS, ROW_FIELD_BITS, ChipConfig
from isa.container import MAGIC, SYMBOL_DTYPES, VERSION
from isa.container import __doc__ as CONTAINER_DOC
from isa.encoding import Instruction, local_addr, make
from isa.table import (
    FAULT_DOC,
    FUNC_DTYPES,
    FUNCTION_DOC,
    HEADER_BITS,
    INSN_BITS,
    INSN_BYTES,
    LAYOUTS,
    LOCAL_BITS,
    LOOP_MAX_DEPTH,
    NUM_OPCODES,
    OPCODE_BITS,
    OPS,
    TOKEN_FLAG_BITS,
    Axis,
    DType,
    Fault,
    Field,
    Fmt,
    Kind,
    MatType,
    Mem,
    MoveFn,
    OpDef,
    ReduceFn,
    SyncUnit,
    Unit,
    all_functions,
)

SPEC_PATH = Path(__file__).with_name("SPEC.md")

# What each ChipConfig field means (a test checks that every field has an entry).
CONFIG_DOC: dict[str, str] = {
    "name": "a label for reports; not part of the hardware",
    "n": "the matrix array is n x n; the vector unit and every SRAM row have n lanes",
    "sp_bytes": "scratchpad SRAM size in bytes",
    "acc_bytes": "accumulator SRAM size in bytes",
    "dram_bytes": "DRAM size in bytes (byte addresses 0 .. dram_bytes-1)",
    "dram_latency": "cycles from a DMA request to its first byte",
    "dram_bw": "DRAM bytes per cycle once a transfer streams",
    "queue_depth": "instructions each unit's queue holds",
    "token_depth": "the most tokens one dependency channel holds",
    "clock_mhz": "clock frequency, for converting cycles to time (no effect on cycles)",
    "dtypes": "the data types the chip supports (int8, int32, fp32)",
}

# Why the ISA is the way it is. Numbers in braces are filled in from the table.
DECISIONS: list[tuple[str, str]] = [
    ("Twelve opcodes, one table",
     "Every opcode, field, enum, semantic rule and latency formula lives in `isa/table.py`; "
     "the assembler, the encoder, the simulator, the RTL decoder, the compiler and this "
     "document read it. Twelve is enough because functions are fields: UNARY, BINARY, "
     "TERNARY and REDUCE select among {n_functions} element-wise functions with a `fn` field, "
     "and the dtype is a field too, so a new function costs an enum entry, not an opcode."),
    ("Fixed 128-bit instructions",
     "One DMA instruction needs a {dram_bits}-bit DRAM address, a {stride_bits}-bit stride, a "
     "{rows_bits}-bit row count and a {local_bits}-bit local address ({load_bits} bits in "
     "all); MOVE uses {move_bits} and LOOP {loop_bits} of the {insn_bits} bits. A fixed width "
     "makes fetch one "
     "aligned word per cycle, lets LOOP count bodies in instructions and lets the RTL decode "
     "every field with constant bit slices generated from the table. VTA chose the same size."),
    ("Opcode in bits 0..3, token flags in bits 4..7 of every instruction",
     "The dispatcher routes an instruction and the units pop and push tokens by looking at "
     "the first byte only; fields follow from bit 8 in table order, so field positions are "
     "derived, never written by hand."),
    ("HALT is opcode 0",
     "An all-zero word is a valid HALT without flags, so zero-filled instruction memory and a "
     "zeroed buffer stop the machine instead of running garbage."),
    ("Reserved bits must be zero; illegal combinations fault",
     "Opcodes {first_free}..15, set reserved bits, enum values out of range, a function not "
     "defined for its dtype and a token flag towards a missing neighbour are all "
     "ILLEGAL_INSTRUCTION. Corrupt binaries are caught at decode, and the free encodings stay "
     "free for later extensions (bf16, more functions)."),
    ("Every SRAM lane is 32 bits",
     "int8, int32 and fp32 data share one row format: int8 values sit sign-extended in a "
     "lane. The vector unit then never packs or unpacks, any vector instruction runs on any "
     "row of either memory, and LOAD/STORE do the only conversions (sign- or zero-extend, "
     "take the low byte). The price is 4x the SRAM for int8 operands, accepted for "
     "simplicity; packed int8 rows would be a config option, not a new opcode."),
    ("Two memories, addressed in rows; DRAM addressed in bytes",
     "A local address is 1 memory bit + a 16-bit row ({local_bits} bits): vector "
     "instructions work on the accumulator in place, so epilogues (bias, activation, "
     "requantisation) need no copies. Rows are the natural unit of the n-lane datapath; "
     "bytes are the natural unit of a host-visible DRAM."),
    ("VTA-style dependency tokens",
     "Load, compute and store run concurrently, in order, and synchronise only through four "
     "counting channels between neighbouring units, set by four header flags. The hardware "
     "needs no scoreboard or hazard detection, DMA overlaps compute, double buffering is the "
     "compiler's explicit choice, and a missing token is a detectable deadlock rather than a "
     "silent race."),
    ("SYNC carries tokens without work",
     "A one-cycle no-op on a chosen unit, for the pushes and pops that no real instruction "
     "is placed to carry (for example the initial 'buffer free' tokens of a double-buffered "
     "loop)."),
    ("LOOP exists",
     "A tiled GEMM repeats a handful of instructions thousands of times with addresses that "
     "move by constant strides. LOOP repeats the next `body` instructions `count` times, "
     "adding per-iteration deltas to every field marked with a loop role (dram, dst, src1, "
     "src2, src3). Programs stay tens of instructions long instead of 10^5, binaries stay "
     "small and instruction fetch stays far below one word per cycle. Loops nest "
     "{loop_depth} deep: enough for M, N and K tiling plus an epilogue."),
    ("MATMUL keeps weights stationary",
     "An n x n weight tile stays in the array while `rows` input rows stream through; its "
     "latency `{matmul_latency}` is the fill and drain of a pipelined array (OpenTPU: L + 2N). "
     "Long row streams amortise the fill. int8 operands accumulate exactly into int32 "
     "(wrapping), and an fp32 mode lets float models check tightly against GPU runs."),
    ("REQUANT rounds half up",
     "`(p + 2^(s-1)) >> s` is one add and one arithmetic shift in hardware and the same "
     "64-bit integer expression in numpy, OpenCL C and LLVM IR, so every backend matches bit "
     "for bit. It differs from round-half-away-from-zero only on exact negative ties. "
     "Multipliers and shifts come per lane from SRAM rows, or a pair of rows per row with "
     "step2 when channels are rows, so per-channel quantisation is free either way."),
    ("2-D strided DMA with zero padding",
     "LOAD and STORE move a rows x cols tile with a byte stride, so a tile of any row-major "
     "matrix is one instruction; lanes cols..n-1 are zeroed on LOAD so edge tiles need no "
     "special case in MATMUL."),
    ("Latency formulas are data",
     "Each opcode's latency is a small expression over its fields and the ChipConfig, "
     "evaluated by `OpDef.cycles`. The simulator evaluates it; the RTL implements it; this "
     "document prints it. Nothing else states a latency."),
    ("Casts are functions, not opcodes",
     "ITOF and FTOI are UNARY functions; int8 narrowing is REQUANT's saturation; int8 "
     "widening is LOAD's sign extension. No opcode is spent on type conversion."),
]

# One representative instruction per opcode for the worked latency examples.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "halt": [{}],
    "load": [dict(sram=local_addr(Mem.SP, 0), dram=0, stride=16, rows=16, cols=16, fmt=Fmt.I8),
             dict(sram=local_addr(Mem.SP, 0), dram=0, stride=2048, rows=512, cols=16,
                  fmt=Fmt.I8)],
    "store": [dict(sram=local_addr(Mem.ACC, 0), dram=0x1000, stride=64, rows=16, cols=16,
                   fmt=Fmt.X32)],
    "matmul": [dict(dst=0, inp=16, wgt=0, rows=16, dtype=MatType.I8),
               dict(dst=0, inp=16, wgt=0, rows=512, acc=1, dtype=MatType.I8)],
    "unary": [dict(dst=local_addr(Mem.ACC, 0), src1=local_addr(Mem.ACC, 0), count=16, fn=2,
                   dtype=DType.F32, step1=1)],
    "binary": [dict(dst=local_addr(Mem.ACC, 0), src1=local_addr(Mem.ACC, 0),
                    src2=local_addr(Mem.SP, 0), count=16, fn=0, dtype=DType.I32, step1=1)],
    "ternary": [dict(dst=local_addr(Mem.ACC, 0), src1=local_addr(Mem.ACC, 0),
                     src2=local_addr(Mem.ACC, 16), src3=local_addr(Mem.ACC, 32), count=16,
                     fn=0, dtype=DType.F32, step1=1, step2=1, step3=1)],
    "reduce": [dict(dst=local_addr(Mem.ACC, 0), src1=local_addr(Mem.ACC, 0), count=16,
                    fn=ReduceFn.SUM, axis=Axis.LANES, dtype=DType.F32),
               dict(dst=local_addr(Mem.ACC, 0), src1=local_addr(Mem.ACC, 0), count=16,
                    fn=ReduceFn.MAX, axis=Axis.ROWS, dtype=DType.I32)],
    "requant": [dict(dst=local_addr(Mem.SP, 0), src1=local_addr(Mem.ACC, 0),
                     src2=local_addr(Mem.SP, 64), count=16, zp=0, lo=-128, hi=127, step1=1)],
    "move": [dict(dst=local_addr(Mem.SP, 0), src1=local_addr(Mem.ACC, 0), count=16,
                  fn=MoveFn.COPY, dstride=1, sstride=1),
             dict(dst=local_addr(Mem.SP, 0), src1=local_addr(Mem.SP, 16), count=1,
                  fn=MoveFn.TRANSPOSE, dstride=16, sstride=16)],
    "loop": [dict(count=32, body=4, d_dram=1024, d_dst=16)],
    "sync": [dict(unit=SyncUnit.STORE)],
}


# Markdown helpers -----------------------------------------------------------------------

def cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def anchor(title: str) -> str:
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")


# Pieces -----------------------------------------------------------------------------------

def field_range(f: Field) -> str:
    if f.kind is Kind.LOCAL:
        return f"sp:0..sp:{(1 << ROW_FIELD_BITS) - 1}, acc:0..acc:{(1 << ROW_FIELD_BITS) - 1}"
    if f.kind is Kind.ENUM:
        assert f.enum is not None
        return ", ".join(f"{e.name.lower()}={int(e)}" for e in f.enum)
    if f.kind is Kind.FLAG:
        return "0, 1"
    return f"{f.lo}..{f.hi}"


def enum_names(e: type[enum.IntEnum]) -> str:
    return ", ".join(f"`{m.name.lower()}`={int(m)}" for m in e)


def decision_values() -> dict[str, Any]:
    by = {op.mnemonic: op for op in OPS}
    n_functions = sum(len(t) for t in FUNC_DTYPES.values())
    return {"n_functions": n_functions, "dram_bits": DRAM_ADDR_BITS, "local_bits": LOCAL_BITS,
            "load_bits": by["load"].used_bits, "stride_bits": by["load"].field("stride").bits,
            "rows_bits": by["load"].field("rows").bits, "move_bits": by["move"].used_bits,
            "loop_bits": by["loop"].used_bits, "insn_bits": INSN_BITS,
            "first_free": NUM_OPCODES, "loop_depth": LOOP_MAX_DEPTH,
            "matmul_latency": by["matmul"].latency.replace("cfg.", "")}


def latency_text(op: OpDef) -> str:
    if op.unit is Unit.DISPATCH:
        return "handled by the dispatcher in its one dispatch cycle; occupies no unit"
    return f"`{op.latency}` cycles"


def section_decisions() -> str:
    values = decision_values()
    out = ["## 1. Design decisions\n",
           "Each decision with the reason for it. Numbers come from the ISA table.\n"]
    for i, (title, text) in enumerate(DECISIONS, start=1):
        out.append(f"{i}. **{title}.** {text.format(**values)}")
    return "\n".join(out) + "\n"


def section_config() -> str:
    names = list(PRESETS)
    keys = [f.name for f in dataclasses.fields(ChipConfig) if f.name != "name"]
    rows = []
    for key in keys:
        values = [getattr(PRESETS[p], key) for p in names]
        shown = [", ".join(v) if isinstance(v, tuple) else f"{v:,}" if isinstance(v, int) else v
                 for v in values]
        rows.append([f"`{key}`", *shown, CONFIG_DOC[key]])
    derived_keys = list(PRESETS["default"].derived())
    for key in derived_keys:
        values = [PRESETS[p].derived()[key] for p in names]
        rows.append([f"`{key}` (derived)",
                     *[f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in values], ""])
    return (
        "## 2. Chip configuration\n\n"
        "One `ChipConfig` (isa/config.py) describes a chip; every command takes "
        "`--config PRESET` or `--config FILE.toml` (keys as below, optionally under a `[chip]` "
        "table, and `preset = \"tiny\"` to start from a preset). The presets:\n\n"
        + table(["key", *names, "meaning"], rows) +
        "\nA config is rejected, naming the key, when: a key is unknown; a value has the "
        "wrong type; `n` is not a power of two in 2..256; `sp_bytes` or `acc_bytes` is not a "
        f"positive multiple of the row size `4n` or gives more than 2^{ROW_FIELD_BITS} rows "
        "(the reach of a row address); the scratchpad holds fewer than `2n` rows or the "
        "accumulator fewer than `n`; `dram_bytes` is outside 1..2^"
        f"{DRAM_ADDR_BITS}; `dram_latency` is outside 0..65536, `dram_bw` outside 1..65536, "
        "`queue_depth` outside 1..1024, `token_depth` outside 1..65536, `clock_mhz` outside "
        "(0, 10000]; `dtypes` is empty or names an unknown type.\n"
    )


def section_memories() -> str:
    return ("## 3. Memories and address units\n\n" + model.MEMORIES +
            f"\nEach lane is {LANE_BYTES} bytes; a row of the default chip is "
            f"{PRESETS['default'].row_bytes} bytes.\n")


def section_units() -> str:
    return "## 4. Units, queues and dependency tokens\n\n" + model.UNITS


def section_format() -> str:
    header = [[f"0..{OPCODE_BITS - 1}", "opcode", f"0..{NUM_OPCODES - 1} (12..15 illegal)"]]
    header += [[str(bit), name, "token flag"] for name, bit in TOKEN_FLAG_BITS.items()]
    header += [[f"{HEADER_BITS}..{INSN_BITS - 1}", "fields",
                "per opcode, packed upwards in table order; bits above the last field are "
                "reserved and must be 0"]]
    enums = [["Mem (local address bit 16)", enum_names(Mem)], ["Fmt (DMA format)", enum_names(Fmt)],
             ["DType (vector lanes)", enum_names(DType)], ["MatType (matmul)", enum_names(MatType)],
             ["Axis (reduce)", enum_names(Axis)], ["SyncUnit", enum_names(SyncUnit)]]
    kinds = [["uint", "unsigned integer; a value below the field's minimum (counts start at "
                      "1) is illegal"],
             ["sint", "two's complement signed integer"],
             ["enum", "a code from the enum tables; codes beyond the last are illegal"],
             ["local", f"{LOCAL_BITS} bits: bit 16 = memory (sp=0, acc=1), bits 0..15 = row"],
             ["flag", "one bit"]]
    return (
        "## 5. Instruction format\n\n"
        f"Every instruction is {INSN_BITS} bits ({INSN_BYTES} bytes), stored little-endian: "
        "bit 0 is the lowest bit of the first byte. A field of width w at bit position p holds "
        "`(word >> p) & (2^w - 1)`.\n\n" + table(["bits", "name", "meaning"], header) +
        "\nField kinds:\n\n" + table(["kind", "meaning"], kinds) +
        "\nEnumerations:\n\n" + table(["enum", "values"], enums)
    )


def op_section(op: OpDef, number: int) -> str:
    rows = []
    for f, lsb in LAYOUTS[op.opcode]:
        bits = f"{lsb}" if f.bits == 1 else f"{lsb}..{lsb + f.bits - 1}"
        rows.append([f"`{f.name}`", bits, f.bits, f.kind.value, field_range(f),
                     f.role or "", f.doc])
    reserved = (f"bits {op.used_bits}..{INSN_BITS - 1} reserved (must be 0)"
                if op.used_bits < INSN_BITS else "all 128 bits used")
    unit = ("the unit named by its `unit` field" if op.mnemonic == "sync"
            else "the dispatcher" if op.unit is Unit.DISPATCH
            else f"the {op.unit.name.lower()} unit")
    out = [f"### 6.{number} `{op.mnemonic}` (opcode {op.opcode})\n",
           f"{op.summary}\n",
           f"Runs on {unit}. Header bits 0..7, then the fields; {reserved}.\n"]
    if rows:
        out.append(table(["field", "bits", "width", "kind", "range", "loop role", "meaning"],
                         rows))
    else:
        out.append("No fields.\n")
    out.append(f"**Semantics.** {op.semantics}\n")
    out.append(f"**Latency.** {latency_text(op)}.\n")
    return "\n".join(out)


def section_opcodes() -> str:
    summary = [[op.opcode, f"`{op.mnemonic}`",
                "(field)" if op.mnemonic == "sync" else op.unit.name.lower(), op.used_bits,
                op.summary] for op in OPS]
    out = ["## 6. Opcodes\n", table(["opcode", "mnemonic", "unit", "bits used", "summary"],
                                    summary)]
    out += [op_section(op, i) for i, op in enumerate(OPS, start=1)]
    return "\n".join(out)


def section_functions() -> str:
    out = ["## 7. Functions\n",
           "The `fn` field of UNARY, BINARY, TERNARY, REDUCE and MOVE. A function used with a "
           "dtype it does not list is an illegal instruction.\n"]
    groups: dict[str, list[list[Any]]] = {}
    for mnemonic, fn, dtypes in all_functions():
        dts = ", ".join(d.name.lower() for d in sorted(dtypes)) if dtypes is not None else "any"
        groups.setdefault(mnemonic, []).append([int(fn), f"`{fn.name.lower()}`", dts,
                                                FUNCTION_DOC[fn]])
    for mnemonic, rows in groups.items():
        out.append(f"### {mnemonic.upper()}\n")
        out.append(table(["code", "fn", "dtypes", "rule"], rows))
    return "\n".join(out)


def section_loop_roles() -> str:
    rows = []
    for op in OPS:
        roles = [f"`{f.name}`→{f.role}" for f in op.fields if f.role]
        if roles:
            rows.append([f"`{op.mnemonic}`", ", ".join(roles)])
    return (
        "## 8. Loop roles\n\n"
        "LOOP adds `i * d_ROLE` (i = iteration index) to every field with that role, in every "
        "active loop; the offsets of nested loops add up. For a local address only the row "
        "changes. A result outside the field's range is SRAM_OUT_OF_BOUNDS (rows) or "
        "DRAM_OUT_OF_BOUNDS (addresses) when the instruction runs.\n\n"
        + table(["opcode", "fields and their roles"], rows)
    )


def section_numerics() -> str:
    return "## 9. Numerics\n\n" + model.NUMERICS


def section_timing() -> str:
    return "## 10. Timing model\n\n" + model.TIMING


def section_faults() -> str:
    rows = [[int(f), f"`{f.name}`", FAULT_DOC.get(f, "no fault")] for f in Fault]
    return ("## 11. Faults\n\nThe simulator raises these by name; the RTL latches the code "
            "and the pc and stops.\n\n" + table(["code", "fault", "when"], rows))


def worked_examples() -> list[tuple[Instruction, int]]:
    cfg = PRESETS["default"]
    out = []
    for op in OPS:
        for values in EXAMPLES[op.mnemonic]:
            insn = make(op.mnemonic, **values)
            out.append((insn, op.cycles(insn.values, cfg)))
    return out


def section_worked() -> str:
    cfg = PRESETS["default"]
    rows = []
    for insn, cycles in worked_examples():
        latency = (f"`{insn.op.latency}` = {cycles}" if insn.op.unit is not Unit.DISPATCH
                   else "1 dispatch cycle")
        rows.append([f"`{format_instruction(insn).split('  ;')[0]}`", latency,
                     f"`{insn.encode().hex()}`"])
    return (
        f"## 12. Worked examples on the default chip\n\n"
        f"Latencies of one instruction each on `default` (n={cfg.n}, "
        f"dram_latency={cfg.dram_latency}, dram_bw={cfg.dram_bw}), computed from the table's "
        "formulas, with the instruction's 16 bytes in hex (first byte first).\n\n"
        + table(["instruction", "latency (cycles)", "encoding"], rows)
    )


def section_assembly() -> str:
    body = (ASM_DOC or "").strip().split("\n", 1)[1].strip("\n")
    return ("## 13. Assembly syntax\n\n`dozen asm prog.s -o prog.dzn` and "
            "`dozen disasm prog.dzn` (isa/asm.py):\n\n" + _indent_block(body))


def section_container() -> str:
    body = (CONTAINER_DOC or "").strip().split("\n", 1)[1].strip("\n")
    facts = (
        f"\nThis is format version {VERSION[0]}.{VERSION[1]}; a reader accepts every minor "
        f"version of its major version and refuses others. Magic: `{MAGIC.decode()}`. A SYMS "
        "entry is `{\"name\", \"kind\": \"input\"|\"output\", \"addr\", \"shape\": [...], "
        "\"dtype\"}` plus `\"scale\"` and `\"zero_point\"` for quantised tensors (real value = "
        f"scale * (q - zero_point)); dtypes: {', '.join(SYMBOL_DTYPES)}. Data segments must "
        "not overlap, and segments and symbols must lie inside the chip's DRAM.\n")
    return "## 14. The .dzn container\n\n" + _indent_block(body) + facts


def _indent_block(text: str) -> str:
    """Docstrings mix prose and 4-space code blocks; keep both as markdown."""
    lines = text.splitlines()
    return "\n".join(lines) + "\n"


def section_rtl() -> str:
    items = model.RTL_UNSUPPORTED
    listing = ("\n".join(f"- {item}" for item in items) if items
               else "- (none listed: the RTL implements every opcode, function and dtype)")
    return ("## 15. Not implemented by the RTL yet\n\n"
            "Driven by `RTL_UNSUPPORTED` in isa/model.py, which the RTL keeps current. A "
            "program that uses one of these runs on the simulator but not on the RTL.\n\n"
            + listing + "\n")


SECTIONS = [section_decisions, section_config, section_memories, section_units,
            section_format, section_opcodes, section_functions, section_loop_roles,
            section_numerics, section_timing, section_faults, section_worked,
            section_assembly, section_container, section_rtl]


def render() -> str:
    """The whole SPEC.md text."""
    bodies = [s() for s in SECTIONS]
    titles = [b.splitlines()[0].lstrip("# ").strip() for b in bodies]
    contents = "\n".join(f"- [{t}](#{anchor(t)})" for t in titles)
    head = (
        "# The Dozen ISA\n\n"
        "<!-- Generated by `python -m isa.spec` (make spec) from isa/table.py and "
        "isa/model.py. Do not edit by hand. -->\n\n"
        f"Dozen's accelerator has {NUM_OPCODES} opcodes in fixed {INSN_BITS}-bit "
        "instructions, an `n x n` matrix array, an `n`-lane vector unit, two on-chip SRAMs "
        "and a byte-addressed DRAM, with load, compute and store units synchronised by "
        "dependency tokens. This document is the contract between the compiler, the "
        "simulator and the RTL: each can be written from it alone.\n\n"
        "## Contents\n\n" + contents + "\n"
    )
    return "\n".join([head, *bodies]).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isa.spec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help=f"compare with {SPEC_PATH.name}; exit 1 if it is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = SPEC_PATH.read_text() if SPEC_PATH.exists() else ""
        if current != text:
            sys.stderr.write(f"{SPEC_PATH} is stale: run `make spec`\n")
            return 1
        print(f"{SPEC_PATH} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
