"""`dozen examples`: assemble every example program and list them as a table."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from frontend.tables import format_table
from isa.asm import assemble, assemble_file, disassemble
from isa.config import load_config
from isa.container import Program, write_atomic
from isa.errors import InputError
from isa.table import INSN_BYTES

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class Example:
    """One assembled example and what the round trip asm -> disasm -> asm gave."""

    path: Path
    program: Program
    binary: bytes
    round_trip_ok: bool


def build_examples(directory: Path = EXAMPLES_DIR, out_dir: Path | None = None) -> list[Example]:
    """Assemble each `*.s` in `directory`, disassemble and re-assemble it, and optionally save
    the `.dzn` (and the disassembly as `.dis.s`) into `out_dir`."""
    sources = sorted(directory.glob("*.s"))
    if not sources:
        raise InputError(f"no example programs (*.s) in {directory}")
    examples = []
    for source in sources:
        program = assemble_file(source)
        binary = program.to_bytes()
        text = disassemble(program)
        again = assemble(text, f"{source.stem}.dis.s").to_bytes()
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            program.save(out_dir / f"{source.stem}.dzn")
            write_atomic(out_dir / f"{source.stem}.dis.s", text.encode())
        examples.append(Example(source, program, binary, again == binary))
    return examples


def example_rows(examples: list[Example]) -> list[list[object]]:
    return [[e.path.name, e.program.config.name, len(e.program.code),
             len(e.program.code) * INSN_BYTES,
             sum(len(s.data) for s in e.program.segments), len(e.program.symbols),
             len(e.binary), "exact" if e.round_trip_ok else "DIFFERS"] for e in examples]


HEADERS = ["file", "chip", "instructions", "code bytes", "data bytes", "symbols", ".dzn bytes",
           "asm->disasm->asm"]


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("examples", parents=[common],
                                   help="assemble the example programs and list them")
    parser.add_argument("--dir", type=Path, default=EXAMPLES_DIR,
                        help=f"folder of .s programs (default: {EXAMPLES_DIR})")
    parser.add_argument("-o", "--out-dir", type=Path,
                        help="also write each .dzn and its disassembly here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise InputError(f"examples folder not found: {args.dir}")
    examples = build_examples(args.dir, args.out_dir)
    if args.config is not None:
        cfg = load_config(args.config)
        examples = [e for e in examples if e.program.config == cfg]
    print(format_table(HEADERS, example_rows(examples),
                       title=f"Example programs in {args.dir}"
                             + (f" for chip {args.config!r}" if args.config else "")))
    return 0 if all(e.round_trip_ok for e in examples) else 1
