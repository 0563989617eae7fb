"""`dozen sim`: run a `.dzn` program on the cycle-level simulator and print its counters."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from frontend.npy_args import load_inputs, name_file_pairs, save_npy
from frontend.tables import format_table
from isa.asm import assemble_file
from isa.config import load_config
from isa.container import Program
from isa.errors import ContainerError, InputError
from simulator import DEFAULT_MAX_CYCLES, SimulationError, Simulator
from simulator.report import hot_instructions, summary_rows, unit_rows


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "sim", parents=[common], help="simulate a .dzn program cycle by cycle; print counters",
        description="Run a .dzn program on the cycle-level simulator. Inputs not given are "
                    "left zero. A fault (deadlock, out-of-bounds access, ...) exits with 1.")
    parser.add_argument("program", type=Path, help="program to run (.dzn, or .s to assemble "
                                                   "it first)")
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                        help="an input tensor (repeatable)")
    parser.add_argument("--output", "-o", action="append", default=[], metavar="NAME=FILE.npy",
                        help="write an output tensor to a .npy file (repeatable)")
    parser.add_argument("--trace", type=Path, metavar="OUT.json",
                        help="write a Chrome trace (open it in ui.perfetto.dev)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", type=int, nargs="?", const=10, metavar="N",
                        help="list the N instructions (default 10) that kept their units "
                             "busiest or waited longest on tokens")
    parser.add_argument("--check-races", action="store_true",
                        help="report units touching the same memory while both are busy "
                             "(no token ordering them); exit 1 if any")
    parser.add_argument("--max-cycles", type=int, default=DEFAULT_MAX_CYCLES, metavar="N",
                        help=f"stop with a fault after N cycles (default {DEFAULT_MAX_CYCLES:,})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.program.suffix == ".s":  # assemble on the fly: handy while writing a kernel
        program = assemble_file(args.program)
    else:
        program = Program.load(args.program)
    note = []
    if args.config is not None:
        cfg = load_config(args.config)
        if cfg != program.config:
            note.append(f"simulating on chip {cfg.name!r}; the program was built for "
                        f"{program.config.name!r}")
            program = dataclasses.replace(program, config=cfg)
            try:
                program.validate()
            except ContainerError as exc:
                raise InputError(f"the program does not fit chip {cfg.name!r}: {exc}") from None
    if args.max_cycles < 1:
        raise InputError("--max-cycles must be at least 1")
    inputs = load_inputs(args.input)
    outputs = name_file_pairs(args.output, "output")
    known = {s.name for s in program.outputs}
    for name in outputs:
        if name not in known:
            raise InputError(f"no output named {name!r} (outputs: "
                             f"{', '.join(sorted(known)) or 'none'})")
    with tqdm(desc="simulating", unit=" insn", file=sys.stderr, disable=None,
              leave=False) as bar:
        def progress(instructions: int, cycle: int) -> None:
            bar.set_postfix_str(f"cycle {cycle:,}", refresh=False)
            bar.update(instructions)

        sim = Simulator(program, max_cycles=args.max_cycles, trace=args.trace is not None,
                        progress=progress, check_races=args.check_races)
        try:
            result = sim.run(inputs)
        except SimulationError as exc:
            if args.trace is not None and exc.partial is not None:
                exc.partial.write_trace(args.trace)
                print(f"trace up to the fault: {args.trace} (open it in ui.perfetto.dev)")
            raise
    if result.missing_inputs:
        note.append(f"inputs not given, left zero: {', '.join(result.missing_inputs)}")
    for name, path in outputs.items():
        save_npy(path, result.outputs[name])
    if args.trace is not None:
        result.write_trace(args.trace)
    rep = result.report()
    races = result.races or []
    status = 1 if races else 0
    if args.check_races:
        rep["races"] = [str(r) for r in races]
    hot = hot_instructions(result, args.profile) if args.profile else []
    if args.profile:
        rep["profile"] = hot
    if args.json:
        rep["program"] = str(args.program)
        rep["missing_inputs"] = result.missing_inputs
        rep["outputs"] = {name: _describe(a) for name, a in result.outputs.items()}
        if args.trace is not None:
            rep["trace"] = str(args.trace)
        print(json.dumps(rep, indent=2))
        for line in note:
            sys.stderr.write(f"note: {line}\n")
        return status
    for line in note:
        print(f"note: {line}")
    print(format_table(["metric", "value"], summary_rows(rep),
                       title=f"{args.program} on chip {program.config.name!r} "
                             f"(n={program.config.n}, {program.config.clock_mhz:g} MHz)"))
    print(format_table(["unit", "instructions", "busy", "stalled on token", "idle", "busy %"],
                       unit_rows(rep)))
    print(format_table(["opcode", "count"], sorted(rep["instructions_by_opcode"].items())))
    if hot:
        print(format_table(["pc", "unit", "issues", "busy", "stalled on token", "busy %",
                            "instruction"],
                           [(h["pc"], h["unit"], h["issues"], h["busy"], h["stalled_on_token"],
                             f"{h['busy_share']:.1%}", h["instruction"]) for h in hot],
                           title=f"Hottest {len(hot)} instructions"))
    if result.outputs:
        rows = [(name, "x".join(map(str, a.shape)), str(a.dtype), *_range(a),
                 str(outputs[name]) if name in outputs else "")
                for name, a in result.outputs.items()]
        print(format_table(["output", "shape", "dtype", "min", "max", "written to"], rows))
    if args.trace is not None:
        print(f"trace: {args.trace} (open it in ui.perfetto.dev)")
    if args.check_races:
        print(f"races: {len(races)} found" + ("" if races else " (the units never touch the "
                                                            "same memory at the same time)"))
        for race in races:
            print(f"  race: {race}")
    return status


def _range(a: np.ndarray) -> tuple[Any, Any]:
    """Min and max (NaN-aware; non-finite values as text so JSON stays valid)."""
    if a.size == 0:
        return "", ""
    values = []
    for fn in (np.nanmin, np.nanmax):
        v = fn(a).item() if not np.all(np.isnan(a)) else float("nan")
        values.append(v if not isinstance(v, float) or np.isfinite(v) else str(v))
    return values[0], values[1]


def _describe(a: np.ndarray) -> dict[str, Any]:
    lo, hi = _range(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "min": lo, "max": hi}
