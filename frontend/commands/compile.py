"""`dozen compile`: an ONNX model to a .dzn program for the chip.

    dozen compile model.onnx -o model.dzn [--config PRESET|chip.toml] [--quantize int8]
                             [--calibrate data.npy]

The graph is scheduled into fused kernels and lowered to the 12-op ISA (tiling, scratchpad
allocation, double buffering with tokens, DRAM planning). `--quantize int8` quantises the
float model first, calibrated on `--calibrate` samples (random inputs when none are given).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compiler.ir import NUMPY_DTYPES, Graph
from compiler.lower import compile_graph
from frontend.tables import format_table
from isa.config import load_config
from isa.errors import InputError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "compile", parents=[common], help="compile an ONNX model to a .dzn chip program",
        description=__doc__.split("\n\n")[-1] if __doc__ else None)
    parser.add_argument("model", type=Path, help="the model (.onnx)")
    parser.add_argument("-o", "--output", type=Path, help="the program to write (.dzn; "
                        "default: the model's name with .dzn)")
    add_model_options(parser)
    parser.set_defaults(func=run)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", choices=["int8"], help="quantise the float model to int8")
    parser.add_argument("--calibrate", type=Path, metavar="DATA.npy",
                        help="calibration samples for --quantize (the model's input shape, "
                             "or a stack of them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random inputs (default 0)")


def random_inputs(specs: dict[str, tuple[tuple[int, ...], str]], seed: int
                  ) -> dict[str, np.ndarray]:
    """Random inputs of the right shapes: floats in [-1, 1), int8 over its range."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in specs.items():
        if dtype == "float32":
            out[name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif dtype == "int8":
            out[name] = rng.integers(-128, 128, shape).astype(np.int8)
        else:
            out[name] = rng.integers(-1000, 1000, shape).astype(NUMPY_DTYPES.get(dtype, dtype))
    return out


def calibration_samples(graph: Graph, path: Path | None, seed: int) -> list[dict[str, np.ndarray]]:
    specs = graph.input_specs()
    if path is None:
        return [random_inputs(specs, seed + i) for i in range(4)]
    if len(specs) != 1:
        raise InputError("--calibrate needs a model with exactly one input")
    name, (shape, _) = next(iter(specs.items()))
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"calibration file not found: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npy file ({exc})") from None
    data = np.asarray(data, np.float32)
    if data.shape == tuple(shape):
        return [{name: data}]
    if data.shape[1:] == tuple(shape):
        return [{name: d} for d in data]
    if shape and data.ndim == len(shape) and data.shape[1:] == tuple(shape[1:]):
        b = shape[0]
        return [{name: data[i:i + b]} for i in range(0, len(data) - b + 1, b)]
    raise InputError(f"calibration data {path} has shape {list(data.shape)}; the model's "
                     f"input {name!r} is {list(shape)}")


def load_graph(path: Path, quantize: str | None, calibrate: Path | None, seed: int) -> Graph:
    """An ONNX model as a Graph, quantised when asked."""
    if not path.exists():
        raise InputError(f"model not found: {path}")
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: expected an .onnx model")
    from frontend.onnx_import import load_onnx

    graph = load_onnx(str(path))
    if quantize:
        from frontend.quantize import quantize as quantise_graph

        graph = quantise_graph(graph, calibration_samples(graph, calibrate, seed))
    return graph


def compile_with_progress(graph: Graph, cfg, label: str = "compiling"):
    bar = tqdm(total=None, desc=label, unit="kernel", file=sys.stderr, disable=None,
               leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return compile_graph(graph, cfg, progress)
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    graph = load_graph(args.model, args.quantize, args.calibrate, args.seed)
    started = time.perf_counter()
    program = compile_with_progress(graph, cfg)
    seconds = time.perf_counter() - started
    out = args.output or args.model.with_suffix(".dzn")
    program.meta["source"] = str(args.model)
    program.save(out)
    rows = [("program", str(out)), ("chip", f"{cfg.name} (n={cfg.n})"),
            ("kernels", program.meta["kernels"]), ("instructions", len(program.code)),
            ("MACs", program.meta["macs"]),
            ("constant bytes", sum(len(s.data) for s in program.segments)),
            ("compile seconds", round(seconds, 3))]
    rows += [(f"input {s.name}", f"{s.dtype}{list(s.shape)}") for s in program.inputs]
    rows += [(f"output {s.name}", f"{s.dtype}{list(s.shape)}") for s in program.outputs]
    print(format_table(["", ""], rows, title=f"compiled {args.model}"))
    return 0
