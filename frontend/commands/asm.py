"""`dozen asm`: assemble a `.s` program into a `.dzn` container."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isa.asm import assemble, assemble_file
from isa.config import load_config
from isa.errors import InputError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("asm", parents=[common],
                                   help="assemble a .s program into a .dzn binary")
    parser.add_argument("source", type=Path, help="assembly file (.s), or - for stdin")
    parser.add_argument("-o", "--output", type=Path,
                        help="output .dzn file (default: the source with suffix .dzn)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config is not None else None
    if str(args.source) == "-":
        if args.output is None:
            raise InputError("reading the program from stdin needs -o OUTPUT.dzn")
        program = assemble(sys.stdin.read(), "<stdin>", cfg)
        out = args.output
    else:
        program = assemble_file(args.source, cfg)
        out = args.output or args.source.with_suffix(".dzn")
        if out.resolve() == args.source.resolve():
            raise InputError(f"output {out} would overwrite the source; choose another -o")
    program.save(out)
    size = out.stat().st_size
    print(f"{out}: {len(program.code)} instructions, {len(program.segments)} data segments, "
          f"{len(program.symbols)} symbols, {size} bytes (chip {program.config.name!r})")
    return 0
