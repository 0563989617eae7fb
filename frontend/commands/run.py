"""`dozen run`: run a model or a compiled program on a backend and summarise its outputs.

    dozen run model.onnx|model.dzn [--backend sim|rtl|numpy|...] [--input NAME=x.npy]
              [--output NAME=y.npy] [--quantize int8] [--trace out.json]

Inputs not given are random (of the right shapes and dtypes). A .dzn runs on the chip
backends only: `sim` (the cycle-level simulator) and `rtl` (the chip's RTL in Amaranth's
simulator, checked byte- and cycle-exact against `sim`; integer programs only, and slow,
so tiny programs). An .onnx model runs on any registered backend, the chip backends
compiling it first (`rtl` for the `tiny` chip unless --config says otherwise). The chip
backends print the simulator's counters too; `rtl` adds the RTL's hardware counters.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from compiler.backends import available_backends, get_backend, load_plugins
from frontend.commands.compile import (
    add_model_options,
    compile_with_progress,
    load_graph,
    random_inputs,
)
from frontend.npy_args import load_npy, name_file_pairs, save_npy
from frontend.tables import format_table
from isa.config import load_config
from isa.container import Program
from isa.errors import InputError

CHIP_BACKENDS = ("sim", "rtl")
RTL_DEFAULT_CONFIG = "tiny"  # the RTL simulates thousands of clocks a second


def backend_names() -> list[str]:
    load_plugins("frontend")
    return available_backends()


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "run", parents=[common], help="run a model (.onnx) or program (.dzn) on a backend",
        description="Run a model or compiled program; random inputs when none are given.")
    parser.add_argument("model", type=Path, help="an .onnx model or a compiled .dzn program")
    parser.add_argument("--backend", "-b", default="sim", metavar="NAME",
                        help="backend: sim, rtl, numpy, or any registered one (default sim)")
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                        help="an input tensor (repeatable)")
    parser.add_argument("--output", "-o", action="append", default=[], metavar="NAME=FILE.npy",
                        help="write an output tensor to a .npy file (repeatable)")
    parser.add_argument("--trace", type=Path, metavar="OUT.json",
                        help="sim: write a Perfetto/Chrome trace")
    add_model_options(parser)
    parser.set_defaults(func=run)


def _load(name: str, path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    value = load_npy(name, path)
    if tuple(value.shape) != tuple(shape):
        raise InputError(f"input {name}: shape {list(value.shape)}, expected {list(shape)}")
    return value.astype({"float32": np.float32, "int8": np.int8, "int32": np.int32,
                         "uint8": np.uint8}[dtype])


def run(args: argparse.Namespace) -> int:
    names = backend_names()
    if args.backend not in names:
        raise InputError(f"unknown backend {args.backend!r} (available: {', '.join(names)})")
    suffix = args.model.suffix.lower()
    stats: dict[str, Any] = {}
    program: Program | None = None
    if suffix == ".dzn":
        if args.backend not in CHIP_BACKENDS:
            raise InputError(f"a .dzn program runs on the chip backends "
                             f"({', '.join(CHIP_BACKENDS)}), not {args.backend!r}; give the "
                             ".onnx model instead")
        program = Program.load(args.model)
        if args.config is not None and load_config(args.config) != program.config:
            raise InputError(f"{args.model} was built for chip {program.config.name!r}; "
                             "recompile it for another chip")
        specs = {s.name: (tuple(s.shape), s.dtype) for s in program.inputs}
    elif suffix == ".onnx":
        graph = load_graph(args.model, args.quantize, args.calibrate, args.seed)
        specs = graph.input_specs()
    else:
        raise InputError(f"{args.model}: expected an .onnx model or a .dzn program")
    given = name_file_pairs(args.input, "input")
    for name in given:
        if name not in specs:
            raise InputError(f"no input named {name!r} (inputs: {', '.join(specs)})")
    inputs = random_inputs(specs, args.seed)
    for name, path in given.items():
        inputs[name] = _load(name, path, *specs[name])
    started = time.perf_counter()
    if args.backend in CHIP_BACKENDS:
        if program is None:
            default = RTL_DEFAULT_CONFIG if args.backend == "rtl" else None
            program = compile_with_progress(graph, load_config(args.config or default))
        outputs = _run_on_chip(program, inputs, args, stats)
    else:
        options: dict[str, Any] = {}
        if args.config is not None:
            options["cfg"] = load_config(args.config)
        outputs = get_backend(args.backend)(graph, inputs, **options)
    seconds = time.perf_counter() - started
    wanted = name_file_pairs(args.output, "output")
    for name, path in wanted.items():
        if name not in outputs:
            raise InputError(f"no output named {name!r} (outputs: {', '.join(outputs)})")
        save_npy(path, outputs[name])
    rows = []
    for name, a in outputs.items():
        a = np.asarray(a)
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        rows.append((name, "x".join(map(str, a.shape)) or "scalar", str(a.dtype),
                     float(finite.min()) if finite.size else "", float(finite.max())
                     if finite.size else "", float(np.abs(a).mean()) if a.size else "",
                     str(wanted.get(name, ""))))
    print(format_table(["output", "shape", "dtype", "min", "max", "mean |x|", "written to"],
                       rows, title=f"{args.model} on backend {args.backend!r} "
                                   f"({seconds:.2f} s)"))
    if stats:
        from simulator.report import summary_rows

        print(format_table(["counter", "value"], summary_rows(stats["report"])))
    if "rtl_counters" in stats:
        from frontend.rtl_run import counter_rows

        print(format_table(["RTL counter", "value"], counter_rows(stats),
                           title="the RTL's hardware counters (final DRAM and cycles equal "
                                 "the simulator's)"))
    if args.trace is not None and args.backend == "sim":
        print(f"trace: {args.trace} (open it in ui.perfetto.dev)")
    return 0


def _run_on_chip(program: Program, inputs: dict[str, np.ndarray], args: argparse.Namespace,
                 stats: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run a compiled program on the simulator or on the RTL, with a progress bar."""
    if args.backend == "rtl":
        from frontend.rtl_run import check_runs_on_rtl, run_program_on_rtl

        check_runs_on_rtl(program, str(args.model))  # before the slow part starts
        desc = f"running {len(program.code):,} instructions on the RTL"
    else:
        desc = f"simulating {len(program.code):,} instructions"
    bar = tqdm(total=1, desc=desc, file=sys.stderr, disable=None, leave=False)
    if args.backend == "rtl":
        outputs = run_program_on_rtl(program, inputs, str(args.model), stats)
    else:
        from frontend.backend_sim import simulate

        outputs = simulate(program, inputs, stats, args.trace)
    bar.update(1)
    bar.close()
    return outputs
