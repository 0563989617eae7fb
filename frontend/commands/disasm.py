"""`dozen disasm`: print a `.dzn` program as assembly that re-assembles to the same bytes."""

from __future__ import annotations

import argparse
from pathlib import Path

from isa.asm import disassemble
from isa.config import load_config
from isa.container import Program, write_atomic
from isa.errors import InputError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("disasm", parents=[common],
                                   help="disassemble a .dzn binary into assembly text")
    parser.add_argument("binary", type=Path, help="program file (.dzn)")
    parser.add_argument("--no-data", action="store_true",
                        help="summarise data segments instead of printing their bytes")
    parser.add_argument("--hex", action="store_true",
                        help="show each instruction's 16 bytes in hex after its pc")
    parser.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    program = Program.load(args.binary)
    if args.config is not None:
        cfg = load_config(args.config)
        if cfg != program.config:
            raise InputError(f"{args.binary} was built for chip {program.config.name!r}, "
                             f"not for --config {args.config} ({cfg.name!r})")
    text = disassemble(program, with_data=not args.no_data, with_hex=args.hex)
    if args.output is not None:
        write_atomic(args.output, text.encode())
    else:
        print(text, end="")
    return 0
