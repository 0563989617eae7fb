"""Assembler and disassembler for Dozen's text syntax (`.s`).

    ; comment (also `#`)
    .config default                  ; a preset, or a JSON object (what disasm prints)
    .const  ROWS = 16                ; named constants: integer expressions
    .input  A, addr=0x0, shape=(16, 16), dtype=int8
    .output C, addr=0x1000, shape=(16, 16), dtype=int32
    .data   0x2000, int8, 1, 2, -3   ; initial DRAM contents
    .bytes  0x3000, "00ff7f"         ; the same, as hex (what disasm prints)
    .meta   {"source": "hand"}
    start:                           ; a label is the index of the next instruction
        load sp:0, 0x0, 16, ROWS, 16, i8, push_next       ; positional, in table order
        matmul dst=0, inp=0, wgt=16, rows=ROWS, pop_prev  ; ACC row 0 = SP rows 0.. x SP 16..

Operands are positional (in the ISA table's field order) or `name=value`; a bare
token-flag name (`pop_prev`, `push_next`, ...) sets that flag. Local addresses are
`sp:ROW` or `acc:ROW` (MATMUL's rows are plain numbers: `dst` is always an ACC row,
`inp` and `wgt` SP rows); enum fields take their names (`i8`, `add`, `lanes`). `f32(1.5)`
gives the bits of an fp32 constant. The disassembler prints every field by name, so
asm -> disasm -> asm reproduces the same bytes.
"""

from __future__ import annotations

import ast
import json
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isa.config import PRESETS, ChipConfig
from isa.container import SYMBOL_DTYPES, Program, Segment, Symbol
from isa.encoding import Instruction, check, local_mem, local_row
from isa.errors import AsmError, ConfigError, ContainerError, EncodingError
from isa.table import BY_MNEMONIC, TOKEN_FLAGS, Kind, Mem, Op

_LABEL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*:(?!\S)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEX_FIELDS = {"dram", "imm", "d_dram"}
_MAX_SHIFT = 64  # larger shifts only build huge integers that no field holds


def f32_bits(x: float) -> int:
    """The bits of `x` rounded to fp32 (to nearest even; too large gives +-inf)."""
    with np.errstate(over="ignore"):
        return int(np.array(float(x), dtype=np.float32).view(np.uint32))


def bits_f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


@dataclass
class _Line:
    number: int
    text: str  # the statement with comment and label removed
    col: int  # column (1-based) where `text` starts


class _Evaluator:
    """Integer expressions over named constants: + - * // % << >> & | ^ ~, tuples, f32()."""

    def __init__(self, names: dict[str, int]):
        self.names = names

    def __call__(self, text: str) -> Any:
        try:
            with warnings.catch_warnings():  # e.g. "invalid hexadecimal literal": we report it
                warnings.simplefilter("ignore")
                tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            raise ValueError(f"cannot parse expression {text.strip()!r}") from None
        return self._eval(tree.body)

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise ValueError(f"undefined name {node.id!r}")
            return self.names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
            v = self._eval(node.operand)
            try:
                return -v if isinstance(node.op, ast.USub) else (
                    ~v if isinstance(node.op, ast.Invert) else +v)
            except TypeError:
                raise ValueError(f"bad operand for {ast.unparse(node)!r}") from None
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left), self._eval(node.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                   ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b,
                   ast.LShift: lambda: a << b, ast.RShift: lambda: a >> b,
                   ast.BitAnd: lambda: a & b, ast.BitOr: lambda: a | b, ast.BitXor: lambda: a ^ b}
            fn = ops.get(type(node.op))
            if fn is None:
                raise ValueError("unsupported operator in expression")
            if isinstance(node.op, (ast.LShift, ast.RShift)) and isinstance(b, int) \
                    and not 0 <= b <= _MAX_SHIFT:
                raise ValueError(f"shift amount {b} out of range 0..{_MAX_SHIFT}")
            try:
                return fn()
            except (ZeroDivisionError, TypeError, ValueError) as exc:
                raise ValueError(f"bad expression: {exc}") from None
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self._eval(e) for e in node.elts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "f32" and len(node.args) == 1 and not node.keywords:
            return f32_bits(float(self._eval(node.args[0])))
        raise ValueError(f"unsupported expression {ast.unparse(node)!r}")

    def integer(self, text: str) -> int:
        value = self(text)
        if not isinstance(value, int):
            raise ValueError(f"expected an integer, got {text.strip()!r}")
        return value


def _split_operands(text: str, col: int) -> list[tuple[str, int]]:
    """Split on top-level commas, keeping each piece's 1-based column."""
    parts, depth, start, in_str = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            in_str = not in_str
        elif not in_str and ch in "([{":
            depth += 1
        elif not in_str and ch in ")]}":
            depth -= 1
        elif not in_str and ch == "," and depth == 0:
            parts.append((text[start:i], start))
            start = i + 1
    parts.append((text[start:], start))
    out = []
    for piece, offset in parts:
        stripped = piece.strip()
        lead = len(piece) - len(piece.lstrip())
        if stripped:
            out.append((stripped, col + offset + lead))
    return out


def _strip_comment(line: str) -> str:
    in_str, escaped = False, False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif in_str and ch == "\\":
            escaped = True
        elif ch == '"':
            in_str = not in_str
        elif ch in ";#" and not in_str:
            return line[:i]
    return line


class Assembler:
    def __init__(self, source: str, filename: str = "<input>", config: ChipConfig | None = None):
        self.source, self.filename, self.cli_config = source, filename, config
        self.names: dict[str, int] = {}
        self.config: ChipConfig | None = None
        self.config_line: _Line | None = None

    def error(self, message: str, line: _Line | int, col: int | None = None) -> AsmError:
        number = line.number if isinstance(line, _Line) else line
        return AsmError(message, self.filename, number,
                        col if col is not None else (line.col if isinstance(line, _Line) else 1))

    def _lines(self) -> tuple[list[_Line], dict[str, int]]:
        """Pass 1: strip comments, collect labels (instruction indices)."""
        lines, labels, pc = [], {}, 0
        for number, raw in enumerate(self.source.splitlines(), start=1):
            text = _strip_comment(raw)
            col = 1
            while (m := _LABEL.match(text)) is not None:
                name = m.group(1)
                if name in labels:
                    raise self.error(f"label {name!r} defined twice", number, m.start(1) + col)
                labels[name] = pc
                col += m.end()
                text = text[m.end():]
            stripped = text.strip()
            if not stripped:
                continue
            col += len(text) - len(text.lstrip())
            lines.append(_Line(number, stripped, col))
            if not stripped.startswith("."):
                pc += 1
        return lines, labels

    def assemble(self) -> Program:
        lines, labels = self._lines()
        self.names = dict(labels)
        evaluate = _Evaluator(self.names)
        code: list[Instruction] = []
        segments: list[Segment] = []
        symbols: list[Symbol] = []
        meta: dict[str, Any] = {}
        pending: list[tuple[_Line, str, list[tuple[str, int]]]] = []
        for line in lines:
            head, _, rest = line.text.partition(" ")
            rest_col = line.col + len(head) + (len(line.text[len(head):]) -
                                               len(line.text[len(head):].lstrip()))
            rest = rest.strip()
            if head.startswith("."):
                self._directive(line, head, rest, rest_col, evaluate, segments, symbols, meta)
            else:
                pending.append((line, head, _split_operands(rest, rest_col)))
        config = self._resolve_config(self.config_line or 1)
        for line, mnemonic, operands in pending:
            code.append(self._instruction(line, mnemonic, operands, evaluate))
        program = Program(config, code, segments, symbols, meta)
        try:
            program.validate()
        except ContainerError as exc:
            raise AsmError(str(exc), self.filename, 0, 0) from None
        return program

    def _resolve_config(self, line: _Line | int) -> ChipConfig:
        if self.cli_config is not None and self.config is not None \
                and self.cli_config != self.config:
            raise self.error(f"the program's .config ({self.config.name}) differs from --config "
                             f"({self.cli_config.name})", line)
        return self.config or self.cli_config or PRESETS["default"]

    def _directive(self, line: _Line, head: str, rest: str, col: int, evaluate: _Evaluator,
                   segments: list[Segment], symbols: list[Symbol], meta: dict[str, Any]) -> None:
        try:
            if head == ".const":
                name, eq, expr = rest.partition("=")
                name = name.strip()
                if not eq or not _IDENT.match(name):
                    raise self.error("expected .const NAME = EXPRESSION", line, col)
                if name in self.names:
                    raise self.error(f"name {name!r} is already defined", line, col)
                expr_col = col + len(rest) - len(rest.partition("=")[2].lstrip())
                try:
                    self.names[name] = evaluate.integer(expr)
                except ValueError as exc:
                    raise self.error(str(exc), line, expr_col) from None
            elif head == ".config":
                if self.config is not None:
                    raise self.error(".config given twice", line)
                self.config_line = line
                if rest.startswith("{"):
                    self.config = ChipConfig.from_dict(json.loads(rest))
                elif rest in PRESETS:
                    self.config = PRESETS[rest]
                else:
                    raise self.error(f"unknown config preset {rest!r} "
                                     f"(presets: {', '.join(PRESETS)})", line, col)
            elif head in (".input", ".output"):
                symbols.append(self._symbol(line, head[1:], rest, col, evaluate))
            elif head == ".data":
                ops = _split_operands(rest, col)
                if len(ops) < 3:
                    raise self.error("expected .data ADDRESS, DTYPE, VALUE, ...", line, col)
                dtype = ops[1][0]
                if dtype not in SYMBOL_DTYPES:
                    raise self.error(f"unknown dtype {dtype!r} (known: "
                                     f"{', '.join(SYMBOL_DTYPES)})", line, ops[1][1])
                values = [self._value(line, text, c, evaluate) for text, c in ops[2:]]
                info = np.iinfo(SYMBOL_DTYPES[dtype]) if dtype != "float32" else None
                for (text, c), v in zip(ops[2:], values, strict=True):
                    if info is not None and not (isinstance(v, int) and info.min <= v <= info.max):
                        raise self.error(f"value {text} does not fit {dtype}", line, c)
                    if info is None and not isinstance(v, (int, float)):
                        raise self.error(f"value {text} is not a number", line, c)
                data = np.array(values, dtype=SYMBOL_DTYPES[dtype]).tobytes()
                segments.append(Segment(self._address(line, ops[0], evaluate), data))
            elif head == ".bytes":
                ops = _split_operands(rest, col)
                if len(ops) != 2 or not (ops[1][0].startswith('"') and ops[1][0].endswith('"')):
                    raise self.error('expected .bytes ADDRESS, "HEX"', line, col)
                try:
                    data = bytes.fromhex(ops[1][0][1:-1])
                except ValueError:
                    raise self.error("invalid hex string", line, ops[1][1]) from None
                segments.append(Segment(self._address(line, ops[0], evaluate), data))
            elif head == ".meta":
                value = json.loads(rest)
                if not isinstance(value, dict):
                    raise self.error(".meta takes a JSON object", line, col)
                meta.update(value)
            else:
                raise self.error(f"unknown directive {head!r}", line)
        except json.JSONDecodeError as exc:
            raise self.error(f"invalid JSON: {exc.msg}", line, col + exc.pos) from None
        except ConfigError as exc:
            raise self.error(str(exc), line, col) from None

    def _address(self, line: _Line, operand: tuple[str, int], evaluate: _Evaluator) -> int:
        value = self._value(line, operand[0], operand[1], evaluate)
        if not isinstance(value, int) or value < 0:
            raise self.error(f"expected a DRAM byte address, got {operand[0]!r}", line, operand[1])
        return value

    def _value(self, line: _Line, text: str, col: int, evaluate: _Evaluator) -> Any:
        try:
            return evaluate(text)
        except ValueError as exc:
            raise self.error(str(exc), line, col) from None

    def _symbol(self, line: _Line, kind: str, rest: str, col: int,
                evaluate: _Evaluator) -> Symbol:
        ops = _split_operands(rest, col)
        if not ops or not _IDENT.match(ops[0][0]):
            raise self.error(f"expected .{kind} NAME, addr=..., shape=(...), dtype=...", line, col)
        args: dict[str, Any] = {}
        for text, c in ops[1:]:
            key, eq, value = text.partition("=")
            key = key.strip()
            if not eq or key not in ("addr", "shape", "dtype", "scale", "zero_point"):
                raise self.error(f"expected addr=, shape=, dtype=, scale= or zero_point=, "
                                 f"got {text!r}", line, c)
            args[key] = value.strip() if key == "dtype" else self._value(line, value, c, evaluate)
        for key in ("addr", "shape", "dtype"):
            if key not in args:
                raise self.error(f".{kind} {ops[0][0]}: missing {key}=", line, col)
        shape = args["shape"]
        if isinstance(shape, int):
            shape = (shape,)
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise self.error(f".{kind} {ops[0][0]}: shape must be a tuple of non-negative "
                             "integers", line, col)
        if not isinstance(args["addr"], int):
            raise self.error(f".{kind} {ops[0][0]}: addr must be an integer", line, col)
        if not isinstance(args.get("scale", 0.0), (int, float)) \
                or not isinstance(args.get("zero_point", 0), int):
            raise self.error(f".{kind} {ops[0][0]}: scale must be a number and zero_point an "
                             "integer", line, col)
        if args["dtype"] not in SYMBOL_DTYPES:
            raise self.error(f"unknown dtype {args['dtype']!r} (known: "
                             f"{', '.join(SYMBOL_DTYPES)})", line, col)
        scale = args.get("scale")
        return Symbol(ops[0][0], kind, args["addr"], shape, args["dtype"],
                      scale=float(scale) if scale is not None else None,
                      zero_point=int(args.get("zero_point", 0)))

    def _instruction(self, line: _Line, mnemonic: str, operands: list[tuple[str, int]],
                     evaluate: _Evaluator) -> Instruction:
        op = BY_MNEMONIC.get(mnemonic.lower())
        if op is None:
            raise self.error(f"unknown mnemonic {mnemonic!r} (known: "
                             f"{', '.join(BY_MNEMONIC)})", line)
        fields = {f.name: f for f in op.fields}
        values: dict[str, int] = {}
        flags: set[str] = set()
        position = 0
        for text, col in operands:
            if text in TOKEN_FLAGS:
                flags.add(text)
                continue
            key, eq, value = text.partition("=")
            if eq and _IDENT.match(key.strip()):
                name, text_value = key.strip(), value.strip()
                vcol = col + text.index("=") + 1 + (len(value) - len(value.lstrip()))
                if name not in fields:
                    raise self.error(f"{op.mnemonic} has no field {name!r} (fields: "
                                     f"{', '.join(fields) or 'none'})", line, col)
            else:
                if position >= len(op.fields):
                    raise self.error(f"{op.mnemonic} takes {len(op.fields)} operands", line, col)
                name, text_value, vcol = op.fields[position].name, text, col
                position += 1
            if name in values:
                raise self.error(f"field {name!r} given twice", line, col)
            values[name] = self._field_value(line, fields[name], text_value, vcol, evaluate)
        missing = [f.name for f in op.fields if f.name not in values and f.min is not None]
        for f in op.fields:
            values.setdefault(f.name, f.lo if f.kind is not Kind.SINT else 0)
        if missing:
            raise self.error(f"{op.mnemonic}: missing field {missing[0]!r}", line)
        insn = Instruction(op, values, frozenset(flags))
        try:
            check(insn)
        except EncodingError as exc:
            raise self.error(str(exc), line) from None
        return insn

    def _field_value(self, line: _Line, f: Any, text: str, col: int,
                     evaluate: _Evaluator) -> int:
        if f.kind is Kind.ENUM:
            assert f.enum is not None
            names = {e.name.lower(): int(e) for e in f.enum}
            if text.lower() in names:
                return names[text.lower()]
            if not re.match(r"^[-+(0-9]", text):
                raise self.error(f"field {f.name!r}: unknown value {text!r} (one of "
                                 f"{', '.join(names)})", line, col)
        if f.kind is Kind.LOCAL:
            mem, colon, row = text.partition(":")
            if colon and mem.strip().lower() in ("sp", "acc"):
                row_value = self._value(line, row, col + len(mem) + 1, evaluate)
                if not isinstance(row_value, int) or not 0 <= row_value <= 0xFFFF:
                    raise self.error(f"field {f.name!r}: row {row.strip()} out of range "
                                     "0..65535", line, col)
                return (int(Mem[mem.strip().upper()]) << 16) | row_value
            raise self.error(f"field {f.name!r}: expected a local address sp:ROW or acc:ROW, "
                             f"got {text!r}", line, col)
        value = self._value(line, text, col, evaluate)
        if not isinstance(value, int):
            raise self.error(f"field {f.name!r}: expected an integer, got {text!r}", line, col)
        if f.kind is Kind.UINT and f.bits == 32 and -(1 << 31) <= value < 0:
            value &= 0xFFFFFFFF  # negative int32 immediates are written naturally
        if not f.lo <= value <= f.hi:
            raise self.error(f"field {f.name!r} = {value} out of range {f.lo}..{f.hi}", line, col)
        return value


def assemble(source: str, filename: str = "<input>", config: ChipConfig | None = None) -> Program:
    return Assembler(source, filename, config).assemble()


def assemble_file(path: str | Path, config: ChipConfig | None = None) -> Program:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AsmError("file not found", str(path), 0, 0) from None
    except (UnicodeDecodeError, IsADirectoryError, OSError) as exc:
        raise AsmError(f"cannot read: {exc}", str(path), 0, 0) from None
    return assemble(text, str(path), config)


# Disassembly ---------------------------------------------------------------------------

def format_operand(f: Any, value: int) -> str:
    if f.kind is Kind.LOCAL:
        return f"{local_mem(value).name.lower()}:{local_row(value)}"
    if f.kind is Kind.ENUM:
        return f.enum(value).name.lower()
    if f.name in _HEX_FIELDS:
        return f"{value:#x}" if value >= 0 else f"-{-value:#x}"
    return str(value)


def format_instruction(insn: Instruction) -> str:
    """One instruction in canonical form: every field by name, then its token flags."""
    parts = [f"{f.name}={format_operand(f, insn.values[f.name])}" for f in insn.op.fields]
    parts += [flag for flag in TOKEN_FLAGS if flag in insn.flags]
    text = f"{insn.mnemonic:<8}{', '.join(parts)}".rstrip()
    if "imm" in insn.values and insn.values.get("dtype") == 1 and insn.op.opcode == Op.BINARY:
        text += f"  ; imm = {bits_f32(insn.values['imm']):g}"
    return text


def disassemble(program: Program, with_data: bool = True, with_hex: bool = False) -> str:
    """Program text that assembles back to the same bytes; `with_hex` adds each instruction's
    16 bytes (first byte first) to its pc comment."""
    cfg = program.config
    preset_name = next((name for name, p in PRESETS.items() if p == cfg), None)
    config_text = preset_name or json.dumps(cfg.to_dict(), sort_keys=True)
    lines = [f"; Dozen program: {len(program.code)} instructions, chip {cfg.name!r} "
             f"(n={cfg.n})", f".config {config_text}"]
    for sym in program.symbols:
        extra = f", scale={sym.scale!r}, zero_point={sym.zero_point}" if sym.scale is not None \
            else ""
        lines.append(f".{sym.kind} {sym.name}, addr={sym.addr:#x}, shape={tuple(sym.shape)!r}, "
                     f"dtype={sym.dtype}{extra}")
    for seg in program.segments:
        if with_data:
            lines.append(f'.bytes {seg.addr:#x}, "{seg.data.hex()}"')
        else:
            lines.append(f"; data segment at {seg.addr:#x}: {len(seg.data)} bytes")
    if program.meta:
        lines.append(f".meta {json.dumps(program.meta, sort_keys=True)}")
    width = len(str(max(len(program.code) - 1, 0)))
    depths = _loop_depths(program.code)
    texts = ["  " * depth + format_instruction(insn) for insn, depth in zip(program.code, depths,
                                                                            strict=True)]
    column = max((len(t) for t in texts), default=0)
    for pc, (text, insn) in enumerate(zip(texts, program.code, strict=True)):
        encoding = f"  {insn.encode().hex()}" if with_hex else ""
        lines.append(f"    {text:<{column}}  ; {pc:>{width}}{encoding}")
    return "\n".join(lines) + "\n"


def _loop_depths(code: list[Instruction]) -> list[int]:
    """How many LOOP bodies enclose each instruction, to indent the disassembly."""
    depths, ends = [], []  # ends: pc just past each open loop body
    for pc, insn in enumerate(code):
        ends = [end for end in ends if end > pc]
        depths.append(len(ends))
        if insn.op.opcode == Op.LOOP:
            ends.append(pc + 1 + insn.values["body"])
    return depths
