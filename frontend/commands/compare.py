"""`dozen compare`: run one graph on several backends and hold each against the numpy reference.

    dozen compare model.onnx [--backends numpy,sim,opencl,llvm,rtl] [--quantize int8] [--json]

Prints backend, device, max absolute and relative error, bit-exact yes/no, wall time (for
llvm and opencl of a second run, once their kernels are compiled) and, for the simulator,
cycles and MAC utilisation. `rtl` runs the chip's RTL (the `tiny` chip unless --config
says otherwise; integer programs only, a float one is that row's error). Exit code 1 when
a backend disagrees beyond
tolerance: integer outputs must be bit-exact, float32 outputs within `FLOAT_RTOL` of the
largest reference magnitude (float sums may be reassociated, transcendental functions
differ by a few ulps). `compare_graph` is the same check as a function (tests, scripts).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from compiler.backends import available_backends, get_backend, load_plugins
from compiler.ir import NUMPY_DTYPES, Graph
from frontend.devices import add_device_option, apply_device
from frontend.tables import format_table
from isa.errors import DozenError, InputError

if TYPE_CHECKING:
    from isa.config import ChipConfig
    from isa.container import Program

FLOAT_RTOL = 1e-3
WARM_TIMED = ("llvm", "opencl")  # backends whose first run includes compiling
DEFAULT_BACKENDS = "numpy,sim,opencl,llvm"
HEADERS = ["backend", "device", "max abs err", "max rel err", "bit-exact", "ok", "wall ms",
           "cycles", "MAC util"]


class ComparisonFailed(DozenError):
    """A backend disagreed with the reference: exit code 1."""

    exit_code = 1


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "compare", parents=[common], help="run a model on several backends and compare results",
        description="Run the same graph on each backend and compare with the numpy reference. "
                    "Exits with 1 when a backend disagrees beyond tolerance.")
    parser.add_argument("model", help="an ONNX model (.onnx) or a program compiled from one "
                                      "(.dzn: `sim` and `rtl` run it, the others its source "
                                      "model)")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS,
                        help=f"comma-separated backends (default: {DEFAULT_BACKENDS}; the "
                             "registered ones are listed on error)")
    parser.add_argument("--quantize", choices=["int8"], help="quantise the model to int8 first")
    parser.add_argument("--calibrate", type=Path, metavar="DATA.npy",
                        help="calibration samples for --quantize (random when none)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                        help="an input array (random inputs of the right shape otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_device_option(parser)
    parser.set_defaults(func=run)


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the graph's shapes: normal floats, full-range int8, small int32."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, node in graph.inputs.items():
        if node.dtype == "float32":
            out[name] = rng.standard_normal(node.shape).astype(np.float32)
        elif node.dtype == "int8":
            out[name] = rng.integers(-128, 128, node.shape).astype(np.int8)
        else:
            out[name] = rng.integers(-1000, 1000, node.shape).astype(np.int32)
    return out


def errors(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[float, float, bool,
                                                                             bool]:
    """(max abs error, max error relative to the reference's scale, bit-exact, within tol)."""
    worst_abs = worst_rel = 0.0
    exact = within = True
    for name, want in ref.items():
        have = np.asarray(got.get(name))
        if have.shape != want.shape or have.dtype != want.dtype:
            return math.inf, math.inf, False, False
        exact &= want.tobytes() == have.tobytes()
        w64, h64 = want.astype(np.float64), have.astype(np.float64)
        nan_w, nan_h = np.isnan(w64), np.isnan(h64)
        if not np.array_equal(nan_w, nan_h):
            return math.inf, math.inf, False, False
        finite = ~nan_w
        diff = np.abs(np.where(finite, h64, 0) - np.where(finite, w64, 0))
        diff = np.where(np.isinf(w64) & (w64 == h64), 0, diff)
        abs_err = float(np.nan_to_num(diff, nan=math.inf).max()) if diff.size else 0.0
        scale = float(np.abs(w64[finite & ~np.isinf(w64)]).max(initial=0.0))
        rel = abs_err / max(scale, 1e-30) if abs_err else 0.0
        worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel)
        if want.dtype == np.float32:
            within &= rel <= FLOAT_RTOL
        else:
            within &= abs_err == 0
    return worst_abs, worst_rel, exact, within


def _device_of(name: str, selector: str | None = None) -> str:
    try:
        if name == "opencl":
            from compiler.opencl_runtime import runtime

            return runtime(selector).name
        if name == "llvm":
            import llvmlite.binding as llvm

            from compiler.llvm_jit import jit

            return f"{llvm.get_host_cpu_name()} x{jit().threads} threads (LLVM JIT)"
    except DozenError:
        return "unavailable"
    return {"numpy": "host (reference)", "sim": "cycle-level simulator",
            "rtl": "chip RTL (Amaranth simulator)"}.get(name, "")


def compare_graph(graph: Graph, inputs: dict[str, np.ndarray], backends: list[str],
                  overrides: dict[str, Any] | None = None, **options: Any
                  ) -> list[dict[str, Any]]:
    """One row per backend (keys as HEADERS, lower-case with underscores, plus `error`).

    `overrides` maps a backend name to a function used instead of the registered one
    (a .dzn program runs on `sim` that way)."""
    load_plugins("frontend")
    reference = get_backend("numpy")(graph, inputs)
    rows = []
    for name in tqdm(backends, desc="backends", unit="backend", file=sys.stderr, disable=None,
                     leave=False):
        fn = (overrides or {}).get(name) or get_backend(name)
        stats: dict[str, Any] = {}
        kwargs = dict(options)
        if "stats" in inspect.signature(fn).parameters:
            kwargs["stats"] = stats
        row: dict[str, Any] = {"backend": name, "device": _device_of(name, options.get("device"))}
        started = time.perf_counter()
        try:
            got = fn(graph, inputs, **kwargs)
        except Exception as exc:  # a backend that breaks is a failed comparison, not a crash
            text = str(exc) if isinstance(exc, DozenError) else f"{type(exc).__name__}: {exc}"
            row.update(error=text.splitlines()[0] if text else type(exc).__name__, ok=False,
                       bit_exact=False)
            rows.append(row)
            continue
        row["wall_ms"] = (time.perf_counter() - started) * 1e3
        if name in WARM_TIMED:  # JIT backends: time a second run, after compiling
            started = time.perf_counter()
            fn(graph, inputs, **kwargs)
            row["wall_ms"] = (time.perf_counter() - started) * 1e3
        abs_err, rel_err, exact, ok = errors(reference, got)
        row.update(max_abs_err=abs_err, max_rel_err=rel_err, bit_exact=exact, ok=ok,
                   cycles=stats.get("cycles"),
                   mac_util=stats.get("mac_utilisation", stats.get("utilisation")))
        rows.append(row)
    return rows


def load_model(path: str, quantize: str | None, calibrate: Path | None, seed: int
               ) -> tuple[Graph, Any]:
    """The graph to compare and, for a .dzn, the compiled program the `sim` backend runs.

    A .dzn holds only chip code; the other backends need the graph it was compiled from,
    which `dozen compile` records as the program's `source` (pass the same --quantize)."""
    from frontend.commands.compile import load_graph

    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such file")
    if file.suffix.lower() != ".dzn":
        return load_graph(file, quantize, calibrate, seed), None
    from isa.container import Program

    program = Program.load(file)
    source = program.meta.get("source")
    if not source or not Path(source).exists():
        raise InputError(f"{path}: the program does not name an existing source model "
                         f"(meta source={source!r}); compare the .onnx it was compiled from")
    graph = load_graph(Path(source), quantize, calibrate, seed)
    want = {s.name: (tuple(s.shape), s.dtype) for s in program.inputs}
    have = {name: (tuple(shape), dtype) for name, (shape, dtype) in graph.input_specs().items()}
    if want != have:
        raise InputError(f"{path}: its inputs {want} differ from those of {source} {have}; "
                         "was it compiled with --quantize?")
    return graph, program


def read_inputs(graph: Graph, specs: list[str], seed: int) -> dict[str, np.ndarray]:
    inputs = random_inputs(graph, seed)
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or name not in graph.inputs:
            raise InputError(f"--input {spec!r}: expected NAME=FILE.npy with NAME one of "
                             f"{', '.join(graph.inputs)}")
        try:
            array = np.load(file)
        except (OSError, ValueError) as exc:
            raise InputError(f"--input {spec!r}: cannot read {file}: {exc}") from exc
        node = graph.inputs[name]
        if array.shape != node.shape:
            raise InputError(f"--input {name}: shape {list(array.shape)}, the model expects "
                             f"{list(node.shape)}")
        inputs[name] = array.astype(NUMPY_DTYPES[node.dtype])
    return inputs


def run(args: argparse.Namespace) -> int:
    device = apply_device(args)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    load_plugins("frontend")
    known = available_backends()
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise InputError(f"unknown backend {unknown[0]!r} (available: {', '.join(known)})")
    if "opencl" in backends:  # a bad --device is bad input (exit 2), not a disagreement
        from compiler.opencl_runtime import BackendUnavailable, select_device

        try:
            select_device(device)
        except BackendUnavailable:
            pass  # reported in the table as that backend's failure
    graph, program = load_model(args.model, args.quantize, args.calibrate, args.seed)
    inputs = read_inputs(graph, args.input, args.seed)
    options: dict[str, Any] = {"device": device} if device else {}
    if args.config:
        from isa.config import load_config

        options["cfg"] = load_config(args.config)
    overrides = {}
    if program is not None:
        from frontend.backend_sim import simulate

        def run_program(graph: Graph, inputs: dict[str, np.ndarray], stats: dict[str, Any],
                        **_: Any) -> dict[str, np.ndarray]:
            return simulate(program, inputs, stats)

        overrides["sim"] = run_program
    if "rtl" in backends:
        overrides["rtl"] = _rtl_runner(program, args.model, options.get("cfg"))
    rows = compare_graph(graph, inputs, backends, overrides=overrides, **options)
    for row in rows:  # name the chip the rtl row ran: tiny unless --config or the .dzn says
        if row["backend"] == "rtl":
            chip = program.config if program is not None else options.get("cfg")
            row["device"] += f", {chip.name if chip is not None else 'tiny'} chip"
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(table(rows, title=f"{args.model}: {len(backends)} backends vs numpy reference"))
    failed = [r["backend"] for r in rows if not r.get("ok")]
    if failed:
        raise ComparisonFailed(f"{', '.join(failed)} disagreed with the numpy reference"
                               + "".join(f"; {r['backend']}: {r['error']}" for r in rows
                                         if r.get("error")))
    return 0


def _rtl_runner(program: Program | None, what: str, cfg: ChipConfig | None
                ) -> Callable[..., dict[str, np.ndarray]]:
    """The `rtl` row: the given program, or the graph compiled for `cfg` (default tiny), on
    the RTL; a float program is a one-line error before the HDL simulation starts."""
    from frontend.rtl_run import run_program_on_rtl

    def run_rtl(graph: Graph, inputs: dict[str, np.ndarray], stats: dict[str, Any],
                **_: Any) -> dict[str, np.ndarray]:
        chip_program = program
        if chip_program is None:
            from compiler.lower import compile_graph
            from isa.config import load_config

            chip_program = compile_graph(graph, cfg if cfg is not None else load_config("tiny"))
        return run_program_on_rtl(chip_program, inputs, what, stats)

    return run_rtl


def table(rows: list[dict[str, Any]], title: str | None = None) -> str:
    keys = [h.lower().replace(" ", "_").replace("-", "_") for h in HEADERS]
    keys[keys.index("mac_util")] = "mac_util"
    body = []
    for r in rows:
        cells = []
        for key in keys:
            value = r.get(key)
            if key == "mac_util" and isinstance(value, float):
                value = f"{value:.1%}"
            cells.append(value)
        body.append(cells)
    notes = "".join(f"{r['backend']}: error: {r['error']}\n" for r in rows if r.get("error"))
    return format_table(HEADERS, body, title=title) + notes
