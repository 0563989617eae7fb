"""The ISA compiler: MAC utilisation of compiled GEMMs and convolutions, compile and
simulation time of a ResNet-50-sized int8 network.

Every figure comes from a graph compiled by `compiler.lower.compile_graph` and run on the
simulator. References: the ideal cycle count of a GEMM (MACs / n^2) for utilisation;
ResNet-50 is built with the same primitive ops the Tensor API and ONNX importer emit
(`frontend.benchmarks._nets`). `--quick` shrinks the image (64x64 instead of 224x224).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from compiler import ir
from compiler.lower import compile_graph
from frontend.benchmarks import row
from frontend.benchmarks._nets import conv_layer, matmul, resnet50
from isa.config import ChipConfig
from simulator import Simulator

GEMM_TARGET = 0.95
CONV_TARGET = 0.75
COMPILE_TARGET_S = 10.0
SIMULATE_TARGET_S = 30.0


def gemm_utilisation(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """int8 1024^3 GEMM (int32 out) compiled from the IR; utilisation against the ideal."""
    size = 1024
    a = ir.input_("a", (size, size), "int8")
    b = ir.input_("b", (size, size), "int8")
    graph = ir.Graph({"a": a, "b": b}, {"c": matmul(a, b)})
    program = compile_graph(graph, cfg)
    rng = np.random.default_rng(0)
    inputs = {k: rng.integers(-128, 128, (size, size)).astype(np.int8) for k in ("a", "b")}
    result = Simulator(program).run(inputs)
    ideal = size ** 3 / cfg.peak_macs_per_cycle
    util = result.report()["mac_utilization"]
    return [row(f"compiled int8 GEMM {size}^3 ({cfg.name})", "MAC utilisation", round(util, 4),
                None, GEMM_TARGET),
            row(f"compiled int8 GEMM {size}^3 ({cfg.name})", "cycles vs ideal (MACs/n^2)",
                result.cycles, ideal, None)]


def _conv_layers(size: int) -> list[tuple[tuple[int, ...], int]]:
    """The distinct conv layers of ResNet-50 at `size`: ((cin, h, cout, k, stride), count)."""
    shapes: Counter[tuple[int, ...]] = Counter()
    h = size // 2
    shapes[(3, size, 64, 7, 2)] += 1
    h = (h + 2 - 3) // 2 + 1
    cin = 64
    for stage, count in enumerate((3, 4, 6, 3)):
        mid = 64 * 2 ** stage
        for i in range(count):
            stride = 2 if (i == 0 and stage > 0) else 1
            shapes[(cin, h, mid, 1, 1)] += 1
            shapes[(mid, h, mid, 3, stride)] += 1
            h2 = (h + 2 - 3) // stride + 1
            shapes[(mid, h2, mid * 4, 1, 1)] += 1
            if i == 0:
                shapes[(cin, h, mid * 4, 1, stride)] += 1
            h, cin = h2, mid * 4
    return list(shapes.items())


def conv_utilisation(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """MAC utilisation averaged over ResNet-50's conv layers (batch 1, int8, each layer
    compiled with its bias + ReLU + requantisation epilogue and simulated alone). Counts
    the convolution's own MACs: array lanes left idle by small images do not count."""
    size = 64 if quick else 224
    rng = np.random.default_rng(0)
    weighted, layers, macs_total, cycles_total = 0.0, 0, 0, 0
    for (cin, h, cout, k, stride), count in _conv_layers(size):
        graph, xin = conv_layer(cin, h, cout, k, stride, rng, bias_range=99)
        program = compile_graph(graph, cfg)
        result = Simulator(program).run({"x": xin})
        useful = program.meta["macs"]  # the conv's own MACs, not padded lanes
        util = useful / (cfg.peak_macs_per_cycle * result.cycles)
        weighted += util * count
        layers += count
        macs_total += useful * count
        cycles_total += result.cycles * count
    name = f"ResNet-50 conv layers {size}x{size} ({cfg.name})"
    return [row(name, "MAC utilisation, mean over layers", round(weighted / layers, 4), None,
                CONV_TARGET),
            row(name, "MAC utilisation, all conv cycles", round(
                macs_total / (cfg.peak_macs_per_cycle * cycles_total), 4), None, None)]


def resnet50_times(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """Compile and simulate a whole ResNet-50-shaped int8 network (batch 1)."""
    size = 64 if quick else 224
    graph = resnet50(size)
    start = time.perf_counter()
    program = compile_graph(graph, cfg)
    compile_s = time.perf_counter() - start
    image = np.random.default_rng(0).integers(-128, 128, (1, 3, size, size)).astype(np.int8)
    start = time.perf_counter()
    result = Simulator(program).run({"image": image})
    sim_s = time.perf_counter() - start
    name = f"ResNet-50 {size}x{size} int8 ({cfg.name}, {len(program.code):,} instructions)"
    return [row(name, "compile seconds", round(compile_s, 2), None, COMPILE_TARGET_S,
                higher_is_better=False),
            row(name, "simulate seconds", round(sim_s, 2), None, SIMULATE_TARGET_S,
                higher_is_better=False),
            row(name, "MAC utilisation, whole network", round(
                program.meta["macs"] / (cfg.peak_macs_per_cycle * result.cycles), 4), None,
                None),
            row(name, "simulated cycles per wall second", round(result.cycles / sim_s), None,
                None)]


BENCHMARKS = [gemm_utilisation, conv_utilisation, resnet50_times]
